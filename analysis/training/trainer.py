"""The training loop: one forward pass per peer per step, seeded, resumable, checkpointed."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from analysis import runs
from analysis.config import Config
from analysis.data import MultiView, WithIndex, augment_for, build_dataset
from analysis.device import pick_device
from analysis.errors import CollabError
from analysis.methods import create_method
from analysis.runs import build_manifest, load_resume, save_resume, save_weights
from analysis.training.callbacks import Callback
from analysis.training.optim import build_optimizer, lr_at, set_lr
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
        cfg = self.config
        self._prepare_folder(resume)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(cfg.train.seed)
        data = build_dataset(
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
        views = self.model.num_peers if self.method.per_peer_views else 1
        self.views = MultiView(
            data.train,
            views=views,
            seed=cfg.train.seed,
            augment=augment_for(data.name) if cfg.data.augment else None,
        )
        self.train_set = WithIndex(self.views)
        test_loader = DataLoader(
            data.test, batch_size=cfg.data.eval_batch_size, num_workers=cfg.data.num_workers
        )
        start, best = 0, {"best_acc": -1.0, "best_epoch": 0}
        last = runs.checkpoint_path(self.out, "last")
        if resume and last.exists():
            start, best, method_state = load_resume(last, self.model, self.optimizer)
            self.method.load_state_dict(method_state)
            runs.keep_metrics_through(self.out, start)
            log.info("resuming %s after epoch %d", self.out, start)
        else:
            runs.write_config(self.out, cfg.to_dict())
            (self.out / runs.METRICS).write_text("")
        runs.write_json(
            self.out / runs.MANIFEST,
            build_manifest(cfg, data, self.model, status="running", **best),
        )
        for epoch in range(start, cfg.train.epochs):
            train_record = self._train_epoch(epoch)
            test_record = evaluate(
                self.model, test_loader, method=self.method, device=self.device, epoch=epoch + 1
            )
            records = [
                self._record(epoch, "train", train_record),
                self._record(epoch, "test", test_record),
            ]
            runs.append_metrics(self.out, records)
            if test_record["ensemble_acc"] > best["best_acc"]:
                best = {"best_acc": test_record["ensemble_acc"], "best_epoch": epoch + 1}
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
                extra=best,
                method_state=self.method.state_dict(),
            )
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch=epoch + 1, records=records)
        runs.write_json(
            self.out / runs.MANIFEST,
            build_manifest(cfg, data, self.model, status="complete", **best),
        )
        return self.out

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
                raise CollabError(
                    f"the training loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; "
                    "lower optim.lr (checkpoints up to the previous epoch are kept)"
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

    def _prepare_folder(self, resume: bool) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise CollabError(f"--out {self.out} is a file; choose a folder path")
        if runs.is_run(self.out) and not resume:
            raise CollabError(
                f"{self.out} already holds a run; pass --resume to continue it or choose another --out"
            )
        (self.out / runs.CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        (self.out / runs.PROBES).mkdir(exist_ok=True)


def train(
    config: Config, out_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> Path:
    """Train ``config`` into ``out_dir`` and return the run folder path."""
    return Trainer(config, out_dir, progress=progress).fit(resume=resume)
