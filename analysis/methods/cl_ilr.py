"""Collaborative learning with backprop rescaling (Song & Chai, NeurIPS 2018; "CL-ILR").

H heads share a trunk; the graph forks as a tree and, at every fork into n children, the
gradient flowing back into the parent is divided by n (intermediate-level representation
sharing with backprop rescaling), so the shared layers are not over-driven by H losses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from analysis.errors import CollabError
from analysis.methods.base import DataShape, LossParts, Method, MethodOptions, peer_cross_entropy
from analysis.models import CollabOutput
from analysis.models.shared_trunk import SharedTrunkModel


@dataclass
class CLILROptions(MethodOptions):
    """Attributes:
    beta: weight of the hard-label CE; the soft-target KL gets 1 - beta (0.5 in the paper).
    temperature: softening temperature T of the targets and of each head (2); KL times T².
    tree: ``binary`` — the paper's hierarchy: fork in two after each of the first
        log2(H) ``split_stages`` (H = model.peers, a power of two; 4 heads = split after
        stage 1 into 2, after stage 2 each into 2); ``flat`` — all H heads fork after
        ``split_stages[0]``.
    split_stages: the stages after which the graph may fork, in forward order.
    backprop_rescaling: divide the gradient by n at every n-way fork (the paper's ILR).
    inference_head: the head kept for deployment (the paper keeps one head). Recorded as
        ``model.inference_head``; ``ensemble_logits`` stays the mean of all heads so that
        run metrics compare like with like across methods.
    """

    name: str = "cl_ilr"
    beta: float = 0.5
    temperature: float = 2.0
    tree: Literal["binary", "flat"] = "binary"
    split_stages: list[str] = field(default_factory=lambda: ["layer1", "layer2"])
    backprop_rescaling: bool = True
    inference_head: int = 0


def cl_ilr_splits(heads: int, *, tree: str, split_stages: list[str]) -> list[tuple[str, int]]:
    """The fork tree of H heads: ``binary`` 4 -> [(s0, 2), (s1, 2)], ``flat`` -> [(s0, H)]."""
    if not split_stages:
        raise CollabError("method.split_stages is empty; name at least one stage, e.g. [layer1]")
    if tree == "flat" or heads == 1:
        return [(split_stages[0], heads)]
    levels = round(math.log2(heads))
    if 2**levels != heads or levels > len(split_stages):
        raise CollabError(
            f"CL-ILR's binary tree needs a power-of-two number of heads up to "
            f"{2 ** len(split_stages)} (one fork per split stage), got model.peers={heads}; "
            "change model.peers or set method.tree=flat"
        )
    return [(stage, 2) for stage in split_stages[:levels]]


class CLILR(Method):
    """L_h = β·CE(z_h, y) + (1−β)·T²·KL(q_h ‖ softmax(z_h/T)), summed over the H heads.

    q_h = softmax(mean_{j≠h} z_j / T) is **detached**: head h learns from the consensus of
    the other heads without pushing it. Gradient scaling happens in the model (forward is the
    identity), so this loss is plain.
    """

    Options = CLILROptions

    def build_model(self, model_cfg: Any, data: DataShape) -> SharedTrunkModel:
        opts: CLILROptions = self.options
        heads = model_cfg.peers
        if not 0 <= opts.inference_head < heads:
            raise CollabError(
                f"method.inference_head={opts.inference_head} is not one of the {heads} heads; "
                f"use 0..{heads - 1}"
            )
        splits = cl_ilr_splits(heads, tree=opts.tree, split_stages=opts.split_stages)
        model = SharedTrunkModel.from_registry(
            model_cfg.arch,
            num_classes=data.num_classes,
            in_chans=data.in_chans,
            mean=data.mean,
            std=data.std,
            splits=splits,
            peer_names=[f"{model_cfg.arch}:head{h}" for h in range(heads)],
            ensemble=model_cfg.ensemble,
            rescale_grad=opts.backprop_rescaling,
            **model_cfg.options,
        )
        model.inference_head = opts.inference_head
        return model

    def loss(
        self,
        out: CollabOutput,
        target: torch.Tensor,
        *,
        epoch: float,
        index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LossParts]:
        opts: CLILROptions = self.options
        ce = peer_cross_entropy(out.peer_logits, target)
        kl = consensus_kl(out.peer_logits, temperature=opts.temperature)
        total = (opts.beta * ce + (1.0 - opts.beta) * kl).sum()
        return total, {"ce": ce.detach(), "kl": kl.detach()}


def consensus_kl(peer_logits: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """T²·KL(q_h ‖ softmax(z_h/T)), q_h from the other heads' mean logits: (H, B, C) -> (H,).

    The targets are detached; batch-mean reduction. With one head there is no target: zeros.
    """
    heads, batch = peer_logits.shape[:2]
    if heads < 2:
        return peer_logits.new_zeros(heads)
    with torch.no_grad():
        others = (peer_logits.sum(dim=0, keepdim=True) - peer_logits) / (heads - 1)
        log_q = (others / temperature).log_softmax(dim=-1)  # (H, B, C)
    log_p = (peer_logits / temperature).log_softmax(dim=-1)
    kl = (log_q.exp() * (log_q - log_p)).sum(dim=(1, 2)) / batch
    return kl * temperature**2
