"""Channel units: the groups of channels that can be gated, masked or removed together.

A *unit* is a set of C channels that several modules agree on. Removing channel j of a unit
means removing output channel j of every conv (and its BN) that *writes* the unit and input
channel j of every conv (or the ``fc``) that *reads* it. Zeroing channel j at the outputs of the
unit's *points* (modules) computes exactly what the network without that channel computes,
which is what makes a masked network and its physically smaller copy agree.

Two families of networks are understood:

* residual networks of :mod:`~analysis.models.cifar_resnet` (basic and bottleneck blocks, any
  depth and width, also ``dc_resnet``): one *internal* unit per inner conv of every block
  (``"layer1.0.bn1"``: conv1's channels, read by conv2), and one *stream* unit per residual
  stream (``"layer1"``: every module that adds to the same identity-shortcut stream writes it:
  the stem or a projection shortcut and the last conv of each block; a stream is named after
  the stage of its last block, ``"conv1"`` for a stem that no block extends);
* plain conv chains (``test_cnn``, VGG): one unit per conv, named by its BN.

Any other network (grouped convs, dense connections, torchvision ResNets) is refused with a
:class:`CollabError` by :func:`channel_units`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from analysis.errors import CollabError

UNSUPPORTED = (
    "channel surgery understands CIFAR ResNets (basic or bottleneck blocks) and plain conv "
    "chains such as test_cnn and VGG; {what}"
)


@dataclass
class Unit:
    """One group of channels (module paths are relative to the network).

    Attributes:
        name: ``"layer1.0.bn1"`` (internal) or ``"layer1"`` (stream).
        kind: ``"internal"`` or ``"stream"`` (``"plain"`` in a conv chain).
        width: the number of channels C.
        points: modules whose outputs carry exactly these channels (B, C, H, W).
        writers: ``(conv, bn)`` pairs producing the channels.
        readers: convs (or ``"fc"``) taking the channels as input.
    """

    name: str
    kind: str
    width: int
    points: list[str] = field(default_factory=list)
    writers: list[tuple[str, str]] = field(default_factory=list)
    readers: list[str] = field(default_factory=list)


def _children_of(module: nn.Module, kind: type, prefix: str) -> list[str]:
    """Names of ``module``'s direct children of type ``kind`` named ``prefix<N>``, in N order."""
    names = [n for n, m in module.named_children() if isinstance(m, kind) and n.startswith(prefix)]
    return sorted(names, key=lambda n: int(n[len(prefix) :]) if n[len(prefix) :].isdigit() else -1)


def _block_parts(path: str, block: nn.Module) -> tuple[list[str], list[str], list[str]]:
    """A residual block's (convs, bns, shortcut (conv, bn)) paths; CollabError if not understood."""
    convs = _children_of(block, nn.Conv2d, "conv")
    bns = _children_of(block, nn.BatchNorm2d, "bn")
    if len(convs) < 2 or [c[4:] for c in convs] != [b[2:] for b in bns]:
        raise CollabError(UNSUPPORTED.format(what=f"block {path!r} is not conv/bn pairs"))
    if any(getattr(block, c).groups != 1 for c in convs):
        raise CollabError(UNSUPPORTED.format(what=f"block {path!r} has grouped convs"))
    short = block.shortcut
    shortcut: list[str] = []
    if not isinstance(short, nn.Identity):
        inner = [
            (n, m) for n, m in short.named_children() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))
        ]
        if [type(m) for _, m in inner] != [nn.Conv2d, nn.BatchNorm2d]:
            raise CollabError(UNSUPPORTED.format(what=f"block {path!r} has an unusual shortcut"))
        shortcut = [f"{path}.shortcut.{inner[0][0]}", f"{path}.shortcut.{inner[1][0]}"]
    return [f"{path}.{c}" for c in convs], [f"{path}.{b}" for b in bns], shortcut


def _residual_units(net: nn.Module, stages: list[str]) -> list[Unit]:
    stream = Unit("conv1", "stream", net.conv1.out_channels, ["bn1"], [("conv1", "bn1")])
    units: list[Unit] = []
    for stage in stages:
        for j, block in enumerate(getattr(net, stage)):
            path = f"{stage}.{j}"
            convs, bns, shortcut = _block_parts(path, block)
            stream.readers.append(convs[0])
            if shortcut:  # a projection starts a new stream, written by it and the block
                stream.readers.append(shortcut[0])
                units.append(stream)
                width = getattr(block, convs[-1].rsplit(".", 1)[1]).out_channels
                stream = Unit(stage, "stream", width, writers=[tuple(shortcut)])
            stream.name = stage
            stream.points.append(path)
            stream.writers.append((convs[-1], bns[-1]))
            for k in range(len(convs) - 1):
                conv = block.get_submodule(convs[k].rsplit(".", 1)[1])
                units.append(
                    Unit(
                        bns[k],
                        "internal",
                        conv.out_channels,
                        [bns[k]],
                        [(convs[k], bns[k])],
                        [convs[k + 1]],
                    )
                )
    stream.readers.append("fc")
    return units + [stream]


def _plain_units(net: nn.Module) -> list[Unit]:
    modules = list(net.named_modules())
    convs = [(n, m) for n, m in modules if isinstance(m, nn.Conv2d)]
    units: list[Unit] = []
    for i, (name, conv) in enumerate(convs):
        after = [
            n
            for n, m in modules[[n for n, _ in modules].index(name) :]
            if isinstance(m, nn.BatchNorm2d)
        ]
        if conv.groups != 1 or not after:
            raise CollabError(UNSUPPORTED.format(what=f"conv {name!r} is grouped or has no BN"))
        reader = convs[i + 1][0] if i + 1 < len(convs) else "fc"
        takes = convs[i + 1][1].in_channels if i + 1 < len(convs) else net.fc.in_features
        if takes != conv.out_channels:
            raise CollabError(UNSUPPORTED.format(what=f"{reader!r} does not read {name!r} alone"))
        units.append(
            Unit(after[0], "plain", conv.out_channels, [after[0]], [(name, after[0])], [reader])
        )
    return units


def channel_units(net: nn.Module) -> list[Unit]:
    """The channel units of ``net``, a :class:`~analysis.models.StagedNet` (see module doc).

    Raises:
        CollabError: for a network whose channels this module does not understand.
    """
    if not isinstance(getattr(net, "fc", None), nn.Linear):
        raise CollabError(UNSUPPORTED.format(what=f"{type(net).__name__} has no linear fc head"))
    names = list(getattr(net, "feature_names", []))
    stages = [n for n in names if n.startswith("layer")]
    blocks = [b for s in stages for b in getattr(net, s).children()] if stages else []
    if blocks and all(hasattr(b, "shortcut") for b in blocks):
        if not isinstance(getattr(net, "conv1", None), nn.Conv2d):
            raise CollabError(UNSUPPORTED.format(what="the residual network has no conv1 stem"))
        return _residual_units(net, stages)
    if any(hasattr(m, "shortcut") or hasattr(m, "downsample") for m in net.modules()):
        raise CollabError(UNSUPPORTED.format(what=f"{type(net).__name__} is not one of them"))
    if not any(isinstance(m, nn.Conv2d) for m in net.modules()):
        raise CollabError(UNSUPPORTED.format(what=f"{type(net).__name__} has no conv layers"))
    return _plain_units(net)
