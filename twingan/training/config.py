"""Training configuration: Hydra composition of conf/, and its translation into typed objects."""
from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Mapping, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import twingan
from twingan.errors import ConfigError
from twingan.faces.profiles import check_profile, resolve_profiles
from twingan.losses import GANObjective, LossWeights, build_objective
from twingan.losses.d_augment import DiffAugment
from twingan.models import ModelConfig
import twingan.training.validation as validation
from twingan.training.schedule import ProgressiveSchedule
from twingan.utils.device import PRECISIONS

CONF_DIR = Path(twingan.__file__).resolve().parent / "conf"


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The resolved training config for Hydra ``overrides`` (e.g. ``experiment=demo``, ``train.precision=bf16``).

    Overrides of settings conf/ does not declare, values of the wrong type and numbers out of range are
    refused with a ConfigError naming the key (see :mod:`twingan.training.validation`). A key segment that
    is an integer (``train.schedule.batch_size.4=2``) addresses the integer key of a per-resolution table.
    """
    parsed = _parse_overrides(overrides)
    rewritten = [_integer_key_override(o, text) for o, text in zip(parsed, overrides)]
    groups = [text for o, text in zip(parsed, rewritten) if _is_group(o.key_or_group)]
    reference = config_to_dict(_compose(groups))
    validation.check_override_keys(
        [o.key_or_group for o in parsed if not _is_group(o.key_or_group) and not o.is_delete()], reference
    )
    cfg = _compose(rewritten)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            "required settings are missing: "
            + ", ".join(missing)
            + " (set them on the command line, e.g. "
            + f"{missing[0]}=/path/to/data)"
        )
    validation.check_values(config_to_dict(cfg), reference)
    check_choices(cfg)
    return cfg


def _compose(overrides: Sequence[str]) -> DictConfig:
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="twingan"):
            cfg = compose("config", overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"bad configuration override: {_one_line(exc)}") from exc
    return cfg


def _parse_overrides(overrides: Sequence[str]) -> list[Override]:
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise ConfigError(f"bad configuration override: {_one_line(exc)}") from exc


def _is_group(key: str) -> bool:
    """Whether an override chooses a config group (``experiment=demo``, ``loss/gan=hinge``) rather than a value."""
    return (CONF_DIR / key).is_dir()


def _integer_key_override(override: Override, text: str) -> str:
    """``a.b.4=2`` -> ``++a.b={4: 2}``: Hydra reads every key segment as a string, so the integer keys of
    ``train.schedule.batch_size`` could not be set one by one; a dict override merges into the table."""
    if override.is_delete() or _is_group(override.key_or_group):
        return text
    parts = override.key_or_group.split(".")
    first = next((i for i, part in enumerate(parts) if part.isdigit()), None)
    if first is None or first == 0:
        return text
    value = override.get_value_element_as_str()
    for part in reversed(parts[first:]):
        value = f"{{{part}: {value}}}"
    return f"++{'.'.join(parts[:first])}={value}"  # ++ merges, adding a resolution the table lacks


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def config_to_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def model_config(cfg: DictConfig) -> ModelConfig:
    domains = tuple(cfg.data.domains.keys())
    try:
        return ModelConfig(domains=domains, **config_to_dict(cfg.model))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model settings: {exc}") from exc


def domain_profiles(cfg: DictConfig) -> dict[str, str]:
    """Domain name -> face profile (``data.domains.<name>.profile``; null: from the name), for the checkpoint."""
    return resolve_profiles({name: spec.get("profile") for name, spec in cfg.data.domains.items()})


def dataset_specs(cfg: DictConfig) -> list[dict[str, Any]]:
    """Each domain's dataset options, in model order: its config entry without the profile (not a dataset option)."""
    return [{k: v for k, v in config_to_dict(spec).items() if k != "profile"} for spec in cfg.data.domains.values()]


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
    """Values with a fixed set of choices, checked before any work starts (numbers: validation.RANGES)."""
    choices = {
        "train.precision": (cfg.train.precision, PRECISIONS),
        "train.channels_last": (cfg.train.channels_last, ("auto", True, False)),
        "train.nan_policy": (cfg.train.nan_policy, ("stop", "rollback")),
    }
    for key, (value, allowed) in choices.items():
        if not any(value == a and type(value) is type(a) for a in allowed):
            shown = ", ".join(str(a).lower() if isinstance(a, bool) else a for a in allowed)
            raise ConfigError(f"{key}={value!r} is not one of {shown}")
    if not cfg.data.domains:
        raise ConfigError("data.domains is empty: name at least one dataset per domain")
    for name, spec in cfg.data.domains.items():
        check_profile(spec.get("profile"), f"data.domains.{name}.profile")
    discriminator_augment(cfg)


def discriminator_augment(cfg: DictConfig) -> DiffAugment:
    """``loss.d_augment``: what the discriminators' inputs go through (a ConfigError names a bad policy)."""
    try:
        policy = cfg.loss.get("d_augment")
        return DiffAugment(list(policy) if OmegaConf.is_list(policy) else policy)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


RESUME_APPLIES = (
    "name", "run_dir", "resume", "device",
    "train.optimizer.*", "train.ema.*", "train.checkpoint.*", "train.max_images", "train.nan_policy",
    "train.rollback_lr_factor", "train.max_rollbacks", "train.grad_clip", "train.precision", "train.channels_last",
    "train.cpu_threads", "logging.*", "data.num_workers", "data.synthetic.root", "data.domains.*.root",
    "data.domains.*.cache", "data.domains.*.profile",
)
"""Settings a resumed run may change: they are applied from the resume on (patterns over dotted keys).
Everything else (model, losses, schedule, datasets, augmentation, seed) decides what the checkpoint's
weights, optimiser state and data position mean, so a resume refuses to change it."""


ADDED_SETTINGS: dict[str, Any] = {
    "model.skip_max_resolution": None,
    "loss.d_augment": [],
}
"""Settings added after runs were recorded, each with the value that does what a run recorded without it did:
a resume of such a run reads the missing key as that value."""


def resume_changes(recorded: Mapping[str, Any], cfg: DictConfig, source: str) -> list[str]:
    """The settings of ``cfg`` that differ from the ``recorded`` config of the checkpoint being resumed.

    Returns "key: old -> new" for each change a resume applies (see RESUME_APPLIES); raises ConfigError
    naming the first setting that a resume cannot change.
    """
    old, new = validation.flatten(recorded), validation.flatten(config_to_dict(cfg))
    applied = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, ADDED_SETTINGS.get(key, "(unset)")), new.get(key, "(unset)")
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
