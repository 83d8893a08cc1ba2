"""Checks of a composed training config against the settings conf/ defines: names, types and ranges.

Hydra composes whatever it is given: a misspelled key added with ``+``, ``train.optimizer.lr=fast`` or
``seed=abc`` would reach the trainer and fail there with a Python error, or not at all. Every setting
is declared in conf/ with a default, so the config composed from the same config groups without the
value overrides (the *reference*) says which keys exist and what type each one has; the few settings
whose default is null get their type from :data:`NULL_DEFAULT_TYPES`, and :data:`RANGES` bounds the
numbers. Each problem is one :class:`~twingan.errors.ConfigError` naming the key.
"""
from __future__ import annotations

import difflib
import fnmatch
import math
from typing import Any, Callable, Mapping, Sequence

from twingan.errors import ConfigError

FREE_FORM = ("data.domains.*", "model.attributes.*", "train.schedule.batch_size.*")
"""Subtrees whose keys are the user's to choose (domain names and their dataset options, attribute groups,
resolutions); their contents are checked where they are used (the dataset builder, the attribute schema)."""

NULLABLE = ("data.synthetic", "model.attributes", "model.skip_max_resolution", "train.ema.rampup", "data.domains.*.cache", "data.domains.*.profile")
"""Settings that may be set to null although their default is not (see their comments in conf/)."""

ANY_LENGTH_LISTS = ("loss.d_augment",)
"""List settings of any length (their items are checked where they are read, e.g. losses.d_augment)."""

NULL_DEFAULT_TYPES: dict[str, type] = {
    "run_dir": str,
    "resume": str,
    "model.d_max_channels": int,
    "model.skip_max_resolution": int,
    "train.schedule.final_stable_images": int,
    "train.grad_clip": float,
    "train.cpu_threads": int,
    "train.max_images": int,
}
"""The type of settings whose default is null (null stays allowed)."""


def _positive(x: float) -> bool:
    return x > 0


def _at_least(low: float) -> Callable[[float], bool]:
    return lambda x: x >= low


RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "train.optimizer.lr": (_positive, "> 0"),
    "train.optimizer.eps": (_positive, "> 0"),
    "train.optimizer.betas.*": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "train.ema.half_life_images": (_at_least(0), ">= 0"),
    "train.ema.rampup": (_positive, "> 0 (or null)"),
    "train.grad_clip": (_positive, "> 0 (or null)"),
    "train.cpu_threads": (_at_least(1), ">= 1 (or null)"),
    "train.max_images": (_at_least(1), ">= 1 (or null)"),
    "train.d_steps": (_at_least(1), ">= 1"),
    "train.checkpoint.every_images": (_at_least(1), ">= 1"),
    "train.checkpoint.keep_last": (_at_least(1), ">= 1"),
    "train.rollback_lr_factor": (lambda x: 0 < x <= 1, "in (0, 1]"),
    "train.max_rollbacks": (_at_least(0), ">= 0"),
    "train.schedule.batch_size.*": (_at_least(1), ">= 1"),
    "train.schedule.fade_images": (_at_least(0), ">= 0"),
    "train.schedule.stable_images": (_at_least(1), ">= 1"),
    "train.schedule.final_stable_images": (_at_least(1), ">= 1 (or null)"),
    "loss.penalty_every": (_at_least(1), ">= 1"),
    "loss.weights.*": (_at_least(0), ">= 0"),
    "logging.every_steps": (_at_least(1), ">= 1"),
    "logging.samples.every_images": (_at_least(0), ">= 0"),
    "logging.samples.per_domain": (_at_least(1), ">= 1"),
    "logging.eval.every_images": (_at_least(0), ">= 0"),
    "data.num_workers": (_at_least(0), ">= 0"),
    "data.synthetic.n_train": (_at_least(1), ">= 1"),
    "data.synthetic.n_test": (_at_least(1), ">= 1"),
    "data.synthetic.size": (_at_least(4), ">= 4"),
}
"""Bounds of numeric settings (patterns over dotted keys; the items of a list are KEY.0, KEY.1, ...)."""


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> {dotted key: leaf value}; keys become strings, lists and empty mappings are leaves."""
    if not (isinstance(tree, Mapping) and tree):
        return {prefix[:-1]: tree} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}{key}."))
    return flat


def _matches(key: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def _nodes(flat_keys: Sequence[str]) -> set[str]:
    """Every key and every group above one: a.b.c -> {a, a.b, a.b.c}."""
    nodes: set[str] = set()
    for key in flat_keys:
        parts = key.split(".")
        nodes.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return nodes


def check_override_keys(keys: Sequence[str], reference: Mapping[str, Any]) -> None:
    """Refuse value overrides of keys that conf/ does not define (a misspelling added with ``+`` included)."""
    known_leaves = list(flatten(reference))
    known = _nodes(known_leaves)
    for key in keys:
        if key in known or _matches(key, FREE_FORM):
            continue
        raise ConfigError(f"unknown setting {key}{_suggestion(key, known_leaves)}; every setting is listed by "
                          "`twingan train --print-config` (conf/ declares them; none can be added)")


def check_values(config: Mapping[str, Any], reference: Mapping[str, Any]) -> None:
    """Every setting of ``config`` has the type of its default in ``reference`` and lies in its range."""
    ref = flatten(reference)
    ref_nodes = _nodes(list(ref))
    for key, value in flatten(config).items():
        if key in ref:
            _check_type(key, value, ref[key])
        elif key in ref_nodes:
            if value is not None or not _matches(key, NULLABLE):
                raise ConfigError(f"{key}={_show(value)}: expected a group of settings (see conf/), not a value")
        elif not _matches(key, FREE_FORM):
            parent = next((p for p in _parents(key) if p in ref), None)
            if parent is not None:
                raise ConfigError(f"{parent}: expected {_kind(ref[parent])}, not a group of settings")
            raise ConfigError(f"unknown setting {key}{_suggestion(key, list(ref))}")
        _check_range(key, value)


def _check_type(key: str, value: Any, default: Any) -> None:
    if value is None:
        if default is not None and not _matches(key, NULLABLE):
            raise ConfigError(f"{key} cannot be null; e.g. {key}={_show(default)}")
        return
    expected = type(default) if default is not None else next(
        (t for pattern, t in NULL_DEFAULT_TYPES.items() if fnmatch.fnmatchcase(key, pattern)), None
    )
    if expected is None or expected is str:
        if isinstance(value, (Mapping, list)):
            raise ConfigError(f"{key}: expected a single value, not {_show(value)}")
        return
    if expected is list:
        if _matches(key, ANY_LENGTH_LISTS):
            if not isinstance(value, list):
                raise ConfigError(f"{key}={_show(value)}: expected a list, e.g. {key}={_show(default)}")
            return
        if not isinstance(value, list) or len(value) != len(default):
            raise ConfigError(f"{key}={_show(value)}: expected a list of {len(default)} values, e.g. {key}={_show(default)}")
        for i, (item, item_default) in enumerate(zip(value, default)):
            _check_type(f"{key}.{i}", item, item_default)
        return
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    }.get(expected, lambda v: isinstance(v, expected))
    if not ok(value):
        example = f"; e.g. {key}={_show(default)}" if default is not None else ""
        raise ConfigError(f"{key}={_show(value)}: expected {_kind(default, expected)}{example}")


def _check_range(key: str, value: Any) -> None:
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_range(f"{key}.{i}", item)
        return
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    for pattern, (ok, text) in RANGES.items():
        if fnmatch.fnmatchcase(key, pattern) and not ok(value):
            raise ConfigError(f"{key}={_show(value)} is out of range: it must be {text}")


def _kind(default: Any, expected: type | None = None) -> str:
    expected = expected or type(default)
    return {bool: "true or false", int: "an integer", float: "a number", list: "a list", dict: "a group"}.get(
        expected, expected.__name__
    )


def _show(value: Any) -> str:
    """A value as it is written on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _parents(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def _suggestion(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""
