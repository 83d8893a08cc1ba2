"""Exact and near-exact duplicate images in a folder, and a JSON report of them.

* Exact duplicates: identical bytes (sha256 of the file).
* Near duplicates: perceptual hash (``imagehash.phash``, 64 bits) within a
  Hamming distance ``threshold`` (default 4 of 64 bits: survives re-encoding
  and resizing, rarely joins different pictures).

Files are taken in sorted order of their relative paths; the first file of a
group is kept and every other member is a duplicate *of that file* (its
distance to the kept file is within the threshold; no chains). Only
``action='move'`` touches the folder: it moves the duplicates, under their
relative paths, to ``dup_dir``. Hashes are cached beside the report
(``REPORT.hashes.jsonl``, keyed by path, size and modification time), so an
interrupted run resumes where it stopped and a second run is fast.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Union


from twingan.data.image_io import iter_image_files, load_image
from twingan.errors import ConfigError, DatasetError, ImageLoadError
from twingan.faces.prep_runner import read_jsonl_log
from twingan.utils.atomic import atomic_write_text
from twingan.utils.progress import progress_bar

PathLike = Union[str, os.PathLike]

DEFAULT_THRESHOLD = 4
MAX_THRESHOLD = 20
HASH_BITS = 64
ACTIONS = ("report", "move")


@dataclass(frozen=True)
class HashedFile:
    rel: str
    sha256: str
    phash: int | None
    """None when the file is not a readable image."""
    error: str | None = None


def cache_path_for(report_path: PathLike) -> Path:
    report_path = Path(report_path)
    return report_path.with_name(report_path.name + ".hashes.jsonl")


def hash_folder(root: PathLike, cache_path: PathLike | None = None, progress: bool = True) -> list[HashedFile]:
    """sha256 and pHash of every image file below ``root`` (sorted by relative path), using and filling the cache."""
    import imagehash

    root = Path(root)
    cached: dict[str, dict] = {}
    if cache_path is not None:
        cache_path = Path(cache_path)
        if cache_path.exists():
            cached = {entry["file"]: entry for entry in read_jsonl_log(cache_path)}
        else:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
    files = list(iter_image_files(root))
    results = []
    cache_fh = open(cache_path, "a", encoding="utf-8") if cache_path is not None else None
    try:
        for path in progress_bar(files, desc="prep dedup: hashing", unit="img", disable=not progress):
            rel = path.relative_to(root).as_posix()
            stat = path.stat()
            entry = cached.get(rel)
            if entry is None or entry["size"] != stat.st_size or entry["mtime_ns"] != stat.st_mtime_ns:
                entry = {"file": rel, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, **_hash_file(path, imagehash)}
                if cache_fh is not None:
                    cache_fh.write(json.dumps(entry) + "\n")
                    cache_fh.flush()
            results.append(
                HashedFile(
                    rel=rel,
                    sha256=entry["sha256"],
                    phash=None if entry["phash"] is None else int(entry["phash"], 16),
                    error=entry["error"],
                )
            )
    finally:
        if cache_fh is not None:
            cache_fh.close()
    return results


def _hash_file(path: Path, imagehash) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    try:
        phash = str(imagehash.phash(load_image(path)))
        error = None
    except ImageLoadError as exc:
        phash, error = None, exc.reason
    return {"sha256": digest.hexdigest(), "phash": phash, "error": error}


def find_duplicate_groups(files: list[HashedFile], threshold: int = DEFAULT_THRESHOLD) -> list[dict]:
    """Groups ``{"keep": rel, "duplicates": [{"file", "kind", "distance"}]}`` in sorted order; singletons left out.

    Exact copies (same sha256) are grouped first; then each remaining distinct
    content, in sorted order, keeps every later one whose pHash is within
    ``threshold`` of its own (kind 'near', with the Hamming distance).
    """
    _check_threshold(threshold)
    files = sorted(files, key=lambda f: f.rel)
    exact: dict[str, list[HashedFile]] = {}
    for item in files:
        exact.setdefault(item.sha256, []).append(item)
    representatives = [copies[0] for copies in exact.values()]
    near = _near_duplicates([r.phash for r in representatives], threshold)
    groups = []
    for index, rep in enumerate(representatives):
        duplicates = [{"file": c.rel, "kind": "exact", "distance": 0} for c in exact[rep.sha256][1:]]
        for other, distance in near.get(index, []):
            copies = exact[representatives[other].sha256]
            duplicates.extend({"file": c.rel, "kind": "near", "distance": distance} for c in copies)
        if duplicates:
            groups.append({"keep": rep.rel, "duplicates": duplicates})
    return groups


def _check_threshold(threshold: int) -> None:
    if not 0 <= threshold <= MAX_THRESHOLD:
        raise ConfigError(
            f"threshold must be between 0 and {MAX_THRESHOLD} bits of {HASH_BITS} (default {DEFAULT_THRESHOLD}), "
            f"got {threshold}"
        )


def _near_duplicates(hashes: list[int | None], threshold: int) -> dict[int, list[tuple[int, int]]]:
    """For each keeper index (first of its group in order), the later indices within ``threshold`` bits.

    None hashes (unreadable files) take no part. Candidates come from
    multi-index hashing: the 64 bits are cut into threshold + 1 blocks, and two
    hashes within ``threshold`` bits agree on at least one whole block
    (pigeonhole), so only hashes sharing a block value are compared.
    """
    blocks = threshold + 1
    bounds = [round(k * HASH_BITS / blocks) for k in range(blocks + 1)]
    masks = [((1 << (hi - lo)) - 1, lo) for lo, hi in zip(bounds, bounds[1:])]
    owners: dict[int, list[int]] = {}
    for index, h in enumerate(hashes):
        if h is not None:
            owners.setdefault(h, []).append(index)
    block_index: list[dict[int, list[int]]] = [{} for _ in masks]
    for h in owners:
        for table, (mask, shift) in zip(block_index, masks):
            table.setdefault((h >> shift) & mask, []).append(h)
    assigned = [h is None for h in hashes]
    result: dict[int, list[tuple[int, int]]] = {}
    for index, h in enumerate(hashes):
        if assigned[index]:
            continue
        assigned[index] = True
        candidates = set()
        for table, (mask, shift) in zip(block_index, masks):
            candidates.update(table[(h >> shift) & mask])
        members = []
        for other in candidates:
            distance = (h ^ other).bit_count()
            if distance > threshold:
                continue
            for j in owners[other]:
                if not assigned[j]:
                    assigned[j] = True
                    members.append((j, distance))
        if members:
            result[index] = sorted(members)
    return result


def dedup_folder(
    root: PathLike,
    report_path: PathLike,
    threshold: int = DEFAULT_THRESHOLD,
    action: str = "report",
    dup_dir: PathLike | None = None,
    progress: bool = True,
) -> dict:
    """Find duplicates below ``root``, write the JSON report, and move them when ``action='move'``."""
    root = Path(root)
    _check_threshold(threshold)
    if not root.is_dir():
        raise DatasetError(f"folder not found: {root}")
    if action not in ACTIONS:
        raise ConfigError(f"action must be one of {ACTIONS}, got {action!r}")
    if action == "move":
        if dup_dir is None:
            raise ConfigError("--action move needs --dup-dir, the folder the duplicates are moved to")
        dup_dir = Path(dup_dir)
        if dup_dir.resolve() == root.resolve() or root.resolve() in dup_dir.resolve().parents:
            raise ConfigError(f"--dup-dir {dup_dir} is inside {root}; choose a folder outside it")
    files = hash_folder(root, cache_path_for(report_path), progress=progress)
    if not files:
        raise DatasetError(f"no image files found below {root}")
    groups = find_duplicate_groups(files, threshold)
    duplicates = [d for g in groups for d in g["duplicates"]]
    moved = []
    if action == "move":
        for dup in duplicates:
            target = dup_dir / dup["file"]
            if target.exists():
                raise DatasetError(f"cannot move {root / dup['file']}: {target} already exists")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(root / dup["file"]), str(target))
            moved.append(dup["file"])
    report = {
        "directory": str(root),
        "threshold": threshold,
        "action": action,
        "dup_dir": None if dup_dir is None else str(dup_dir),
        "files": len(files),
        "kept": len(files) - len(duplicates),
        "exact_duplicates": sum(d["kind"] == "exact" for d in duplicates),
        "near_duplicates": sum(d["kind"] == "near" for d in duplicates),
        "moved": len(moved),
        "unreadable": [{"file": f.rel, "reason": f.error} for f in files if f.phash is None],
        "groups": groups,
    }
    atomic_write_text(report_path, json.dumps(report, indent=2) + "\n")
    return report


def format_report(report: dict, report_path: PathLike) -> str:
    """The lines `twingan prep dedup` prints when it finishes."""
    outcome = f"moved to {report['dup_dir']}" if report["action"] == "move" else "report only, nothing moved"
    return "\n".join(
        [
            f"prep dedup: {report['files']} files, {report['kept']} kept, "
            f"{report['exact_duplicates']} exact + {report['near_duplicates']} near duplicates "
            f"in {len(report['groups'])} groups ({outcome})",
            f"  unreadable (not compared by content, only by bytes): {len(report['unreadable'])}",
            f"  report: {report_path}",
        ]
    )
