"""Any torchvision or timm classifier as a peer: model names ``torchvision/NAME``, ``timm/NAME``.

``create_model("torchvision/resnet18", num_classes=10)`` builds torchvision's network with
``weights=None``; ``create_model("timm/resnet18", ...)`` builds timm's with
``pretrained=False``. Nothing is ever downloaded: weights come only from training or from a
file given to ``collab import``. Other keyword options go to the library's builder unchanged
(e.g. ``drop_rate`` for timm); ``weights``, ``pretrained`` and friends are refused.

The network keeps the library's own module names, so its state-dict keys are the library's
(a torchvision checkpoint loads under ``peers.<i>.`` unchanged). Two things are added:

* ``probe_layers``: the module paths of its main stages, for hooks and CKA. timm networks
  declare them (``feature_info``); for torchvision networks they are found by a rule (the
  top-level children with weights, less the classifier and norm layers, one level deeper
  when that gives too few: ``conv1, layer1..layer4`` for a ResNet, ``features.<i>`` for VGG,
  MobileNet, EfficientNet, ConvNeXt).
* every in-place activation is made out-of-place (same results), so that activations captured
  by hooks are not overwritten later in the forward pass.

For ``in_chans != 3`` timm adapts the stem itself; for torchvision the first 3-channel
convolution is replaced by a freshly initialised one taking ``in_chans`` channels.

timm is an optional dependency: ``pip install -e '.[timm]'``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from analysis.errors import CollabError
from analysis.models.base import StagedNet

LIBRARIES = ("torchvision", "timm")
# Builder options that would fetch pretrained weights from the network.
_DOWNLOADING = ("weights", "weights_backbone", "pretrained", "pretrained_cfg", "checkpoint_path")
_NORMS = (nn.BatchNorm2d, nn.BatchNorm1d, nn.LayerNorm, nn.GroupNorm)
_MIN_STAGES = 3


def require_staged(nets: Any, *, what: str) -> None:
    """Raise a one-line CollabError if a network of ``nets`` is a library (unstaged) network.

    ``what`` says what needs named stages, e.g. "a shared trunk cut into branches".
    """
    for net in nets:
        if not isinstance(net, StagedNet):
            raise CollabError(
                f"this method builds {what} and needs networks made of named stages; "
                "torchvision and timm networks have none: use them as separate peers "
                "(e.g. method independent or dml), or a registered architecture here"
            )


def is_external(name: str) -> bool:
    """Whether ``name`` names a library network (``library/NAME``) rather than a registered one."""
    return "/" in name


def create_external(name: str, *, num_classes: int, in_chans: int = 3, **options: Any) -> nn.Module:
    """Build library network ``name`` (``torchvision/NAME`` or ``timm/NAME``) with random weights.

    Returns:
        The library's module, mapping (B, in_chans, H, W) to logits (B, num_classes), with
        ``probe_layers`` set.

    Raises:
        CollabError: unknown library or network, a downloading option, timm not installed.
    """
    library, _, arch = name.partition("/")
    refused = sorted(set(options) & set(_DOWNLOADING))
    if refused:
        raise CollabError(
            f"model option {refused[0]!r} would download weights; CollabLens builds {name} with "
            "random weights only: load trained weights with `collab import` instead"
        )
    if library == "torchvision":
        net = _torchvision(arch, num_classes=num_classes, in_chans=in_chans, options=options)
        net.probe_layers = stage_paths(net)
    elif library == "timm":
        net = _timm(arch, num_classes=num_classes, in_chans=in_chans, options=options)
        net.probe_layers = _timm_stages(net) or stage_paths(net)
    else:
        raise CollabError(
            f"unknown model library {library!r} in {name!r}; use torchvision/NAME or timm/NAME "
            "(or a registered model name without a slash)"
        )
    for module in net.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    return net


def _torchvision(arch: str, *, num_classes: int, in_chans: int, options: dict) -> nn.Module:
    import torchvision.models as tvm

    known = tvm.list_models(module=tvm)
    if arch not in known:
        raise CollabError(
            f"torchvision has no classification model {arch!r}; use one of "
            f"torchvision.models.list_models(), e.g. {', '.join(known[:5])}"
        )
    try:
        net = tvm.get_model(arch, weights=None, num_classes=num_classes, **options)
    except TypeError as exc:
        raise CollabError(
            f"torchvision/{arch} rejects its options ({exc}); fix model.options"
        ) from None
    if in_chans != 3:
        _replace_stem(net, in_chans)
    return net


def _replace_stem(net: nn.Module, in_chans: int) -> None:
    """Swap the first convolution taking 3 channels for one taking ``in_chans`` channels."""
    for path, module in net.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            new = nn.Conv2d(
                in_chans,
                module.out_channels,
                module.kernel_size,
                stride=module.stride,
                padding=module.padding,
                dilation=module.dilation,
                groups=1,
                bias=module.bias is not None,
            )
            parent, _, child = path.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, child, new)
            return
    raise CollabError(f"found no 3-channel input convolution to adapt to {in_chans} channels")


def _timm(arch: str, *, num_classes: int, in_chans: int, options: dict) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise CollabError(
            f"timm/{arch} needs timm, an optional dependency: pip install -e '.[timm]'"
        ) from None
    if not timm.is_model(arch):
        raise CollabError(
            f"timm has no model {arch!r}; list them with timm.list_models(), e.g. 'resnet18'"
        )
    try:
        return timm.create_model(
            arch, pretrained=False, num_classes=num_classes, in_chans=in_chans, **options
        )
    except TypeError as exc:
        raise CollabError(f"timm/{arch} rejects its options ({exc}); fix model.options") from None


def _timm_stages(net: nn.Module) -> list[str]:
    """The stage paths timm declares in ``feature_info`` (those that name a module)."""
    info = getattr(net, "feature_info", None) or []
    paths = [entry.get("module") for entry in info if isinstance(entry, dict)]
    return [p for p in paths if p and _is_module(net, p)]


def _is_module(net: nn.Module, path: str) -> bool:
    try:
        net.get_submodule(path)
    except AttributeError:
        return False
    return True


def _weighted_children(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    return [
        (f"{prefix}{name}", child)
        for name, child in module.named_children()
        if any(True for _ in child.parameters()) and not isinstance(child, _NORMS)
    ]


def stage_paths(net: nn.Module) -> list[str]:
    """Module paths of a network's main stages, found by the rule in the module docstring."""
    stages = _weighted_children(net)
    if stages and any(isinstance(m, nn.Linear) for m in stages[-1][1].modules()):
        stages = stages[:-1]  # the classifier
    if len(stages) < _MIN_STAGES:
        deeper: list[tuple[str, nn.Module]] = []
        for path, module in stages:
            inner = _weighted_children(module, f"{path}.")
            deeper.extend(inner if len(inner) >= 2 else [(path, module)])
        stages = deeper
    return [path for path, _ in stages]
