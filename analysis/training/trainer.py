"""The training loop: one forward pass per peer per step, seeded, resumable, checkpointed."""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from analysis import runs
from analysis.config import Config
from analysis.data import MultiView, augment_for, dataset_for
from analysis.data.validation import LabelledSubset, split_validation
from analysis.device import pick_device
from analysis.errors import CollabError
from analysis.layout import to_channels_last, uses_channels_last
from analysis.methods import create_method
from analysis.models import CollabOutput
from analysis.runs import Claim, load_resume
from analysis.training.callbacks import Callback
from analysis.training.distributed import Dist
from analysis.training.folder import RunFolder
from analysis.training.loader import batch_mix, build_loaders, epoch_iter, pin_memory
from analysis.training.model_setup import prepare_model
from analysis.training.optim import lr_at, set_lr
from analysis.training.precision import Precision, extra_state, restore_extra_state
from analysis.training.selection import resolve_metric, score, selection_record
from analysis.training.speed import configure_determinism
from analysis.training.stats import EpochStats, evaluate
from analysis.training.tensorboard import TensorBoardLog

log = logging.getLogger(__name__)


class Trainer:
    """Train ``config`` into the run folder ``out_dir``.

    Determinism: the model is initialised from ``train.seed``; the data order of epoch e comes
    from a generator seeded by (seed, e) and every augmented view from (seed, e, index, view),
    so a resumed run sees exactly the batches an uninterrupted one would. The torch RNG state
    (dropout) is saved in ``last.safetensors`` with the optimizer state.

    Under torchrun (see :mod:`analysis.training.distributed`) every rank runs this loop on its
    share of each global batch and rank 0 alone writes the run folder.

    ``init_weights`` (a state dict of the built model) replaces the seeded initial weights of a
    fresh run, e.g. a widened network in width search; a resumed run continues from its own
    resume state instead.
    """

    def __init__(
        self,
        config: Config,
        out_dir: str | Path,
        *,
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
        init_weights: dict[str, torch.Tensor] | None = None,
    ):
        self.config = config
        self.init_weights = init_weights
        self.out = Path(out_dir)
        self.dist = Dist.from_env()
        self.callbacks = list(callbacks)
        if config.train.tensorboard:
            self.callbacks.append(TensorBoardLog())
        self.progress = progress and self.dist.is_main
        self.device = self.dist.device(pick_device(config.train.device))
        self.method = create_method(config.method)
        self.precision = Precision(config.train.precision, self.device)
        self.folder = RunFolder(self.out, config)
        self.last_step: dict[str, float] = {}
        self.epoch_parts: dict[str, list[float]] = {}

    def fit(self, *, resume: bool = False) -> Path:
        """Train into the run folder and return its path.

        Writes only into a new or empty folder, or into the run it resumes (see
        :func:`analysis.runs.claim_run_folder`); a finished run is returned untouched.
        """
        self.dist.start(self.device)
        try:
            return self._fit(resume)
        finally:
            for cb in self.callbacks:
                cb.on_fit_end(self)
            if self.dist.active:  # DDP's reducer holds gloo work: free it before the group goes,
                self.net = None  # not at interpreter exit, where gloo's threads can abort
                gc.collect()
            self.dist.stop()

    def _fit(self, resume: bool) -> Path:
        cfg, main = self.config, self.dist.is_main
        claim = self.dist.on_main(lambda: self.folder.claim(resume=resume))
        if claim is Claim.COMPLETE:
            log.info("%s is already complete; nothing to do", self.out)
            return self.out
        try:
            self._setup()
        except CollabError:
            if main:  # nothing trained and the folder was ours: take back what was written
                self.folder.undo_start()
            raise
        start, self.best = 0, {"best_acc": -1.0, "best_epoch": 0}
        if claim is Claim.RESUME:
            last = runs.checkpoint_path(self.out, "last")
            start, extra, method_state = load_resume(last, self.model, self.optimizer)
            self.best = restore_extra_state(extra, self.precision, self.device)
            self.method.load_state_dict(method_state)
            if main:
                runs.keep_metrics_through(self.out, start)
            log.info("resuming %s after epoch %d", self.out, start)
        if main:
            self._write_manifest("running", **self.best)
        for epoch in range(start, cfg.train.epochs):
            self._epoch(epoch)
        if main:
            self._write_manifest("complete", **self.best)
        self.dist.barrier()
        return self.out

    def _epoch(self, epoch: int) -> None:
        main = self.dist.is_main
        records = [self._record(epoch, "train", self._train_epoch(epoch))]
        evals = {}
        for split, (loader, reduce) in self.loaders.items():
            evals[split] = evaluate(
                self.model,
                epoch_iter(loader),
                method=self.method,
                device=self.device,
                epoch=epoch + 1,
                forward=self.forward,
                reduce=reduce,
            )
            self._check_finite(evals[split], epoch)
            records.append(self._record(epoch, split, evals[split]))
        if main:
            runs.append_metrics(self.out, records)
        chosen = score(evals["val"], self.metric) if "val" in evals else math.inf
        improved = chosen > self.best["best_acc"] or "val" not in evals
        if improved:
            self.best = {
                "best_acc": chosen if "val" in evals else -1.0,
                "best_epoch": epoch + 1,
                "test_acc_at_best": evals["test"]["ensemble_acc"],
            }
        if main:
            self.folder.save_epoch(
                epoch + 1,
                self.model,
                self.optimizer,
                best=improved,
                extra={**self.best, **extra_state(self.precision, self.device)},
                method_state=self.method.state_dict(),
            )
        for cb in self.callbacks:
            cb.on_epoch_end(self, epoch=epoch + 1, records=records)

    def _setup(self) -> None:
        """Data, model, optimizer and loaders (raises CollabError on a bad dataset or model)."""
        cfg, dist = self.config, self.dist
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.deterministic = configure_determinism(cfg.train.deterministic, self.device)
        self.channels_last = uses_channels_last(cfg.train.channels_last, self.device)
        dist.check(cfg)
        torch.manual_seed(cfg.train.seed)
        data = self.data = dataset_for(cfg.data, seed=cfg.train.seed)
        self.model, self.optimizer, self.net = prepare_model(
            cfg, self.method, data, device=self.device, dist=dist, init_weights=self.init_weights
        )
        self.method.collective = dist.collective()
        train, val = split_validation(
            data.train, fraction=cfg.data.val_fraction, seed=cfg.data.val_seed
        )
        self.metric = resolve_metric(cfg.train.select, self.method)
        self.selection = selection_record(self.metric, cfg.data, train=train, val=val)
        if data.augment_source is not None:  # views are cut from the images as read from disk
            train = LabelledSubset(data.augment_source, train.indices)
        self.views = MultiView(
            train,
            views=self.method.num_views(self.model),
            seed=cfg.train.seed,
            augment=(data.augment or augment_for(data.name)) if cfg.data.augment else None,
        )
        self.mix = batch_mix(cfg.data, self.method, data.num_classes)
        self.pin = pin_memory(cfg.data, self.device)
        self.batches, self.train_loader, self.loaders = build_loaders(
            cfg, self.views, val, self.data.test, dist=dist, pin=self.pin
        )
        limit = cfg.train.max_steps_per_epoch
        self.steps_per_epoch = len(self.batches) if limit is None else min(len(self.batches), limit)

    def _write_manifest(self, status: str, **extra) -> None:
        self.folder.write_manifest(
            status, data=self.data, model=self.model, selection=self.selection, **extra
        )

    def _fail(self, reason: str) -> CollabError:
        """Mark the run failed (with the reason) and return the error to raise."""
        if self.dist.is_main:
            self._write_manifest("failed", failure=reason, **self.best)
        return CollabError(reason)

    def _check_finite(self, record: dict, epoch: int) -> None:
        """A model whose evaluation loss is not finite is never kept as ``best``: the run fails."""
        losses = [record["loss"], record["ensemble_loss"], *record["peer_loss"]]
        if not all(math.isfinite(v) for v in losses):
            raise self._fail(
                f"the evaluation loss became non-finite after epoch {epoch + 1}; "
                "lower optim.lr and train into a new --out (earlier checkpoints are kept)"
            )

    def forward(self, model: torch.nn.Module, x: torch.Tensor) -> CollabOutput:
        """``model(x)`` in the run's memory format and precision, outputs in float32."""
        if self.channels_last:
            x = to_channels_last(x)
        with self.precision.autocast():
            out = model(x)
        return self.precision.float32(out)

    def _train_epoch(self, epoch: int) -> dict:
        cfg = self.config
        self.views.set_epoch(epoch)
        self.batches.set_epoch(epoch)
        steps = self.steps_per_epoch
        stats = EpochStats()
        self.model.train()
        bar = tqdm(
            total=steps,
            desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
            disable=not self.progress,
            leave=False,
        )
        for step, (x, y, index) in enumerate(epoch_iter(self.train_loader)):
            if step >= steps:
                break
            lr = lr_at(
                cfg.schedule,
                base_lr=cfg.optim.lr,
                epoch=epoch + step / steps,
                epochs=cfg.train.epochs,
            )
            set_lr(self.optimizer, lr)
            if self.mix is not None:  # soft targets (B, C); every view mixed with the same pairs
                x, y = self.mix(x, y, seed=cfg.train.seed, epoch=epoch, step=step)
            if x.dim() == 5:  # per-peer views arrive (B, K, C, H, W); models take (K, B, C, H, W)
                x = x.transpose(0, 1)
            x, y = x.to(self.device, non_blocking=self.pin), y.to(self.device)
            out = self.forward(self.net, x)
            loss, parts = self.method.loss(
                out, y, epoch=epoch + step / steps, index=index.to(self.device)
            )
            value = self.dist.mean_value(loss)  # every rank stops together on a bad loss
            if not math.isfinite(value):
                raise self._fail(
                    f"the training loss became {value} at epoch {epoch + 1}, step {step + 1}; "
                    "lower optim.lr and train into a new --out (earlier checkpoints are kept)"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.precision.backward(loss)
            self.precision.step(self.optimizer)
            stats.update(out, y, loss.detach(), parts)
            self.last_step = {"loss": value, "lr": lr}
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}", acc=f"{stats.running_acc:.3f}", lr=f"{lr:.3g}")
            for cb in self.callbacks:
                cb.on_step_end(self, epoch=epoch, step=step)
        bar.close()
        if self.dist.active:
            stats.all_reduce(self.dist.sum)
        self.epoch_parts = stats.part_means()
        summary = stats.summary()
        summary["lr"] = lr_at(
            cfg.schedule, base_lr=cfg.optim.lr, epoch=epoch, epochs=cfg.train.epochs
        )
        return summary

    def _record(self, epoch: int, split: str, summary: dict) -> dict:
        if split == "train" and self.dist.is_main:
            loss, acc = summary["loss"], summary["ensemble_acc"]
            log.info("epoch %d: train loss %.4f ensemble acc %.4f", epoch + 1, loss, acc)
        return {"epoch": epoch + 1, "split": split, **summary}


def train(
    config: Config, out_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> Path:
    """Train ``config`` into ``out_dir`` and return the run folder path."""
    return Trainer(config, out_dir, progress=progress).fit(resume=resume)
