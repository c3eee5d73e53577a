"""The model registry and the one checked way to build a registered network.

Every builder has the signature ``fn(*, num_classes: int, in_chans: int = 3, **options)`` with
its options spelled out as keyword-only arguments, so :func:`model_options` can list them and
:func:`create_model` can reject a misspelt or mistyped option with a sentence naming it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from analysis.errors import CollabError
from analysis.models.external import create_external
from analysis.registry import Registry

MODELS = Registry("model")

# Options every builder takes; they are passed explicitly, not listed among the options.
_COMMON = ("num_classes", "in_chans")
_CHECKED_TYPES = (bool, int, float, str)


def _signature(name: str) -> inspect.Signature:
    builder = MODELS.get(name)
    try:
        return inspect.signature(builder, eval_str=True)
    except NameError:  # an annotation only importable under TYPE_CHECKING: skip type checks
        return inspect.signature(builder)


def model_options(name: str) -> dict[str, Any]:
    """The options of model ``name`` and their defaults (``inspect.Parameter.empty`` if none).

    Example:
        >>> model_options("resnet20")
        {'width': 16, 'block': 'basic', 'dropout': 0.0}
    """
    params = _signature(name).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.name not in _COMMON and p.kind is not inspect.Parameter.VAR_KEYWORD
    }


def register_variant(
    name: str,
    builder: Callable[..., nn.Module],
    *,
    doc: str,
    fixed: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    registry: Registry = MODELS,
) -> Callable[..., nn.Module]:
    """Register ``name`` as ``builder`` with some options fixed and others given new defaults.

    The variant's signature is the builder's less the ``fixed`` options, returning
    ``nn.Module`` like every registered builder, so :func:`model_options` and
    :func:`create_model` list and check it like any builder.

    Example:
        ``register_variant("resnet164", cifar_resnet_net, doc=..., fixed={"depth": 164},
        defaults={"block": "bottleneck"})`` registers ``resnet164(*, num_classes,
        in_chans=3, width=16, block="bottleneck", dropout=0.0)`` in :data:`MODELS`
        (or in ``registry``).

    Returns:
        The registered variant, a keyword-only function.
    """
    fixed, defaults = dict(fixed or {}), dict(defaults or {})
    signature = inspect.signature(builder, eval_str=True)
    unknown = sorted((fixed.keys() | defaults.keys()) - signature.parameters.keys())
    if unknown:
        raise ValueError(f"{builder.__name__} has no options {unknown} to fix or default")
    signature = signature.replace(
        parameters=[
            p.replace(default=defaults.get(p.name, p.default))
            for p in signature.parameters.values()
            if p.name not in fixed
        ],
        return_annotation=nn.Module,
    )

    def variant(**options: Any) -> nn.Module:
        bound = signature.bind(**options)
        bound.apply_defaults()
        return builder(*bound.args, **bound.kwargs, **fixed)

    variant.__name__ = variant.__qualname__ = name
    variant.__doc__ = doc
    variant.__signature__ = signature
    return registry.register(name)(variant)


def _type_ok(value: Any, annotation: Any) -> bool:
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _check_options(name: str, options: dict[str, Any]) -> None:
    params = _signature(name).parameters
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = model_options(name)
    for key, value in options.items():
        if key not in accepted:
            if open_ended:
                continue
            listed = ", ".join(accepted) or "none"
            raise CollabError(
                f"model {name!r} has no option {key!r}; use one of its options: {listed}"
            )
        annotation = params[key].annotation
        if annotation in _CHECKED_TYPES and not _type_ok(value, annotation):
            raise CollabError(
                f"model {name!r} option {key!r} must be of type {annotation.__name__}, "
                f"got {value!r}; pass a {annotation.__name__} value"
            )


def _check_positive_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CollabError(f"{key} must be a positive integer, got {value!r}; pass e.g. {key}=10")


def create_model(name: str, *, num_classes: int, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """Build registered model ``name``: images (B, in_chans, H, W) -> logits (B, num_classes).

    Args:
        name: a name from ``MODELS.list()``, e.g. ``"resnet20"``, or a library network
            ``torchvision/NAME`` / ``timm/NAME`` (see :mod:`analysis.models.external`).
        num_classes: number of output logits.
        in_chans: number of input image channels (1 for greyscale digits).
        **kwargs: the model's own options (see :func:`model_options`).

    Raises:
        CollabError: unknown model name, unknown option, or an option of the wrong type.
    """
    _check_positive_int("num_classes", num_classes)
    _check_positive_int("in_chans", in_chans)
    if "/" in name:  # a torchvision or timm network, e.g. "timm/resnet18"
        return create_external(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    _check_options(name, kwargs)
    return MODELS.get(name)(num_classes=num_classes, in_chans=in_chans, **kwargs)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (shared tensors once; BN affine yes, running stats no)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
