"""The training configuration: dataclasses filled from a YAML preset plus ``--set`` overrides."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from analysis.config.schema import apply_override, from_dict, to_dict
from analysis.errors import CollabError
from analysis.methods import METHODS, MethodOptions


@dataclass
class DataConfig:
    name: str = "digits"
    root: str | None = None
    download: bool = False
    image_size: int | None = None
    batch_size: int = 64
    eval_batch_size: int = 256
    num_workers: int = 0
    augment: bool = True
    #: Share of each class of the training split held out to select ``best`` (0: no selection,
    #: ``best`` is the last epoch). Drawn with ``val_seed``, independent of ``train.seed``.
    val_fraction: float = 0.1
    val_seed: int = 0
    #: Page-locked host batches for faster copies to the GPU: ``auto`` pins when training on
    #: CUDA (it only costs host memory elsewhere).
    pin_memory: bool | Literal["auto"] = "auto"
    #: Keep the ``num_workers`` loader processes alive between epochs (needs num_workers >= 1).
    #: The epoch travels with every index, so the seeded per-sample views stay exact.
    persistent_workers: bool = False
    #: Training views through ``torchvision.transforms.v2``: a preset (``cifar``: pad-4 crop and
    #: flip; ``imagenet``: RandomResizedCrop 224 and flip, images read at their size on disk) or
    #: a list of v2 steps (``[{RandomResizedCrop: {size: 224}}, RandomHorizontalFlip,
    #: AutoAugment]``). null keeps the dataset's own preset. See analysis/data/pipeline.py.
    transforms: str | list[Any] | None = None
    #: Evaluation images (validation, test, probes): a preset name (its evaluation steps, e.g.
    #: ``imagenet``: Resize 256 and CenterCrop 224) or a list of v2 steps; null: the preset's.
    eval_transforms: str | list[Any] | None = None
    #: MixUp / CutMix of training batches: the Beta(alpha, alpha) parameter, 0 = off; with both
    #: on each step picks one. Soft targets: methods independent, dml, divide_cotrain. See
    #: analysis/data/mixing.py.
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0


@dataclass
class ModelConfig:
    """``arch`` is one registered model for every peer, or a list with one name per peer."""

    arch: str | list[str] = "resnet8"
    peers: int = 3
    options: dict[str, Any] = field(default_factory=dict)
    ensemble: Literal["logit_mean", "prob_mean"] = "logit_mean"


@dataclass
class OptimConfig:
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    no_decay_norm_bias: bool = False


@dataclass
class ScheduleConfig:
    name: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: int = 0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    min_lr: float = 0.0


@dataclass
class TrainConfig:
    epochs: int = 10
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    save_every: int = 1
    max_steps_per_epoch: int | None = None
    threads: int | None = None
    #: What chooses ``best`` on the validation split: ``auto`` (the method's reported number),
    #: ``ensemble``, ``best_peer`` or ``mean_peer``.
    select: Literal["auto", "ensemble", "best_peer", "mean_peer"] = "auto"
    #: Forward passes under autocast in ``bf16`` or ``fp16`` (with a gradient scaler); losses and
    #: KL terms are always computed in float32. ``fp32`` (default) is exact and reproducible.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    #: NHWC weights and inputs. ``auto`` is true on the CPU, where oneDNN's NHWC convolutions
    #: made the CIFAR-size training steps 1.2-1.3x faster and the digits presets no slower
    #: (benchmarks/bench_train_step.py), and false elsewhere (not yet measured on GPUs). Runs
    #: made before release 0.3 trained in NCHW and resume so (analysis/runs/legacy.py).
    channels_last: bool | Literal["auto"] = "auto"
    #: ``torch.compile`` each peer (first steps are slow while it compiles).
    compile: bool = False
    #: Run the K same-architecture peers (dml, independent, divide_cotrain; OD students of plain
    #: ResNet blocks) as one grouped network (analysis.models.fused). Equal up to float rounding,
    #: not bit for bit. ``auto`` fuses on CUDA unless ``deterministic`` is true (a K-peer DML step
    #: 0.65-0.68x the sum of single-peer steps on an H200, against 0.93-0.95x unfused) and where
    #: the peers can be fused; never on the CPU, where it is slower (benchmarks/bench_fused.py).
    fuse_peers: bool | Literal["auto"] = "auto"
    #: Deterministic algorithms: ``auto`` is true on the CPU (bit-identical runs and resumes) and
    #: false on CUDA, where ``cudnn.benchmark`` picks the fastest kernels instead. A resume is
    #: exact whenever this is true (tested on the CPU; benchmarks/gpu_checks.py checks CUDA).
    deterministic: bool | Literal["auto"] = "auto"
    #: Under torchrun: synchronise BatchNorm statistics over all ranks, so that N ranks train the
    #: same model as one process with the same global batch (data.batch_size is global). False
    #: normalises each rank's share of the batch alone (faster, the usual ImageNet practice).
    sync_bn: bool = True
    #: One device per peer (e.g. [cuda:0, cuda:1]) for models of separate peers; empty keeps every
    #: peer on train.device, where the losses are computed in any case.
    peer_devices: list[str] = field(default_factory=list)
    #: Also write TensorBoard event files under RUN/tb/ (needs the tensorboard extra).
    tensorboard: bool = True


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodOptions = field(default_factory=lambda: METHODS.get("dml").Options())
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config; the switches of :data:`QUIET_KEYS` appear only when not default."""
        data = to_dict(self)
        for section, names in QUIET_KEYS.items():
            default = _SECTIONS[section]()
            for name in names:
                if data[section][name] == to_dict(getattr(default, name)):
                    del data[section][name]
        return data


#: Speed, distribution and logging switches added after runs were shipped: written to
#: ``config.yaml`` only when they differ from their defaults, so the configs (and sweep plans) of
#: runs that leave them alone read exactly as before. Missing keys read back as the defaults.
QUIET_KEYS = {
    "data": (
        "pin_memory",
        "persistent_workers",
        "transforms",
        "eval_transforms",
        "mixup_alpha",
        "cutmix_alpha",
    ),
    "train": (
        "precision",
        "channels_last",
        "compile",
        "fuse_peers",
        "deterministic",
        "sync_bn",
        "peer_devices",
        "tensorboard",
    ),
}


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "train": TrainConfig,
}


def config_from_dict(data: dict[str, Any]) -> Config:
    """Validate a nested dict and build a :class:`Config`; errors name the offending key."""
    if not isinstance(data, dict):
        raise CollabError("a config must be a YAML mapping with sections data, model, method, ...")
    unknown = sorted(set(data) - set(_SECTIONS) - {"method"})
    if unknown:
        raise CollabError(
            f"unknown config section {unknown[0]!r}; valid sections are: "
            f"{', '.join(sorted([*_SECTIONS, 'method']))}"
        )
    sections = {name: from_dict(cls, data.get(name), path=name) for name, cls in _SECTIONS.items()}
    method = dict(data.get("method") or {"name": "dml"})
    if "name" not in method:
        raise CollabError("config key 'method.name' is missing; set it, e.g. method.name=dml")
    options_cls = METHODS.get(str(method["name"])).Options
    config = Config(method=from_dict(options_cls, method, path="method"), **sections)
    _check_ranges(config)
    return config


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Read a YAML preset (or start from defaults) and apply ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise CollabError(
                f"config file {path} does not exist; pass a YAML preset from configs/"
            )
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (UnicodeDecodeError, ValueError):
            raise CollabError(
                f"config file {path} is not a text file; pass a YAML preset from configs/"
            ) from None
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            where = f" (line {line + 1})" if line is not None else ""
            raise CollabError(
                f"config file {path} is not valid YAML{where}; fix its syntax"
            ) from None
    if not isinstance(data, dict):
        raise CollabError(
            f"config file {path} holds a YAML {type(data).__name__}, not a mapping of sections "
            "(data, model, method, optim, schedule, train); see configs/ for examples"
        )
    for assignment in overrides:
        apply_override(data, assignment)
    return config_from_dict(data)


def _check_ranges(config: Config) -> None:
    train, data, optim, schedule = config.train, config.data, config.optim, config.schedule
    checks = [
        ("model.peers", config.model.peers >= 1, "at least 1"),
        ("train.epochs", train.epochs >= 1, "at least 1"),
        ("train.seed", train.seed >= 0, "0 or more"),
        ("train.save_every", train.save_every >= 0, "0 (never) or more"),
        (
            "train.max_steps_per_epoch",
            train.max_steps_per_epoch is None or train.max_steps_per_epoch >= 1,
            "at least 1, or null for the whole epoch",
        ),
        ("train.threads", train.threads is None or train.threads >= 1, "at least 1, or null"),
        ("data.batch_size", data.batch_size >= 1, "at least 1"),
        ("data.eval_batch_size", data.eval_batch_size >= 1, "at least 1"),
        ("data.num_workers", data.num_workers >= 0, "0 or more"),
        (
            "data.persistent_workers",
            not data.persistent_workers or data.num_workers >= 1,
            "false unless data.num_workers is at least 1",
        ),
        (
            "train.peer_devices",
            all(_is_device(d) for d in train.peer_devices),
            "a list of devices such as [cpu, cpu] or [cuda:0, cuda:1], or []",
        ),
        ("data.val_fraction", 0 <= data.val_fraction < 1, "in [0, 1) (0.1 is usual)"),
        ("data.mixup_alpha", data.mixup_alpha >= 0, "0 (off) or positive (0.2 is usual)"),
        ("data.cutmix_alpha", data.cutmix_alpha >= 0, "0 (off) or positive (1.0 is usual)"),
        ("data.val_seed", data.val_seed >= 0, "0 or more"),
        ("optim.lr", math.isfinite(optim.lr) and optim.lr > 0, "a positive number"),
        ("optim.momentum", 0 <= optim.momentum < 1, "in [0, 1)"),
        ("optim.weight_decay", optim.weight_decay >= 0, "0 or more"),
        ("schedule.warmup_epochs", schedule.warmup_epochs >= 0, "0 or more"),
        ("schedule.gamma", schedule.gamma > 0, "positive"),
        ("schedule.min_lr", schedule.min_lr >= 0, "0 or more"),
        (
            "schedule.milestones",
            all(m >= 1 for m in schedule.milestones),
            "a list of epochs, each at least 1",
        ),
    ]
    for key, ok, expected in checks:
        if not ok:
            value = _value(config, key)
            raise CollabError(f"config key {key!r} must be {expected} (got {value!r}); fix it")
    if train.peer_devices and len(train.peer_devices) != config.model.peers:
        raise CollabError(
            f"config key 'train.peer_devices' lists {len(train.peer_devices)} devices for "
            f"{config.model.peers} peers; give one per peer, or [] for none"
        )
    arch = config.model.arch
    if isinstance(arch, list) and len(arch) != config.model.peers:
        raise CollabError(
            f"config key 'model.arch' lists {len(arch)} architectures for {config.model.peers} peers; "
            "give one per peer or a single name"
        )


def _is_device(name: str) -> bool:
    """``cpu``, ``mps``, ``cuda`` or ``cuda:N`` (whether it exists is checked when training)."""
    kind, _, number = name.partition(":")
    return name in ("cpu", "mps", "cuda") or (kind == "cuda" and number.isdigit())


def _value(config: Config, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(config, section), name)
