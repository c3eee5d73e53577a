"""Fused peers: K same-architecture peer networks evaluated as one grouped network.

Horizontal fusion (as in HFTA, Wang et al., MLSys 2021): the K peers of a
:class:`~analysis.models.collaborative.CollaborativeModel` run as one network whose channels
are the K peers' channels side by side, peer-major (``[peer 0's C | peer 1's C | ...]``):
every ``Conv2d`` becomes one convolution with ``groups = K * groups`` over the concatenated
weights, every ``BatchNorm2d`` one batch norm over K·C channels (updating the K peers'
running statistics in place), every ``Linear`` one batched matrix product, and channel-wise
modules (ReLU, pooling, dropout, flatten) apply unchanged.

:func:`fuse_peers` returns a :class:`FusedPeers` *view* of the container (a
``CollaborativeModel``, or the students of an ``OnlineTeacherModel``, whose teacher then reads
the fused last feature map): it owns no parameters or buffers. Fusing moves the K peers'
tensors of every layer into one fused tensor (:class:`~analysis.models.fused_storage
.SharedStorage`): each parameter and buffer stays the same object, now a view of that
tensor, so no weight is copied at a forward and no statistic copied back; gradients reach
each peer's own ``.grad``, and the optimizer, checkpoints, ``state_dict`` keys and
``model.peer(i)`` are those of the container, unchanged. (Gradients arrive through
``backward``; ``torch.autograd.grad`` with respect to the peers' parameters sees no path
through the fused view.) Its ``forward`` has the container's
contract: images (B, C, H, W) or per-peer views (K, B, C, H, W) -> :class:`CollabOutput`.
Results equal the unfused model's up to float rounding (not bit for bit); dropout draws
differ from the unfused model's because the mask is drawn over all peers at once.

Only networks built of the modules in :data:`FUSABLE_LEAVES` inside the containers of
:data:`FUSABLE_BLOCKS` (whose ``forward`` is channel-wise: residual additions, no channel
concatenation or shuffle) can be fused; anything else raises a one-line CollabError.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from analysis.errors import CollabError
from analysis.models.base import StagedNet
from analysis.models.cifar_resnet import BasicBlock, Bottleneck
from analysis.models.collaborative import CollaborativeModel
from analysis.models.fused_storage import SharedStorage
from analysis.models.online_teacher import OnlineTeacherModel, map_and_logits
from analysis.models.output import CollabOutput

# Modules that act on each channel alone: they run on the fused tensor as they are.
CHANNELWISE = (
    nn.ReLU,
    nn.Identity,
    nn.Flatten,
    nn.Dropout,
    nn.AdaptiveAvgPool2d,
    nn.AvgPool2d,
    nn.MaxPool2d,
)
FUSABLE_LEAVES = (nn.Conv2d, nn.BatchNorm2d, nn.Linear, *CHANNELWISE)
# Containers whose forward only calls their children and adds tensors of equal shape.
FUSABLE_BLOCKS = (StagedNet, nn.Sequential, BasicBlock, Bottleneck)


class FusedConv2d(nn.Module):
    """K convolutions of equal shape as one grouped convolution (peer-major channels)."""

    def __init__(self, convs: Sequence[nn.Conv2d]) -> None:
        super().__init__()
        c = convs[0]
        if c.padding_mode != "zeros" or isinstance(c.padding, str):
            raise CollabError("fused peers support zero-padded convolutions with numeric padding")
        self.peers = list(convs)  # a plain list: the parameters stay the peers' own
        self.groups = len(convs) * c.groups
        self.shared_weight = SharedStorage(convs, "weight")
        self.shared_bias = None if c.bias is None else SharedStorage(convs, "bias")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.peers[0]
        bias = None if self.shared_bias is None else self.shared_bias.fused()
        weight = self.shared_weight.fused()
        return F.conv2d(x, weight, bias, c.stride, c.padding, c.dilation, self.groups)


class FusedBatchNorm2d(nn.Module):
    """K batch norms as one over K·C channels, updating the peers' running statistics."""

    def __init__(self, norms: Sequence[nn.BatchNorm2d]) -> None:
        super().__init__()
        self.peers = list(norms)
        self.shared = {
            name: SharedStorage(norms, name, stack=name == "num_batches_tracked")
            for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
            if getattr(norms[0], name) is not None
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn, shared = self.peers[0], self.shared
        tracked = bn.track_running_stats and bn.running_mean is not None
        factor = 0.0 if bn.momentum is None else bn.momentum
        if bn.training and tracked:  # the peers' counters are views of one (K,) tensor
            shared["num_batches_tracked"].fused().add_(1)
            if bn.momentum is None:  # cumulative moving average, as nn.BatchNorm2d
                factor = 1.0 / float(bn.num_batches_tracked)
        use_batch = bn.training or not tracked
        # F.batch_norm updates the fused running statistics in place: the peers' own views.
        mean = shared["running_mean"].fused() if tracked else None
        var = shared["running_var"].fused() if tracked else None
        weight = shared["weight"].fused() if bn.affine else None
        bias = shared["bias"].fused() if bn.affine else None
        return F.batch_norm(x, mean, var, weight, bias, use_batch, factor, bn.eps)


class FusedLinear(nn.Module):
    """K linear layers as one batched product: (B, K·D) -> (B, K·C), peer-major."""

    def __init__(self, linears: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.peers = list(linears)
        self.shared_weight = SharedStorage(linears, "weight", stack=True)  # (K, C, D)
        bias = linears[0].bias is not None
        self.shared_bias = SharedStorage(linears, "bias", stack=True) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = len(self.peers)
        weight = self.shared_weight.fused()
        out = torch.einsum("bkd,kcd->bkc", x.reshape(x.shape[0], k, -1), weight)
        if self.shared_bias is not None:
            out = out + self.shared_bias.fused()
        return out.reshape(x.shape[0], -1)


def _same_shape(modules: Sequence[nn.Module]) -> bool:
    first = modules[0]
    if any(type(m) is not type(first) for m in modules):
        return False
    shapes = [[(n, t.shape) for n, t in m.named_parameters()] for m in modules]
    return all(s == shapes[0] for s in shapes) and all(
        set(m._modules) == set(first._modules) and m.extra_repr() == first.extra_repr()
        for m in modules
    )


def _fuse(modules: Sequence[nn.Module], path: str) -> nn.Module:
    """The fused counterpart of the K modules at ``path`` of every peer."""
    first = modules[0]
    if not _same_shape(modules):
        raise CollabError(
            f"cannot fuse the peers: they differ at {path or 'the top'}; fused peers need K "
            "networks of one architecture (set train.fuse_peers=false)"
        )
    if isinstance(first, nn.Conv2d):
        return FusedConv2d(modules)
    if isinstance(first, nn.BatchNorm2d):
        return FusedBatchNorm2d(modules)
    if isinstance(first, nn.Linear):
        return FusedLinear(modules)
    if type(first) in CHANNELWISE:
        return first  # parameterless and channel-wise; its train/eval mode follows the peers
    if type(first) not in FUSABLE_BLOCKS:
        raise CollabError(
            f"cannot fuse the peers: {path} is a {type(first).__name__}, which fused peers do "
            "not support (ResNet-style networks only); set train.fuse_peers=false"
        )
    node = type(first).__new__(type(first))
    nn.Module.__init__(node)
    own = set(vars(node))
    for key, value in vars(first).items():  # plain attributes (stage names, ...), not modules
        if key not in own:
            node.__dict__[key] = value
    for name in first._modules:
        child = _fuse([m._modules[name] for m in modules], f"{path}.{name}".lstrip("."))
        node._modules[name] = child
    return node


class FusedPeers(nn.Module):
    """A :class:`CollaborativeModel` (or the students of an
    :class:`~analysis.models.online_teacher.OnlineTeacherModel`) of K same-architecture peers
    run as one grouped network.

    Owns no parameters: ``container`` (not registered as a submodule, so that this module's
    state dict is empty and the container's stays the checkpoint) holds them. Train/eval mode
    is the container's.

    ``forward(x)``: images (B, C, H, W) that every peer sees, or per-peer views
    (K, B, C, H, W) -> ``CollabOutput`` with ``peer_logits`` (K, B, classes). For an online
    teacher the fused last feature map is the teacher's input (the students' maps concatenated,
    peer-major, exactly as the container builds it).
    """

    def __init__(self, container: CollaborativeModel | OnlineTeacherModel) -> None:
        super().__init__()
        if not isinstance(container, (CollaborativeModel, OnlineTeacherModel)):
            raise CollabError(
                f"fused peers need a container of separate peer networks, got "
                f"{type(container).__name__}; set train.fuse_peers=false"
            )
        self.__dict__["container"] = container
        self.net = _fuse(list(container.peers), "peers.*")

    def train(self, mode: bool = True) -> FusedPeers:
        """Set the container's (and so the peers') train/eval mode."""
        self.container.train(mode)
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> CollabOutput:
        c, k = self.container, self.container.num_peers
        if isinstance(c, OnlineTeacherModel):
            c.check_batch(x)  # one batch for all students, as the container takes
        if x.dim() == 5:
            if x.shape[0] != k:
                raise ValueError(f"got {x.shape[0]} views for {k} peers")
            h = c.normalize(x).transpose(0, 1).flatten(1, 2)  # (B, K*C, H, W), peer-major
        else:
            c.check_batch(x)
            h = c.normalize(x).repeat(1, k, 1, 1)
        if not isinstance(c, OnlineTeacherModel):
            out = self.net(h)  # (B, K*classes)
            logits = out.view(out.shape[0], k, -1).transpose(0, 1).contiguous()
            return CollabOutput(logits, c.combine(logits))
        fmap, out = map_and_logits(self.net, h)  # (B, K*C, h, w), (B, K*classes)
        logits = out.view(out.shape[0], k, -1).transpose(0, 1).contiguous()
        teacher = c.teacher(fmap)
        ensemble = teacher if c.ensemble_from == "teacher" else c.combine(logits)
        return CollabOutput(logits, ensemble, {"teacher_logits": teacher})


def fuse_peers(container: CollaborativeModel | OnlineTeacherModel) -> FusedPeers:
    """A fused view of ``container`` (see the module docstring); CollabError if it cannot be."""
    return FusedPeers(container)
