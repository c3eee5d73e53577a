"""Width division: one large network -> S small ones with about 1/S of its parameters each.

Source: Zhao, Zhou, Wang, Cai, Lam & Xu, "Towards Better Accuracy-efficiency Trade-offs:
Divide and Co-training" (IEEE TIP; arXiv 2011.14660; D&C, METHODS.md seed 003). A network's
width is divided by about √S, so each small network has about 1/S of the parameters:

* CIFAR ResNets (``resnet*``, ``cifar_resnet``, the cheap and tiny ResNets, ``test_cnn``: any
  registered network with a ``width`` option): ``width -> ceil(width / √S)``. For the paper's
  bottleneck ResNet-110/164 (width 16) this is exactly its table w = 16, 12, 8, 6, 4 for
  S = 1, 2, 4, 8, 16; rounding *up* is the rounding that reproduces it (16/√2 = 11.3 -> 12),
  and it is applied to every other width as well.
* CIFAR WRN-d-k (``wrn``, ``wrnD_K``): ``widen -> int(max(k/√S + 0.4, 1))``, stem fixed at 16.
* ResNeXt (``resnext29``): ``cardinality -> max(1, int(C / S))`` (their ``int(groups /
  split_factor)``), width per group kept.
* Per-stage ``widths=[w1, w2, w3]`` (CIFAR ResNets and WRNs, e.g. from a width search): each
  ``w -> ceil(w / √S)``, and ``width`` / ``widen`` are left alone (``widths`` overrides them).
* Anything else (VGG, ImageNet ResNet-18) has no width to divide: S = 1 only.

With ``authors=True`` (the default) the small networks are built as the D&C authors' code
builds them (``model/resnet.py``): every CIFAR ResNet name becomes ``dc_resnet`` (AvgPool
shortcuts, zero-initialised last BN per block), every WRN ``dc_wrn`` (post-activation) and
``resnext29`` ``dc_resnext29``, with the same depth, block and options. Other networks (the
cheap, tiny and VGG nets) have no counterpart in their code and are built as registered.
``authors=False`` builds the registered network itself (this library's variants).

Regularization is divided too: the dropout before the classifier becomes p/S (the option
``fc_dropout`` of a WRN, ``dropout`` of the others). Weight decay is the method's business
(:mod:`analysis.methods.divide_cotrain`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from analysis.errors import CollabError
from analysis.models.cifar_resnet import RESNET_NAMES
from analysis.models.factory import MODELS, create_model, model_options

# The D&C paper's base widths of the bottleneck CIFAR ResNet-110/164 (ceil(16/√S) reproduces it).
PAPER_RESNET_WIDTHS = {1: 16, 2: 12, 4: 8, 8: 6, 16: 4}
_WRN_VARIANT = re.compile(r"wrn(\d+)_(\d+)")


@dataclass(frozen=True)
class DividedArch:
    """What to build S times: registered model ``arch`` with ``options``.

    Attributes:
        arch: registered model name (a ``wrnD_K`` variant becomes ``wrn`` or ``dc_wrn`` with
            depth/widen; a CIFAR ResNet ``dc_resnet`` with depth/block under ``authors``).
        options: the small network's options.
        rule: a human-readable note of what was divided, e.g. ``"width 16 -> 12"``.
    """

    arch: str
    options: dict[str, Any] = field(default_factory=dict)
    rule: str = ""


def divided_width(width: int, split: int) -> int:
    """``ceil(width / √split)``: 16 -> 16, 12, 8, 6, 4 for split 1, 2, 4, 8, 16."""
    return max(1, math.ceil(width / math.sqrt(split) - 1e-9))


def divided_widen(widen: int, split: int) -> int:
    """The WRN rule ``int(max(k / √S + 0.4, 1))``: k = 10 -> 10, 7, 5 for S = 1, 2, 4."""
    return int(max(widen / math.sqrt(split) + 0.4, 1.0))


def divided_cardinality(cardinality: int, split: int) -> int:
    """ResNeXt groups divided by S as the authors do, ``int(C / S)`` (at least 1): 8 -> 8, 4, 2
    for S = 1, 2, 4."""
    return max(1, int(cardinality / split))


def _classifier_dropout_key(accepted: Mapping[str, Any]) -> str | None:
    """The option holding the dropout before ``fc`` (a WRN's ``dropout`` sits inside blocks)."""
    for key in ("fc_dropout", "dropout"):
        if key in accepted:
            return key
    return None


def _large_network(arch: str, options: dict[str, Any], authors: bool) -> tuple[str, dict]:
    """The registered builder and options of the large network ``arch`` (module doc)."""
    wrn = _WRN_VARIANT.fullmatch(arch)
    if wrn:
        large = (
            "dc_wrn" if authors else "wrn",
            {"depth": int(wrn.group(1)), "widen": int(wrn.group(2))},
        )
    elif not authors:
        return arch, options
    elif arch == "wrn":
        large = "dc_wrn", {}
    elif arch in RESNET_NAMES:
        large = "dc_resnet", RESNET_NAMES[arch]
    elif arch == "resnext29":
        large = "dc_resnext29", {}
    else:
        return arch, options
    # A remapped name must not take an option its own name lacks (resnet110_basic + block).
    accepted = model_options(arch)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise CollabError(
            f"model {arch!r} has no option {unknown[0]!r}; "
            f"use one of its options: {', '.join(accepted) or 'none'}"
        )
    return large[0], {**large[1], **options}


def _divide_width_options(arch: str, options: dict[str, Any], split: int) -> tuple[str, dict, str]:
    """Apply the rule of ``arch``'s family; returns (arch, options, rule note)."""
    accepted = model_options(arch)
    if options.get("widths") is not None and split > 1:  # per-stage planes: each ceil(w / √S)
        large_widths = list(options["widths"])
        small_widths = [divided_width(w, split) for w in large_widths]
        return arch, {**options, "widths": small_widths}, f"widths {large_widths} -> {small_widths}"
    for key, rule in (
        ("widen", divided_widen),
        ("cardinality", divided_cardinality),
        ("width", divided_width),
    ):
        if key in accepted:
            large = options.get(key, accepted[key])
            small = rule(large, split)
            return arch, {**options, key: small}, f"{key} {large} -> {small}"
    if split == 1:
        return arch, dict(options), "undivided"
    raise CollabError(
        f"model {arch!r} has no width, widen or cardinality option to divide into {split} "
        "networks; use a CIFAR ResNet, WRN or ResNeXt (or model.peers=1)"
    )


def divided_options(
    arch: str,
    *,
    split: int,
    options: Mapping[str, Any] | None = None,
    dropout: float | None = None,
    authors: bool = True,
) -> DividedArch:
    """The registered model and options of each of the ``split`` small networks of ``arch``.

    Args:
        arch: the large network's registered name, e.g. ``"resnet110_bottleneck"``.
        split: S, the number of small networks (1 = the large network itself).
        options: the large network's options (e.g. ``{"block": "bottleneck"}``).
        dropout: the large network's dropout before the classifier, p; each small network gets
            p / S. None: take p from the classifier-dropout key in ``options`` (default 0).
        authors: build the D&C authors' version of the network (module doc); False builds
            ``arch`` itself.

    Raises:
        CollabError: unknown model or option, split < 1, no divisible width, or conflicting
            dropouts.
    """
    if isinstance(split, bool) or not isinstance(split, int) or split < 1:
        raise CollabError(
            f"the number of small networks must be a positive integer, got {split!r}; "
            "set model.peers"
        )
    MODELS.get(arch)  # unknown names fail here with the list of known ones
    large, large_options = _large_network(arch, dict(options or {}), authors)
    name, small, rule = _divide_width_options(large, large_options, split)
    if name != arch:
        rule = f"{name}, {rule}"
    key = _classifier_dropout_key(model_options(name))
    given = small.get(key, 0.0) if key else 0.0
    if dropout is not None and given and dropout != given:
        raise CollabError(
            f"the classifier dropout is set twice ({key}={given} and dropout={dropout}); "
            "set it once"
        )
    p = dropout if dropout is not None else given
    if p:
        if key is None:
            raise CollabError(
                f"model {name!r} has no classifier dropout option; set the dropout to 0"
            )
        small[key] = p / split
        rule += f", {key} {p} -> {p / split:g}"
    return DividedArch(name, small, rule)


def create_divided(
    arch: str,
    *,
    split: int,
    num_classes: int,
    in_chans: int = 3,
    dropout: float | None = None,
    authors: bool = True,
    **options: Any,
) -> list[nn.Module]:
    """Build the ``split`` small networks of ``arch`` (independent weights; see
    :func:`divided_options`).

    Example:
        >>> nets = create_divided("resnet110_bottleneck", split=2, num_classes=100)
        >>> [net.conv1.out_channels for net in nets]
        [12, 12]
    """
    spec = divided_options(arch, split=split, options=options, dropout=dropout, authors=authors)
    return [
        create_model(spec.arch, num_classes=num_classes, in_chans=in_chans, **spec.options)
        for _ in range(split)
    ]
