"""Writing the synthetic dataset: unpaired training folders with labels, a paired test set with its parameters.

Resumable and idempotent: a manifest records the request, and only missing or damaged images are drawn again.
"""
from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from twingan.data.image_io import load_image, save_image
from twingan.data.synthetic.palettes import STYLES
from twingan.data.synthetic.params import (
    HAIR_COLOUR_NAMES,
    SYNTHETIC_ATTRIBUTES,
    FaceParams,
    attribute_values,
    params_for_index,
)
from twingan.data.synthetic.rendering import MAX_SIZE, MIN_SIZE, render
from twingan.errors import ConfigError, DatasetError, ImageLoadError
from twingan.utils.atomic import atomic_write_text
from twingan.utils.progress import progress_bar

PathLike = Union[str, os.PathLike]

GENERATOR_VERSION = 1
"""Bumped whenever a change to sampling or drawing changes the pixels of a given seed."""
MANIFEST_NAME = "synthetic.json"
TEST_PARAMS_NAME = "params.jsonl"
LABELS_NAME = "labels.csv"
_POOL_MIN_TASKS = 64


@dataclass(frozen=True)
class GenerationSummary:
    """What :func:`generate_dataset` did: images drawn now and images kept from an earlier run."""

    out_dir: Path
    rendered: int
    reused: int
    already_complete: bool


def _manifest_request(n_train: int, n_test: int, size: int, seed: int) -> dict:
    return {"generator": "twingan.synthetic", "version": GENERATOR_VERSION, "seed": seed, "size": size,
            "n_train": n_train, "n_test": n_test}


def _validate_request(n_train: int, n_test: int, size: int, seed: int) -> None:
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ConfigError(f"--size {size!r} is out of range; use {MIN_SIZE}..{MAX_SIZE} pixels")
    for name, value in (("--n-train", n_train), ("--n-test", n_test)):
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}")
    if n_train + n_test == 0:
        raise ConfigError("--n-train and --n-test are both 0: nothing to generate")
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be a whole number >= 0, got {seed!r}")


def _read_manifest(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"{path}: unreadable synthetic dataset manifest ({exc}); delete the folder or choose another --out"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a synthetic dataset manifest; delete the folder or choose another --out")
    return data


def _tasks(out_dir: Path, n_train: int, n_test: int, size: int, seed: int) -> list[tuple]:
    tasks = []
    for stream, style in (("train_photo", "photo"), ("train_anime", "anime")):
        for i in range(n_train):
            tasks.append((str(out_dir / "train" / style / f"{i:05d}.png"), seed, stream, i, style, size))
    for i in range(n_test):
        for style in STYLES:
            tasks.append((str(out_dir / "test" / style / f"{i:05d}.png"), seed, "test", i, style, size))
    return tasks


def _run_task(task: tuple) -> bool:
    """Render and save one image unless a valid one is already there; True if it was drawn now."""
    path, seed, stream, index, style, size = task
    if os.path.exists(path) and _is_valid_image(path, size):
        return False
    save_image(render(params_for_index(seed, stream, index), style, size), path)
    return True


def _is_valid_image(path: str, size: int) -> bool:
    """A leftover that does not decode or has the wrong size is drawn again."""
    try:
        return load_image(path).size == (size, size)
    except ImageLoadError:
        return False


def generate_dataset(
    out_dir: PathLike,
    n_train: int = 2000,
    n_test: int = 200,
    size: int = 64,
    seed: int = 0,
    progress: bool = True,
    workers: int | None = None,
) -> GenerationSummary:
    """Write the synthetic two-domain dataset to ``out_dir`` (resumable, idempotent).

    Layout: ``train/photo/*.png`` and ``train/anime/*.png`` (``n_train`` each,
    from independent parameter streams: unpaired), ``test/photo/NNNNN.png`` and
    ``test/anime/NNNNN.png`` (``n_test`` pairs drawn from the same parameters),
    ``test/params.jsonl``, ``train/photo/labels.csv`` and
    ``train/anime/labels.csv`` (the faces' :data:`SYNTHETIC_ATTRIBUTES` values,
    for attribute control) and the manifest ``synthetic.json``. A finished
    folder with a matching manifest is returned at once (it gains the label
    files if it predates them); after an interruption only the missing or
    damaged images are drawn. A folder holding another request (or
    other files) raises ConfigError.
    """
    _validate_request(n_train, n_test, size, seed)
    if workers is None:
        workers = _default_workers()
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be a whole number >= 1, got {workers!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file, not a folder; choose a new or empty folder")
    manifest_path = out_dir / MANIFEST_NAME
    request = _manifest_request(n_train, n_test, size, seed)
    tasks = _tasks(out_dir, n_train, n_test, size, seed)
    if manifest_path.exists():
        existing = _read_manifest(manifest_path)
        differing = {k: (existing.get(k), v) for k, v in request.items() if existing.get(k) != v}
        if differing:
            details = ", ".join(f"{k}: {old!r} there, {new!r} requested" for k, (old, new) in differing.items())
            raise ConfigError(
                f"{out_dir} already holds a different synthetic dataset ({details}); "
                "choose another --out or delete that folder"
            )
        if existing.get("complete") is True and all(os.path.exists(t[0]) for t in tasks) and (
            out_dir / "test" / TEST_PARAMS_NAME
        ).exists():
            _write_train_labels(out_dir, seed, n_train, only_missing=True)  # folders made before labels existed
            return GenerationSummary(out_dir, 0, len(tasks), already_complete=True)
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(
            f"{out_dir} is not empty and has no {MANIFEST_NAME}: it is not a synthetic dataset folder; "
            "choose a new or empty --out"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(manifest_path, json.dumps({**request, "complete": False}, indent=2) + "\n")

    rendered = _run_tasks(tasks, progress, workers)
    _write_test_params(out_dir, seed, n_test)
    _write_train_labels(out_dir, seed, n_train)
    manifest = {**request, "styles": list(STYLES), "hair_colours": list(HAIR_COLOUR_NAMES), "complete": True}
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return GenerationSummary(out_dir, rendered, len(tasks) - rendered, already_complete=False)


def _default_workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores))


def _run_tasks(tasks: list[tuple], progress: bool, workers: int) -> int:
    rendered = 0
    with progress_bar(total=len(tasks), desc="synthetic faces", unit="img", disable=not progress) as bar:
        if workers == 1 or len(tasks) < _POOL_MIN_TASKS:
            for task in tasks:
                rendered += _run_task(task)
                bar.update(1)
        else:
            # fork where available: workers need only PIL/numpy and start instantly
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            with multiprocessing.get_context(method).Pool(workers) as pool:
                for drawn in pool.imap_unordered(_run_task, tasks, chunksize=16):
                    rendered += drawn
                    bar.update(1)
    return rendered


def _write_test_params(out_dir: Path, seed: int, n_test: int) -> None:
    lines = []
    for i in range(n_test):
        record = {"index": i, "file": f"{i:05d}.png", **params_for_index(seed, "test", i).to_dict()}
        lines.append(json.dumps(record, sort_keys=True))
    atomic_write_text(out_dir / "test" / TEST_PARAMS_NAME, "".join(line + "\n" for line in lines))


def train_labels_csv(seed: int, stream: str, n_train: int) -> str:
    """The text of ``train/<style>/labels.csv`` of training stream ``stream``: header ``file,hair,eyes,mouth,glasses``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    groups = list(SYNTHETIC_ATTRIBUTES)
    writer.writerow(["file", *groups])
    for i in range(n_train):
        values = attribute_values(params_for_index(seed, stream, i))
        writer.writerow([f"{i:05d}.png", *(values[g] for g in groups)])
    return buffer.getvalue()


def _write_train_labels(out_dir: Path, seed: int, n_train: int, only_missing: bool = False) -> None:
    """Write ``train/photo/labels.csv`` and ``train/anime/labels.csv`` (atomically); keep existing ones if asked."""
    if n_train == 0:
        return
    for stream, style in (("train_photo", "photo"), ("train_anime", "anime")):
        path = out_dir / "train" / style / LABELS_NAME
        if only_missing and path.exists():
            continue
        atomic_write_text(path, train_labels_csv(seed, stream, n_train))


def load_test_params(out_dir: PathLike) -> list[FaceParams]:
    """The parameters of the paired test set, in index order (entry i belongs to test/*/NNNNN.png)."""
    path = Path(out_dir) / "test" / TEST_PARAMS_NAME
    if not path.exists():
        raise DatasetError(f"{path} not found: is {out_dir} a synthetic dataset made by `twingan prep synthetic`?")
    params = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if record["index"] != len(params):
                raise ValueError(f"index {record['index']} out of order (expected {len(params)})")
            params.append(FaceParams.from_dict(record))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{path}, line {line_no}: bad test parameters ({exc})") from exc
    return params
