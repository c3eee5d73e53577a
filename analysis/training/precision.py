"""Mixed precision: forward passes under autocast, losses in float32, a scaler for fp16.

``fp32`` (the default) touches nothing, so its runs stay bit-identical to runs made before
this switch existed. ``bf16`` and ``fp16`` run the model under :func:`torch.autocast`; its
outputs are cast back to float32 before the method's loss (cross-entropies, KL terms, memory
banks) is computed outside autocast. ``fp16`` scales the loss with a
:class:`torch.amp.GradScaler`, whose state is saved with the resume state.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import torch

from analysis.models import CollabOutput

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """The ``train.precision`` of one run on ``device`` (``fp32``, ``bf16`` or ``fp16``)."""

    def __init__(self, name: str, device: torch.device) -> None:
        if name not in ("fp32", *DTYPES):
            raise ValueError(f"unknown precision {name!r}; use fp32, bf16 or fp16")
        self.name, self.device_type = name, device.type
        self.dtype = DTYPES.get(name)
        self.scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context of forward passes: autocast to the run's dtype, or nothing for fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def float32(self, out: CollabOutput) -> CollabOutput:
        """``out`` with every floating tensor in float32 (unchanged for fp32)."""
        if self.dtype is None:
            return out
        return dataclasses.replace(
            out,
            peer_logits=_to32(out.peer_logits),
            ensemble_logits=_to32(out.ensemble_logits),
            extras={k: _to32(v) for k, v in out.extras.items()},
        )

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer step; with fp16 the scaler unscales, skips non-finite steps, adapts."""
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state (the fp16 loss scale and its growth tracker), empty otherwise."""
        return {} if self.scaler is None else dict(self.scaler.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def _to32(value: Any) -> Any:
    if torch.is_tensor(value) and value.is_floating_point() and value.dtype != torch.float32:
        return value.float()
    if isinstance(value, (list, tuple)):
        return type(value)(_to32(v) for v in value)
    if isinstance(value, dict):
        return {k: _to32(v) for k, v in value.items()}
    return value


def extra_state(precision: Precision, device: torch.device) -> dict[str, Any]:
    """What a resume needs beyond the CPU RNG (JSON-ready, saved with the best-epoch record):
    the fp16 loss scale and the CUDA RNG states (dropout on GPUs). Empty on a CPU in fp32."""
    state: dict[str, Any] = {}
    if precision.scaler is not None:
        state["amp"] = precision.state_dict()
    if device.type == "cuda":
        state["rng_cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_extra_state(
    extra: dict[str, Any], precision: Precision, device: torch.device
) -> dict[str, Any]:
    """Restore :func:`extra_state` from a resume file's ``extra``; returns the rest of it."""
    extra = dict(extra)
    precision.load_state_dict(extra.pop("amp", {}))
    cuda_rng = extra.pop("rng_cuda", None)
    if cuda_rng and device.type == "cuda":
        states = [torch.tensor(s, dtype=torch.uint8) for s in cuda_rng]
        torch.cuda.set_rng_state_all(states[: torch.cuda.device_count()])
    return extra
