"""TensorBoard event files under ``RUN/tb/``: losses, accuracies, learning rate, loss parts.

Needs the ``tensorboard`` package (``pip install 'collablens[tensorboard]'``, which ``make
install`` includes); without it training goes on and says once how to install it. Only the rank
that writes the run folder writes events. Every scalar is logged against the global training
step, so a resumed run continues the same curves: its writer purges the events a killed session
wrote after its last checkpoint.

Tags: ``step/loss``, ``step/lr`` every step; per epoch and split (``train``, ``val``, ``test``)
``<split>/loss`` (the method's objective), ``<split>/ensemble_loss``, ``<split>/ensemble_acc``,
``<split>/peer<i>_loss``, ``<split>/peer<i>_acc``; ``train/lr``; and the epoch means of the
method's loss parts, ``parts/<name>`` (``parts/<name>/peer<i>`` for per-peer parts).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from analysis.training.callbacks import Callback

log = logging.getLogger(__name__)

TB_DIR = "tb"
INSTALL_HINT = (
    "TensorBoard logging is off because the tensorboard package is missing; install it with "
    "`pip install 'collablens[tensorboard]'` (make install does) to get RUN/tb/ event files"
)
_warned = False


def open_writer(log_dir: Path, *, purge_step: int | None = None) -> Any | None:
    """A ``SummaryWriter`` on ``log_dir``, or None (said once per process) without tensorboard."""
    global _warned
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if not _warned:
            log.warning(INSTALL_HINT)
            _warned = True
        return None
    return SummaryWriter(str(log_dir), purge_step=purge_step)


def epoch_scalars(records: list[dict], parts: dict[str, list[float]]) -> dict[str, float]:
    """The scalars of one epoch: metrics records (one per split) and loss-part means."""
    out: dict[str, float] = {}
    for record in records:
        split = record["split"]
        for key in ("loss", "ensemble_loss", "ensemble_acc"):
            out[f"{split}/{key}"] = float(record[key])
        for kind in ("loss", "acc"):
            for i, value in enumerate(record.get(f"peer_{kind}", [])):
                out[f"{split}/peer{i}_{kind}"] = float(value)
        if "lr" in record:
            out[f"{split}/lr"] = float(record["lr"])
    for name, values in parts.items():
        if len(values) == 1:
            out[f"parts/{name}"] = values[0]
        else:
            out.update({f"parts/{name}/peer{i}": v for i, v in enumerate(values)})
    return out


class TensorBoardLog(Callback):
    """Write the run's curves to ``RUN/tb/`` (rank 0 only; nothing without tensorboard)."""

    def __init__(self) -> None:
        self.writer: Any | None = None
        self.opened = False

    def _writer(self, trainer: Any, step: int) -> Any | None:
        if not self.opened:
            self.opened = True
            # purge_step: events of a killed session past the resumed checkpoint are dropped
            self.writer = open_writer(trainer.out / TB_DIR, purge_step=step)
        return self.writer

    def on_step_end(self, trainer: Any, *, epoch: int, step: int) -> None:
        if not trainer.dist.is_main:
            return
        global_step = epoch * trainer.steps_per_epoch + step + 1
        writer = self._writer(trainer, global_step)
        if writer is not None:
            writer.add_scalar("step/loss", trainer.last_step["loss"], global_step)
            writer.add_scalar("step/lr", trainer.last_step["lr"], global_step)

    def on_epoch_end(self, trainer: Any, *, epoch: int, records: list[dict]) -> None:
        if not trainer.dist.is_main:
            return
        global_step = epoch * trainer.steps_per_epoch  # epoch is the number of epochs done
        writer = self._writer(trainer, global_step)
        if writer is None:
            return
        for tag, value in epoch_scalars(records, trainer.epoch_parts).items():
            writer.add_scalar(tag, value, global_step)
        writer.flush()  # a kill loses at most the steps of the epoch under way

    def on_fit_end(self, trainer: Any) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer, self.opened = None, False
