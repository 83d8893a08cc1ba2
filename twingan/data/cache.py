"""Pre-resized image cache: one memory-mapped uint8 array per resolution.

Decoding a full JPEG for every 32x32 training sample wastes most of the
loader's time. A cache folder holds, for each resolution R, an ``.npy`` array
of shape (N, R, R, 3) with exactly the pixels the dataset would produce (same
crop, same resize), plus ``index.json``::

    {"format": "twingan-image-cache", "version": 1,
     "kind": ..., "pixels": {...how the pixels were made...}, "root": ...,
     "resolutions": [32, 64], "arrays": {"32": "res32.<id>.npy", ...},
     "entries": [[relative path, mtime_ns, size], ...],   # row i of every array
     "bad": {relative path: reason}}                      # rows left black

A dataset using the cache checks that every one of its files is in the index
with the same modification time and size, and that the pixels were made the
same way; otherwise it reports the cache as stale (never reads stale pixels).

Building is atomic and resumable: arrays are filled inside ``.building/`` and
progress is committed every ``chunk`` images; an interrupted build started
again with the same sources and resolutions continues where it stopped. The
finished arrays get names unique to the build and ``index.json`` is replaced
last, so readers see either the old cache or the new one, never a mixture.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence, Union

import numpy as np
import torch.utils.data

from twingan.errors import DatasetError, ImageLoadError
from twingan.utils.atomic import atomic_write_text

PathLike = Union[str, os.PathLike]
CACHE_FORMAT = "twingan-image-cache"
CACHE_VERSION = 1
INDEX_NAME = "index.json"
BUILD_DIR_NAME = ".building"

Entry = tuple[str, int, int]
"""(path relative to the dataset root, modification time in ns, size in bytes)."""


def source_entry(root: Path, path: Path) -> Entry:
    """The index entry of one source file; a missing file gets mtime and size -1."""
    relative = path.relative_to(root).as_posix()
    try:
        stat = path.stat()
    except OSError:
        return (relative, -1, -1)
    return (relative, stat.st_mtime_ns, stat.st_size)


class ImageCache:
    """A finished cache folder, opened for reading (arrays are memory-mapped lazily, per process)."""

    def __init__(self, cache_dir: PathLike) -> None:
        self.cache_dir = Path(cache_dir)
        index_path = self.cache_dir / INDEX_NAME
        if not index_path.is_file():
            raise DatasetError(
                f"no image cache at {self.cache_dir} ({INDEX_NAME} not found); build it with "
                f"`twingan prep cache --out {self.cache_dir} ...` or set the dataset's cache option to null"
            )
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{index_path}: unreadable cache index ({exc}); rebuild the cache") from exc
        if not isinstance(index, dict) or index.get("format") != CACHE_FORMAT or index.get("version") != CACHE_VERSION:
            raise DatasetError(f"{index_path}: not a twingan image cache of version {CACHE_VERSION}; rebuild the cache")
        self.kind: str = index["kind"]
        self.pixels: dict = index["pixels"]
        self.root: str = index["root"]
        self.resolutions: list[int] = [int(r) for r in index["resolutions"]]
        self.array_files: dict[int, Path] = {int(r): self.cache_dir / name for r, name in index["arrays"].items()}
        self.entries: list[Entry] = [(e[0], int(e[1]), int(e[2])) for e in index["entries"]]
        self.bad: dict[str, str] = dict(index["bad"])
        self.rows: dict[str, int] = {entry[0]: row for row, entry in enumerate(self.entries)}
        for resolution, path in self.array_files.items():
            if not path.is_file():
                raise DatasetError(f"{path}: cache array for {resolution} px is missing; rebuild the cache")
        self._arrays: dict[int, np.ndarray] = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state

    def array(self, resolution: int) -> np.ndarray:
        """The (N, R, R, 3) uint8 array for ``resolution``, memory-mapped read-only."""
        array = self._arrays.get(resolution)
        if array is None:
            path = self.array_files[resolution]
            try:
                array = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise DatasetError(f"{path}: unreadable cache array ({exc}); rebuild the cache") from exc
            expected = (len(self.entries), resolution, resolution, 3)
            if array.shape != expected or array.dtype != np.uint8:
                raise DatasetError(
                    f"{path}: cache array has shape {array.shape} {array.dtype}, expected {expected} uint8; rebuild the cache"
                )
            self._arrays[resolution] = array
        return array

    def read(self, row: int, resolution: int) -> np.ndarray:
        """A copy of one cached image, (R, R, 3) uint8."""
        return np.array(self.array(resolution)[row])

    def stale_reasons(self, kind: str, pixels: dict, entries: Sequence[Entry]) -> list[str]:
        """Why this cache cannot serve a dataset with these sources; empty when it can."""
        reasons = []
        if kind != self.kind or pixels != self.pixels:
            reasons.append(f"it was built for kind {self.kind!r} with {self.pixels}, the dataset is {kind!r} with {pixels}")
        missing = [e[0] for e in entries if e[0] not in self.rows]
        changed = [e[0] for e in entries if e[0] in self.rows and self.entries[self.rows[e[0]]] != tuple(e)]
        if missing:
            reasons.append(f"{len(missing)} file(s) are not in the cache (e.g. {missing[0]})")
        if changed:
            reasons.append(f"{len(changed)} file(s) changed since it was built (e.g. {changed[0]})")
        return reasons


class CacheableDataset(Protocol):
    """What a dataset shows the cache (an ImageDomainDataset does): its files and how it decodes them."""

    kind: str
    root: Path
    paths: Sequence[Path]

    def __len__(self) -> int: ...

    def load_square(self, index: int, resolution: int) -> np.ndarray: ...

    def pixel_settings(self) -> dict: ...


class _CacheSource(torch.utils.data.Dataset):
    """Decodes dataset items at every cache resolution (runs in DataLoader workers)."""

    def __init__(self, dataset: CacheableDataset, resolutions: Sequence[int], start: int) -> None:
        self.dataset = dataset
        self.resolutions = list(resolutions)
        self.start = start

    def __len__(self) -> int:
        return len(self.dataset) - self.start

    def __getitem__(self, offset: int) -> tuple[int, list[np.ndarray] | None, str | None]:
        index = self.start + offset
        try:
            return index, [self.dataset.load_square(index, r) for r in self.resolutions], None
        except ImageLoadError as exc:
            return index, None, exc.reason


def _plan(dataset: CacheableDataset, resolutions: Sequence[int], entries: list[Entry]) -> dict:
    return {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "kind": dataset.kind,
        "pixels": dataset.pixel_settings(),
        "root": str(dataset.root.resolve()),
        "resolutions": sorted(set(int(r) for r in resolutions)),
        "entries": [list(e) for e in entries],
    }


def _plan_id(plan: dict) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _open_build(build_dir: Path, plan: dict, plan_id: str) -> tuple[dict[int, np.ndarray], int, dict[str, str]]:
    """Reopen a matching interrupted build, or start a fresh one; return arrays, rows done, bad files."""
    count = len(plan["entries"])
    plan_file = build_dir / "plan_id.txt"
    progress_file = build_dir / "progress.json"
    array_files = [build_dir / f"res{r}.npy" for r in plan["resolutions"]]
    if (plan_file.is_file() and plan_file.read_text(encoding="utf-8") == plan_id and progress_file.is_file()
            and all(f.is_file() for f in array_files)):
        progress = json.loads(progress_file.read_text(encoding="utf-8"))
        arrays = {r: np.lib.format.open_memmap(build_dir / f"res{r}.npy", mode="r+") for r in plan["resolutions"]}
        return arrays, int(progress["rows_done"]), dict(progress["bad"])
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    arrays = {
        r: np.lib.format.open_memmap(build_dir / f"res{r}.npy", mode="w+", dtype=np.uint8, shape=(count, r, r, 3))
        for r in plan["resolutions"]
    }
    atomic_write_text(progress_file, json.dumps({"rows_done": 0, "bad": {}}))
    atomic_write_text(plan_file, plan_id)
    return arrays, 0, {}


def cache_bytes(count: int, resolutions: Iterable[int]) -> int:
    """Disk space the arrays of a cache take."""
    return sum(count * r * r * 3 for r in set(resolutions))


def build_cache(
    dataset: CacheableDataset,
    resolutions: Sequence[int],
    out_dir: PathLike,
    *,
    num_workers: int = 0,
    chunk: int = 256,
    progress: Callable[[Iterator, int, int], Iterator] | None = None,
) -> ImageCache:
    """Build (or resume building) the cache of ``dataset`` at ``resolutions`` in ``out_dir``.

    Every item is produced by ``dataset.load_square``, so the cached pixels are
    the ones the dataset would decode. Unreadable files get a black row and are
    listed under ``bad`` with their reason. ``progress(iterator, done, total)``
    may wrap the item iterator (e.g. in a tqdm bar). Returns the opened cache.
    """
    resolutions = sorted(set(int(r) for r in resolutions))
    if not resolutions or min(resolutions) < 1:
        raise DatasetError(f"cache resolutions must be positive integers, got {resolutions}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = [source_entry(dataset.root, p) for p in dataset.paths]
    plan = _plan(dataset, resolutions, entries)
    plan_id = _plan_id(plan)
    build_dir = out_dir / BUILD_DIR_NAME
    needed = cache_bytes(len(entries), resolutions)
    free = shutil.disk_usage(out_dir).free
    resuming = (build_dir / "plan_id.txt").is_file() and (build_dir / "plan_id.txt").read_text(encoding="utf-8") == plan_id
    if not resuming and needed > free:
        raise DatasetError(
            f"{out_dir}: the cache needs {needed / 2**30:.2f} GiB but only {free / 2**30:.2f} GiB are free; "
            "choose fewer or smaller resolutions or another --out folder"
        )
    arrays, rows_done, bad = _open_build(build_dir, plan, plan_id)
    loader = torch.utils.data.DataLoader(
        _CacheSource(dataset, resolutions, rows_done),
        batch_size=None,
        num_workers=num_workers,
    )
    items: Iterator = iter(loader)
    if progress is not None:
        items = progress(items, rows_done, len(entries))
    since_commit = 0
    for index, images, reason in items:
        if images is None:
            bad[entries[index][0]] = reason
        else:
            for resolution, image in zip(resolutions, images):
                arrays[resolution][index] = np.asarray(image)
        rows_done = index + 1
        since_commit += 1
        if since_commit >= chunk:
            _commit_progress(build_dir, arrays, rows_done, bad)
            since_commit = 0
    _commit_progress(build_dir, arrays, rows_done, bad)
    return _finish(out_dir, build_dir, plan, plan_id, arrays, bad)


def _commit_progress(build_dir: Path, arrays: dict[int, np.ndarray], rows_done: int, bad: dict[str, str]) -> None:
    for array in arrays.values():
        array.flush()
    atomic_write_text(build_dir / "progress.json", json.dumps({"rows_done": rows_done, "bad": bad}))


def _finish(out_dir: Path, build_dir: Path, plan: dict, plan_id: str, arrays: dict[int, np.ndarray],
            bad: dict[str, str]) -> ImageCache:
    names = {r: f"res{r}.{plan_id}.npy" for r in plan["resolutions"]}
    for array in arrays.values():
        array.flush()
    arrays.clear()
    for resolution, name in names.items():
        os.replace(build_dir / f"res{resolution}.npy", out_dir / name)
    index = dict(plan, arrays={str(r): n for r, n in names.items()}, bad=bad)
    atomic_write_text(out_dir / INDEX_NAME, json.dumps(index))
    keep = set(names.values())
    for old in out_dir.glob("res*.npy"):
        if old.name not in keep:
            old.unlink()
    shutil.rmtree(build_dir)
    return ImageCache(out_dir)
