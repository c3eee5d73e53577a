"""Distributed data parallel under torchrun: ranks, collectives, the DDP wrapper.

``torchrun --nproc_per_node=N -m analysis.cli train CONFIG --out RUN`` starts N processes;
each trains on its share of every global batch (``data.batch_size`` is the global batch, see
:class:`~analysis.training.loader.EpochBatches`), gradients are averaged by
``DistributedDataParallel`` (gloo on CPUs, nccl on CUDA, one GPU per process), and rank 0
alone writes the run folder. Without torchrun (``WORLD_SIZE`` unset) everything here is the
identity and no process group is created.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from analysis.errors import CollabError
from analysis.methods import Collective
from analysis.models import CollabOutput

T = TypeVar("T")


class RankCollective(Collective):
    """What a method's global state needs from the other ranks (e.g. MCL-OKD's memory banks
    are updated with the whole global batch on every rank)."""

    def __init__(self, world: int) -> None:
        self.world = world

    def gather(self, tensor: torch.Tensor, dim: int = 0) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(self.world)]
        dist.all_gather(parts, tensor.detach().contiguous())
        return torch.cat(parts, dim=dim)

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        dist.broadcast(tensor, src=0)
        return tensor


class Dist:
    """This process's place in a torchrun launch (rank 0 of 1 without torchrun)."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0) -> None:
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self._owns_group = False

    @classmethod
    def from_env(cls) -> Dist:
        """Read torchrun's ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", "0"))
        except ValueError:
            raise CollabError(
                "WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers; start with torchrun"
            ) from None
        return cls(rank, world, local)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The rank's device: its own GPU (``cuda:LOCAL_RANK``) when training on CUDA."""
        if self.active and device.type == "cuda":
            if self.local_rank >= torch.cuda.device_count():
                raise CollabError(
                    f"local rank {self.local_rank} has no GPU ({torch.cuda.device_count()} "
                    "visible); start at most one process per GPU (--nproc_per_node)"
                )
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def start(self, device: torch.device) -> None:
        """Join the process group (nccl on CUDA, gloo otherwise) unless one exists already."""
        if self.active and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self._owns_group = True
        if self.active and dist.get_world_size() != self.world:
            raise CollabError("the process group's size differs from WORLD_SIZE; use torchrun")
        self._comm = device if device.type == "cuda" else torch.device("cpu")

    def stop(self) -> None:
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self._owns_group = False

    def on_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` on rank 0, its result (or its error, raised on every rank) sent to all."""
        if not self.active:
            return fn()
        box: list[Any] = [None, None]
        if self.is_main:
            try:
                box[0] = fn()
            except CollabError as exc:
                box[1] = str(exc)
            except Exception as exc:  # a crash on rank 0 must not leave the others waiting
                box[1] = f"rank 0 failed: {type(exc).__name__}: {exc}"
        dist.broadcast_object_list(box, src=0)
        if box[1] is not None:
            raise CollabError(box[1])
        return box[0]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks (a new tensor on ``tensor``'s device)."""
        if not self.active:
            return tensor
        buf = tensor.detach().to(self._comm).clone()
        dist.all_reduce(buf)
        return buf.to(tensor.device)

    def mean_value(self, value: torch.Tensor) -> float:
        """The mean over the ranks of a scalar tensor, as a float (``value.item()`` alone)."""
        if not self.active:
            return value.item()
        return float(self.sum(value.detach().double().reshape(1))[0]) / self.world

    def check(self, config: Any) -> None:
        """Refuse, in one line, what a launch of this size cannot train."""
        if not self.active:
            return
        if config.data.batch_size % self.world:
            raise CollabError(
                f"data.batch_size={config.data.batch_size} is the global batch and must divide "
                f"evenly among the {self.world} processes; change it or --nproc_per_node"
            )
        if any("cuda" in d for d in config.train.peer_devices):
            raise CollabError(
                "train.peer_devices places peers within one process; under torchrun each "
                "process has its own GPU: set train.peer_devices=[]"
            )

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def collective(self) -> Collective:
        return RankCollective(self.world) if self.active else Collective()

    def wrap(self, model: nn.Module, *, device: torch.device, placed: bool) -> nn.Module:
        """``model`` in ``DistributedDataParallel`` under torchrun, else itself.

        ``static_graph``: every step of a method uses the same parameters, so DDP learns on
        the first step which (if any) a method leaves out of its loss, instead of searching the
        autograd graph for them at every step; parameters no rank used keep no gradient.
        """
        if not self.active:
            return model
        ids = [device.index] if device.type == "cuda" and not placed else None
        return DataParallel(model, device_ids=ids, static_graph=True)


class _Fields(nn.Module):
    """``model`` returning the fields of its :class:`CollabOutput` as a tuple: DDP finds the
    tensors of tuples and dicts, not of dataclasses, and reduces no gradient it cannot find."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple:
        out = self.model(x)
        return tuple(getattr(out, f.name) for f in dataclasses.fields(out))


class DataParallel(nn.Module):
    """``model`` under ``DistributedDataParallel``, returning a :class:`CollabOutput` still."""

    def __init__(self, model: nn.Module, **ddp_options: Any) -> None:
        super().__init__()
        self.ddp = DistributedDataParallel(_Fields(model), **ddp_options)

    def forward(self, x: torch.Tensor) -> CollabOutput:
        return CollabOutput(*self.ddp(x))
