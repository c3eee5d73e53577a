"""Callbacks: hooks into the training loop (checkpoints and metrics are the loop's own).

Under torchrun every rank calls its callbacks; ``trainer.dist.is_main`` is true on the one rank
that writes the run folder (rank 0), so a callback that writes files checks it first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only; the trainer imports this module
    from analysis.training.trainer import Trainer


class Callback:
    """Hooks into the loop; override what you need."""

    def on_step_end(self, trainer: Trainer, *, epoch: int, step: int) -> None: ...

    def on_epoch_end(self, trainer: Trainer, *, epoch: int, records: list[dict]) -> None: ...

    def on_fit_end(self, trainer: Trainer) -> None:
        """Training stopped: finished, failed or interrupted (release files, writers)."""
