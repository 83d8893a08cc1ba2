"""Training configuration: Hydra composition of conf/, and its translation into typed objects."""
from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Mapping, Sequence

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import twingan
from twingan.errors import ConfigError
from twingan.losses import GANObjective, LossWeights, build_objective
from twingan.models import ModelConfig
from twingan.training.schedule import ProgressiveSchedule

CONF_DIR = Path(twingan.__file__).resolve().parent / "conf"


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The resolved training config for Hydra ``overrides`` (e.g. ``experiment=demo``, ``train.precision=bf16``)."""
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="twingan"):
            cfg = compose("config", overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"bad configuration override: {exc}") from exc
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            "required settings are missing: "
            + ", ".join(missing)
            + " (set them on the command line, e.g. "
            + f"{missing[0]}=/path/to/data)"
        )
    return cfg


def config_to_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def model_config(cfg: DictConfig) -> ModelConfig:
    domains = tuple(cfg.data.domains.keys())
    try:
        return ModelConfig(domains=domains, **config_to_dict(cfg.model))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model settings: {exc}") from exc


def loss_settings(cfg: DictConfig) -> tuple[GANObjective, LossWeights]:
    try:
        weights = LossWeights(**config_to_dict(cfg.loss.weights))
        objective = build_objective(str(cfg.loss.gan.objective), **config_to_dict(cfg.loss.gan.params))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"loss settings: {exc}") from exc
    if any(v < 0 for v in vars(weights).values()):
        raise ConfigError(f"loss.weights must be >= 0, got {vars(weights)}")
    return objective, weights


def schedule(cfg: DictConfig, world_size: int = 1) -> ProgressiveSchedule:
    s = cfg.train.schedule
    if int(s.final_resolution) > int(cfg.model.resolution):
        raise ConfigError(
            f"train.schedule.final_resolution ({s.final_resolution}) is above model.resolution ({cfg.model.resolution})"
        )
    return ProgressiveSchedule(
        start_resolution=int(s.start_resolution),
        final_resolution=int(s.final_resolution),
        fade_images=int(s.fade_images),
        stable_images=int(s.stable_images),
        batch_size={int(k): int(v) for k, v in s.batch_size.items()},
        final_stable_images=None if s.final_stable_images is None else int(s.final_stable_images),
        world_size=world_size,
    )


def check_choices(cfg: DictConfig) -> None:
    """Values with a fixed set of choices, checked before any work starts."""
    choices = {
        "train.precision": (cfg.train.precision, ("fp32", "bf16", "fp16")),
        "train.nan_policy": (cfg.train.nan_policy, ("stop", "rollback")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not one of {', '.join(allowed)}")
    if int(cfg.loss.penalty_every) < 1:
        raise ConfigError(f"loss.penalty_every must be >= 1, got {cfg.loss.penalty_every}")
    if int(cfg.train.d_steps) < 1:
        raise ConfigError(f"train.d_steps must be >= 1, got {cfg.train.d_steps}")
    if int(cfg.train.checkpoint.keep_last) < 1:
        raise ConfigError(f"train.checkpoint.keep_last must be >= 1, got {cfg.train.checkpoint.keep_last}")
    if int(cfg.logging.every_steps) < 1:
        raise ConfigError(f"logging.every_steps must be >= 1, got {cfg.logging.every_steps}")
    if not cfg.data.domains:
        raise ConfigError("data.domains is empty: name at least one dataset per domain")


RESUME_APPLIES = (
    "name", "run_dir", "resume", "device",
    "train.optimizer.*", "train.ema.*", "train.checkpoint.*", "train.max_images", "train.nan_policy",
    "train.rollback_lr_factor", "train.max_rollbacks", "train.grad_clip", "train.precision", "train.channels_last",
    "train.cpu_threads", "logging.*", "data.num_workers", "data.synthetic.root", "data.domains.*.root",
    "data.domains.*.cache",
)
"""Settings a resumed run may change: they are applied from the resume on (patterns over dotted keys).
Everything else (model, losses, schedule, datasets, augmentation, seed) decides what the checkpoint's
weights, optimiser state and data position mean, so a resume refuses to change it."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> {dotted key: leaf value}; keys are strings (JSON turns integer keys into strings)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def resume_changes(recorded: Mapping[str, Any], cfg: DictConfig, source: str) -> list[str]:
    """The settings of ``cfg`` that differ from the ``recorded`` config of the checkpoint being resumed.

    Returns "key: old -> new" for each change a resume applies (see RESUME_APPLIES); raises ConfigError
    naming the first setting that a resume cannot change.
    """
    old, new = flatten(recorded), flatten(config_to_dict(cfg))
    applied = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, "(unset)"), new.get(key, "(unset)")
        if before == after:
            continue
        if any(fnmatch.fnmatchcase(key, pattern) for pattern in RESUME_APPLIES):
            applied.append(f"{key}: {before} -> {after}")
            continue
        raise ConfigError(
            f"{key}={after} differs from the run being resumed ({key}={before} in {source}); a resumed run keeps "
            "its model, losses, schedule, data and seed. Drop the override to continue the run, or train a new "
            "run (another run_dir or name)"
        )
    return applied
