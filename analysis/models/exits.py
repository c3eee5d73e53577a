"""Multi-exit container: registered networks with auxiliary classifiers (exits) after stages.

:class:`MultiExitModel` wraps one or several :class:`~analysis.models.StagedNet` networks and
attaches a small classifier head after each chosen feature stage (``exits_after``, e.g.
``["layer1", "layer2"]``); every network's own ``fc`` is its final exit. One forward pass per
network computes all of its exits. Exits are the model's *peers*, ordered network by network
and, within a network, in forward order::

    net0/layer1, net0/layer2, net0/fc, net1/layer1, net1/layer2, net1/fc, ...

Exit head (:class:`ExitHead`): 3x3 conv with stride 2 to twice the stage's channels -> BN ->
ReLU -> global average pool -> linear. The stride-2 conv doubles the channels and halves the
resolution like the stage that would follow it, giving the early exit a little depth of its
own at about the cost of one extra conv layer.

Module paths: network ``n`` lives under ``nets.<n>.`` (e.g. ``nets.0.layer2``) and its exit
heads under ``heads.<n>.<stage>.`` (e.g. ``heads.0.layer1.conv``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models.base import StagedNet
from analysis.models.container import PeerContainer, PeerModule
from analysis.models.external import require_staged
from analysis.models.output import CollabOutput

# The final exit of each network is named after its classifier.
FINAL_EXIT = "fc"
ENSEMBLE_RULES = ("logit_mean", "prob_mean", "final")
# Spatial size of the dry run that reads each stage's channel count.
_PROBE_SIZE = 32
# Global pooling is not a stage an exit can follow (its output is 1x1 by construction).
_GLOBAL_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


class ExitHead(nn.Module):
    """Auxiliary classifier: (B, in_chans, H, W) feature map -> (B, num_classes) logits.

    3x3 conv (stride 2, no bias) to ``2 * in_chans`` channels -> BN -> ReLU -> global average
    pool -> linear.
    """

    def __init__(self, in_chans: int, num_classes: int) -> None:
        super().__init__()
        width = 2 * in_chans
        self.conv = nn.Conv2d(in_chans, width, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(width, num_classes)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.relu(self.bn(self.conv(fmap))))))


class ExitPeer(PeerModule):
    """One early exit as a plain module: images (B, C, H, W) in [0, 1] -> logits (B, C').

    Runs the network's stages up to and including ``stage``, then the exit head.
    """

    def __init__(self, normalize: nn.Module, net: StagedNet, stage: str, head: nn.Module) -> None:
        super().__init__(normalize, net)
        self.stage = stage
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        for name in self.net.feature_names:
            x = self.net._modules[name](x)
            if name == self.stage:
                return self.head(x)
        raise RuntimeError(f"stage {self.stage!r} not found")  # unreachable: checked at build


def stage_channels(net: StagedNet, *, in_chans: int) -> dict[str, int]:
    """Channels of every 4-D stage output (global pooling excluded), by a dry run on (1, in_chans, 32, 32).

    The network is put in eval mode for the dry run (BN running statistics stay untouched) and
    restored afterwards; works on the meta device too.
    """
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    channels: dict[str, int] = {}
    try:
        with torch.no_grad():
            x = torch.zeros(1, in_chans, _PROBE_SIZE, _PROBE_SIZE, device=device)
            for name in net.feature_names:
                module = net._modules[name]
                x = module(x)
                if x.dim() == 4 and not isinstance(module, _GLOBAL_POOLS):
                    channels[name] = x.shape[1]
    finally:
        net.train(was_training)
    return channels


class MultiExitModel(PeerContainer):
    """Networks with early exits; forward returns every exit's logits as a peer.

    Args:
        nets: the networks (registered :class:`StagedNet` s), each mapping normalized images
            to logits.
        exits_after: feature stages that get an exit head, e.g. ``["layer1", "layer2"]``; may
            be empty (final exits only). Every network must have these stages.
        num_classes: number of classes of the exit heads.
        in_chans: input image channels.
        mean, std: per-channel input statistics applied inside the model.
        ensemble: ``logit_mean`` / ``prob_mean`` over all exits (see
            :func:`~analysis.models.combine_logits`), or ``final``: the logit mean of the
            networks' final exits (just the final exit for one network).

    Attributes:
        peer_names: ``"net<n>/<stage>"`` for every exit, in peer order.
        exit_stages: the stage of every exit in peer order (``"fc"`` for final exits).
        exit_nets: the network index of every exit in peer order.
    """

    def __init__(
        self,
        nets: Sequence[StagedNet],
        *,
        exits_after: Sequence[str],
        num_classes: int,
        in_chans: int,
        mean: Sequence[float],
        std: Sequence[float],
        ensemble: str = "logit_mean",
    ) -> None:
        if len(nets) < 1:
            raise ValueError("a multi-exit model needs at least one network")
        require_staged(nets, what="early exits after named stages")
        exits_after = list(exits_after)
        exit_nets = [n for n in range(len(nets)) for _ in range(len(exits_after) + 1)]
        exit_stages = [*exits_after, FINAL_EXIT] * len(nets)
        super().__init__(
            num_peers=len(exit_nets),
            mean=mean,
            std=std,
            peer_names=[f"net{n}/{s}" for n, s in zip(exit_nets, exit_stages)],
            ensemble=ensemble,
        )
        self.nets = nn.ModuleList(nets)
        self.exits_after = exits_after
        self.heads = nn.ModuleList(
            self._build_heads(net, n, num_classes=num_classes, in_chans=in_chans)
            for n, net in enumerate(nets)
        )
        self.exit_nets = exit_nets
        self.exit_stages = exit_stages

    def check_ensemble(self, rule: str) -> None:
        """Raise unless ``rule`` is one of :data:`ENSEMBLE_RULES` (``final`` included)."""
        if rule not in ENSEMBLE_RULES:
            raise CollabError(
                f"unknown ensemble rule {rule!r}; use one of {', '.join(ENSEMBLE_RULES)}"
            )

    def _build_heads(
        self, net: StagedNet, n: int, *, num_classes: int, in_chans: int
    ) -> nn.ModuleDict:
        channels = stage_channels(net, in_chans=in_chans)
        order = list(net.feature_names)
        positions = []
        for stage in self.exits_after:
            if stage not in channels:
                raise CollabError(
                    f"network {n} has no feature-map stage {stage!r} for an exit; "
                    f"set exits_after to some of: {', '.join(channels)}"
                )
            positions.append(order.index(stage))
        if positions != sorted(set(positions)):
            raise CollabError(
                f"exits_after {self.exits_after} must name distinct stages in forward order; "
                f"list them as they run, from: {', '.join(channels)}"
            )
        return nn.ModuleDict({s: ExitHead(channels[s], num_classes) for s in self.exits_after})

    def peer(self, i: int) -> nn.Module:
        """Exit ``i`` as a plain module: images in [0, 1] -> logits (stem up to the exit + head)."""
        n, stage = self.exit_nets[i], self.exit_stages[i]
        if stage == FINAL_EXIT:
            return PeerModule(self.normalize, self.nets[n])
        return ExitPeer(self.normalize, self.nets[n], stage, self.heads[n][stage])

    def peer_prefix(self, i: int) -> str:
        """Module-path prefix of the network exit ``i`` belongs to, e.g. ``"nets.0."``."""
        return f"nets.{self.exit_nets[i]}."

    def run_exits(self, n: int, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """One pass of network ``n`` over normalized images (B, C, H, W).

        Returns:
            The logits (B, num_classes) of each of its exits, and each exit's pooled
            representation: the global average of the stage's feature map (B, C_stage) for an
            early exit, the network's pooled features (B, feature_dim) for the final exit.
        """
        net = self.nets[n]
        logits, pooled = [], []
        for name in net.feature_names:
            x = net._modules[name](x)
            if name in self.heads[n]:
                logits.append(self.heads[n][name](x))
                pooled.append(x.mean(dim=(2, 3)))
        pooled.append(x)
        logits.append(net.fc(net.dropout(x)))
        return logits, pooled

    def forward_exits(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Images (B, C, H, W) in [0, 1] -> exit logits (K, B, num_classes) and K pooled features."""
        x = self.normalize(x)
        logits, pooled = [], []
        for n in range(len(self.nets)):
            net_logits, net_pooled = self.run_exits(n, x)
            logits += net_logits
            pooled += net_pooled
        return torch.stack(logits), pooled

    def combine(self, peer_logits: torch.Tensor) -> torch.Tensor:
        """Ensemble logits (B, C) from exit logits (K, B, C) by ``self.ensemble``."""
        if self.ensemble == "final":
            finals = [k for k, s in enumerate(self.exit_stages) if s == FINAL_EXIT]
            return peer_logits[finals].mean(dim=0)
        return super().combine(peer_logits)

    def forward(self, x: torch.Tensor) -> CollabOutput:
        """(B, C, H, W) images -> CollabOutput; ``extras["pooled/<peer name>"]`` per exit."""
        self.check_batch(x)
        logits, pooled = self.forward_exits(x)
        extras = {f"pooled/{name}": p for name, p in zip(self.peer_names, pooled)}
        return CollabOutput(logits, self.combine(logits), extras)
