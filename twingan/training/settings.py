"""The settings the training loop reads, typed and frozen, built once from the composed config.

The loop reads these fields instead of ``cfg.train...`` lookups: a DictConfig access is a string-keyed walk
with type conversion each time, and a typo in a key there fails only when the line runs. The full config
still goes, as it is, into the run folder and the checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


@dataclass(frozen=True)
class OptimizerSettings:
    """Adam's settings, the same for both sides (``train.optimizer``)."""

    lr: float
    betas: tuple[float, float]
    eps: float


@dataclass(frozen=True)
class TrainSettings:
    """Everything the loop reads from the config, converted to plain types (see the module docstring)."""

    run_dir: Path
    seed: int
    device: str
    resume: str | None
    precision: str
    cpu_threads: int | None
    channels_last: str | bool
    optimizer: OptimizerSettings
    ema_half_life_images: float
    ema_rampup: float | None
    d_steps: int
    grad_clip: float | None
    penalty_every: int
    max_images: int | None
    checkpoint_every_images: int
    checkpoint_keep_last: int
    nan_policy: str
    rollback_lr_factor: float
    max_rollbacks: int
    num_workers: int
    augment: dict[str, Any]
    has_synthetic_test_set: bool
    log_every_steps: int
    progress_bar: bool
    tensorboard: bool
    samples_every_images: int
    samples_per_domain: int
    eval_every_images: int
    eval_baselines: bool

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "TrainSettings":
        train, logging = cfg.train, cfg.logging
        return cls(
            run_dir=Path(cfg.run_dir) if cfg.run_dir else Path("runs") / str(cfg.name),
            seed=int(cfg.seed),
            device=str(cfg.device),
            resume=None if cfg.resume is None else str(cfg.resume),
            precision=str(train.precision),
            cpu_threads=None if train.cpu_threads is None else int(train.cpu_threads),
            channels_last=train.channels_last if isinstance(train.channels_last, bool) else str(train.channels_last),
            optimizer=OptimizerSettings(
                lr=float(train.optimizer.lr),
                betas=tuple(float(b) for b in train.optimizer.betas),  # type: ignore[arg-type]
                eps=float(train.optimizer.eps),
            ),
            ema_half_life_images=float(train.ema.half_life_images),
            ema_rampup=None if train.ema.rampup is None else float(train.ema.rampup),
            d_steps=int(train.d_steps),
            grad_clip=None if train.grad_clip is None else float(train.grad_clip),
            penalty_every=int(cfg.loss.penalty_every),
            max_images=None if train.max_images is None else int(train.max_images),
            checkpoint_every_images=int(train.checkpoint.every_images),
            checkpoint_keep_last=int(train.checkpoint.keep_last),
            nan_policy=str(train.nan_policy),
            rollback_lr_factor=float(train.rollback_lr_factor),
            max_rollbacks=int(train.max_rollbacks),
            num_workers=int(cfg.data.num_workers),
            augment=OmegaConf.to_container(cfg.data.augment, resolve=True),  # type: ignore[arg-type]
            has_synthetic_test_set=cfg.data.get("synthetic") is not None,
            log_every_steps=int(logging.every_steps),
            progress_bar=bool(logging.progress_bar),
            tensorboard=bool(logging.tensorboard),
            samples_every_images=int(logging.samples.every_images),
            samples_per_domain=int(logging.samples.per_domain),
            eval_every_images=int(logging.eval.every_images),
            eval_baselines=bool(logging.eval.baselines),
        )
