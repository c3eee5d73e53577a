"""The training loop: one forward pass per peer per step, seeded, resumable, checkpointed."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from analysis import runs
from analysis.config import Config
from analysis.data import MultiView, WithIndex, augment_for, build_dataset
from analysis.data.validation import split_validation
from analysis.device import pick_device
from analysis.errors import CollabError
from analysis.methods import create_method
from analysis.runs import (
    Claim,
    build_manifest,
    claim_run_folder,
    load_resume,
    provenance,
    read_manifest,
    save_resume,
    save_weights,
)
from analysis.training.callbacks import Callback
from analysis.training.optim import build_optimizer, lr_at, set_lr
from analysis.training.selection import resolve_metric, score
from analysis.training.stats import EpochStats, evaluate

log = logging.getLogger(__name__)


class Trainer:
    """Train ``config`` into the run folder ``out_dir``.

    Determinism: the model is initialised from ``train.seed``; the data order of epoch e comes
    from a generator seeded by (seed, e) and every augmented view from (seed, e, index, view),
    so a resumed run sees exactly the batches an uninterrupted one would. The torch RNG state
    (dropout) is saved in ``last.safetensors`` with the optimizer state.
    """

    def __init__(
        self,
        config: Config,
        out_dir: str | Path,
        *,
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
    ):
        self.config = config
        self.out = Path(out_dir)
        self.callbacks = list(callbacks)
        self.progress = progress
        self.device = pick_device(config.train.device)
        self.method = create_method(config.method)

    def fit(self, *, resume: bool = False) -> Path:
        """Train into the run folder and return its path.

        Writes only into a new or empty folder, or into the run it resumes (see
        :func:`analysis.runs.claim_run_folder`); a finished run is returned untouched.
        """
        cfg = self.config
        claim = claim_run_folder(self.out, resume=resume)
        if claim is Claim.COMPLETE:
            log.info("%s is already complete; nothing to do", self.out)
            return self.out
        self.origin = read_manifest(self.out) if claim is Claim.RESUME else None
        self._clock = (time.monotonic(), float((self.origin or {}).get("train_seconds", 0.0)))
        was_empty = not self.out.exists() or not any(self.out.iterdir())
        if claim is Claim.FRESH:
            self._start_folder()
        try:
            self._setup()
        except CollabError:
            if was_empty:  # nothing trained and the folder was ours: take back what was written
                self._undo_start()
            raise
        start, self.best = 0, {"best_acc": -1.0, "best_epoch": 0}
        last = runs.checkpoint_path(self.out, "last")
        if claim is Claim.RESUME:
            start, self.best, method_state = load_resume(last, self.model, self.optimizer)
            self.method.load_state_dict(method_state)
            runs.keep_metrics_through(self.out, start)
            log.info("resuming %s after epoch %d", self.out, start)
        self._write_manifest("running", **self.best)
        for epoch in range(start, cfg.train.epochs):
            records = [self._record(epoch, "train", self._train_epoch(epoch))]
            evals = {}
            for split, loader in self.loaders.items():
                evals[split] = evaluate(
                    self.model, loader, method=self.method, device=self.device, epoch=epoch + 1
                )
                self._check_finite(evals[split], epoch)
                records.append(self._record(epoch, split, evals[split]))
            runs.append_metrics(self.out, records)
            chosen = score(evals["val"], self.metric) if "val" in evals else math.inf
            if chosen > self.best["best_acc"] or "val" not in evals:
                self.best = {
                    "best_acc": chosen if "val" in evals else -1.0,
                    "best_epoch": epoch + 1,
                    "test_acc_at_best": evals["test"]["ensemble_acc"],
                }
                save_weights(
                    runs.checkpoint_path(self.out, "best"), self.model, {"epoch": str(epoch + 1)}
                )
            every = cfg.train.save_every
            if every and ((epoch + 1) % every == 0 or epoch + 1 == cfg.train.epochs):
                save_weights(
                    runs.checkpoint_path(self.out, f"epoch_{epoch + 1:03d}"),
                    self.model,
                    {"epoch": str(epoch + 1)},
                )
            save_resume(
                last,
                self.model,
                self.optimizer,
                epoch=epoch + 1,
                extra=self.best,
                method_state=self.method.state_dict(),
            )
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch=epoch + 1, records=records)
        self._write_manifest("complete", **self.best)
        return self.out

    def _setup(self) -> None:
        """Data, model, optimizer and loaders (raises CollabError on a bad dataset or model)."""
        cfg = self.config
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(cfg.train.seed)
        data = self.data = build_dataset(
            cfg.data.name,
            root=cfg.data.root,
            download=cfg.data.download,
            image_size=cfg.data.image_size,
            seed=cfg.train.seed,
        )
        self.model = self.method.build_model(cfg.model, data).to(self.device)
        self.optimizer = build_optimizer(
            cfg.optim, self.model, weight_decay_scale=self.method.weight_decay_scale
        )
        train, val = split_validation(
            data.train, fraction=cfg.data.val_fraction, seed=cfg.data.val_seed
        )
        self.metric = resolve_metric(cfg.train.select, self.method)
        self.selection = {
            "split": "val" if val is not None else "none (the last epoch is best)",
            "metric": self.metric,
            "val_fraction": cfg.data.val_fraction,
            "val_seed": cfg.data.val_seed,
            "val_size": 0 if val is None else len(val),
            "train_size": len(train),
        }
        views = self.method.num_views(self.model)
        self.views = MultiView(
            train,
            views=views,
            seed=cfg.train.seed,
            augment=augment_for(data.name) if cfg.data.augment else None,
        )
        self.train_set = WithIndex(self.views)
        self.loaders = {
            split: DataLoader(
                part, batch_size=cfg.data.eval_batch_size, num_workers=cfg.data.num_workers
            )
            for split, part in (("val", val), ("test", data.test))
            if part is not None
        }

    def _start_folder(self) -> None:
        """Config and a first manifest before anything slow: a kill at any moment is resumable."""
        self._made_folder = not self.out.exists()
        (self.out / runs.CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        (self.out / runs.PROBES).mkdir(exist_ok=True)
        runs.write_config(self.out, self.config.to_dict())
        (self.out / runs.METRICS).write_text("")
        self.origin = provenance(self.config)
        runs.write_json(self.out / runs.MANIFEST, {**self.origin, "status": "starting"})

    def _undo_start(self) -> None:
        """Remove what :meth:`_start_folder` wrote into a new or empty folder (setup failed)."""
        for name in (runs.CONFIG, runs.MANIFEST, runs.METRICS):
            (self.out / name).unlink(missing_ok=True)
        for sub in (runs.CHECKPOINTS, runs.PROBES):
            if (self.out / sub).is_dir() and not any((self.out / sub).iterdir()):
                (self.out / sub).rmdir()
        if self._made_folder and not any(self.out.iterdir()):
            self.out.rmdir()

    def _write_manifest(self, status: str, **extra) -> None:
        """The manifest with ``status``; ``train_seconds`` adds up the wall time of every session."""
        started, before = self._clock
        extra["train_seconds"] = round(before + time.monotonic() - started, 1)
        manifest = build_manifest(
            self.config,
            self.data,
            self.model,
            status=status,
            origin=self.origin,
            selection=self.selection,
            **extra,
        )
        runs.write_json(self.out / runs.MANIFEST, manifest)

    def _fail(self, reason: str) -> CollabError:
        """Mark the run failed (with the reason) and return the error to raise."""
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

    def _train_epoch(self, epoch: int) -> dict:
        cfg = self.config
        self.views.set_epoch(epoch)
        order = torch.randperm(
            len(self.train_set),
            generator=torch.Generator().manual_seed(cfg.train.seed * 100_003 + epoch),
        )
        loader = DataLoader(
            self.train_set,
            batch_size=cfg.data.batch_size,
            sampler=order.tolist(),
            num_workers=cfg.data.num_workers,
            drop_last=len(order) > cfg.data.batch_size,
        )
        steps = (
            len(loader)
            if cfg.train.max_steps_per_epoch is None
            else min(len(loader), cfg.train.max_steps_per_epoch)
        )
        stats = EpochStats()
        self.model.train()
        bar = tqdm(
            total=steps,
            desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
            disable=not self.progress,
            leave=False,
        )
        for step, (x, y, index) in enumerate(loader):
            if step >= steps:
                break
            lr = lr_at(
                cfg.schedule,
                base_lr=cfg.optim.lr,
                epoch=epoch + step / steps,
                epochs=cfg.train.epochs,
            )
            set_lr(self.optimizer, lr)
            if x.dim() == 5:  # per-peer views arrive (B, K, C, H, W); models take (K, B, C, H, W)
                x = x.transpose(0, 1)
            x, y = x.to(self.device), y.to(self.device)
            out = self.model(x)
            loss, _ = self.method.loss(
                out, y, epoch=epoch + step / steps, index=index.to(self.device)
            )
            if not math.isfinite(loss.item()):
                raise self._fail(
                    f"the training loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; "
                    "lower optim.lr and train into a new --out (earlier checkpoints are kept)"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            stats.update(out, y, loss.detach())
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss.item():.3f}", acc=f"{stats.running_acc:.3f}", lr=f"{lr:.3g}"
            )
            for cb in self.callbacks:
                cb.on_step_end(self, epoch=epoch, step=step)
        bar.close()
        summary = stats.summary()
        summary["lr"] = lr_at(
            cfg.schedule, base_lr=cfg.optim.lr, epoch=epoch, epochs=cfg.train.epochs
        )
        return summary

    def _record(self, epoch: int, split: str, summary: dict) -> dict:
        record = {"epoch": epoch + 1, "split": split, **summary}
        if split == "train":
            log.info(
                "epoch %d: train loss %.4f ensemble acc %.4f",
                epoch + 1,
                summary["loss"],
                summary["ensemble_acc"],
            )
        return record


def train(
    config: Config, out_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> Path:
    """Train ``config`` into ``out_dir`` and return the run folder path."""
    return Trainer(config, out_dir, progress=progress).fit(resume=resume)
