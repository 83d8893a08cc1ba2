"""The loop shared by the face preparation tools: walk, load, crop, save, log, summarise.

A tool supplies a function ``process(path, image) -> list[Crop]`` that either
returns the crops of one source image or raises :class:`SkipImage` with a
short reason ("no face", "no .cat keypoint file"). The runner

* walks SRC with ``iter_image_files`` and loads each file with ``load_image``
  (a file that cannot be read is skipped with reason "unreadable image");
* writes each crop atomically to DST under the source's relative path with
  the output extension (``a/b.jpg`` -> ``a/b.png``; several crops of one
  source -> ``a/b_face0.png`` (largest), ``a/b_face1.png``, ...);
* appends one JSON line per finished source to ``DST/.prep_log.jsonl``, after
  its crops are saved, so a rerun skips finished sources (resume) and a crash
  costs at most the source in progress; the first line records the tool and
  its options, and a rerun with other options is refused;
* shows a tqdm progress bar, and at the end writes ``DST/prep_summary.json``
  with kept / skipped counts grouped by reason (over all runs into DST).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

from PIL import Image

from twingan.data.image_io import iter_image_files, load_image, save_image
from twingan.errors import ConfigError, DatasetError, ImageLoadError
from twingan.utils.atomic import atomic_write_text
from twingan.utils.progress import progress_bar

PathLike = Union[str, os.PathLike]

LOG_NAME = ".prep_log.jsonl"
SUMMARY_NAME = "prep_summary.json"
UNREADABLE = "unreadable image"
OUTPUT_EXTENSIONS = ("png", "jpg")
EXAMPLES_PER_REASON = 5


class SkipImage(Exception):
    """Raised by a tool's ``process`` to skip a source; ``reason`` is the summary's group name."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason if detail is None else f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Crop:
    """One output image of a source and JSON-friendly facts about it (box, score...) for the log."""

    image: Image.Image
    info: dict = field(default_factory=dict)


ProcessFn = Callable[[Path, Image.Image], "list[Crop]"]


def run_prep(
    tool: str,
    src: PathLike,
    dst: PathLike,
    process: ProcessFn,
    options: dict,
    *,
    ext: str = "png",
    progress: bool = True,
    former_names: tuple[str, ...] = (),
) -> dict:
    """Run ``process`` over every image below ``src``; returns the summary (also in DST/prep_summary.json).

    ``former_names``: earlier names of ``tool``; a DST its log records under one of them resumes."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DatasetError(f"source folder not found: {src}")
    if ext not in OUTPUT_EXTENSIONS:
        raise ConfigError(f"output extension must be one of {OUTPUT_EXTENSIONS}, got {ext!r}")
    src_resolved, dst_resolved = src.resolve(), dst.resolve()
    if dst_resolved == src_resolved or src_resolved in dst_resolved.parents:
        raise ConfigError(f"--out {dst} is inside the source folder {src}; choose a folder outside it")
    # Through JSON so that it compares equal to the header read back from the log.
    header = json.loads(json.dumps({"tool": tool, "options": {**options, "ext": ext}}))
    log = PrepLog(dst / LOG_NAME, header, former_names)
    sources = list(iter_image_files(src))
    if not sources:
        raise DatasetError(f"no image files found below {src}")
    todo = [path for path in sources if not log.is_done(path.relative_to(src).as_posix(), dst)]
    resumed = len(sources) - len(todo)
    save_kwargs = {"quality": 95} if ext == "jpg" else {}
    bar = progress_bar(todo, desc=f"prep {tool}", unit="img", disable=not progress)
    counts = {"kept": 0, "skipped": 0}
    for path in bar:
        rel = path.relative_to(src).as_posix()
        record = _process_one(path, rel, process, log, dst, ext, save_kwargs)
        log.append(record)
        counts[record["status"]] += 1
        bar.set_postfix(counts, refresh=False)
    bar.close()
    this_run = {"processed": len(todo), "resumed": resumed, **counts}
    summary = _summarise(tool, src, dst, header["options"], log.records, this_run)
    atomic_write_text(dst / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    return summary


def _process_one(
    path: Path, rel: str, process: ProcessFn, log: "PrepLog", dst: Path, ext: str, save_kwargs: dict
) -> dict:
    try:
        image = load_image(path)
        crops = process(path, image)
    except ImageLoadError as exc:
        return {"source": rel, "status": "skipped", "reason": UNREADABLE, "detail": exc.reason}
    except SkipImage as exc:
        return {"source": rel, "status": "skipped", "reason": exc.reason, "detail": exc.detail}
    if not crops:
        raise RuntimeError(f"the prep tool returned no crop for {rel} without raising SkipImage")
    names = _output_names(rel, len(crops), ext, log)
    for name, crop in zip(names, crops):
        save_image(crop.image, dst / name, **save_kwargs)
    return {
        "source": rel,
        "status": "kept",
        "outputs": names,
        "crops": [crop.info for crop in crops],
    }


def _output_names(rel: str, count: int, ext: str, log: "PrepLog") -> list[str]:
    """Output paths (relative to DST) named after the source.

    A name another source already took (``a.jpg`` and ``a.png`` both give
    ``a.png``) gets the source's extension added: ``a_png.png``.
    """
    rel_path = Path(rel)
    stems = [rel_path.stem] if count == 1 else [f"{rel_path.stem}_face{k}" for k in range(count)]
    names = [(rel_path.parent / f"{stem}.{ext}").as_posix() for stem in stems]
    if all(log.owner(name) in (None, rel) for name in names):
        return names
    tag = rel_path.suffix.lstrip(".").lower()
    names = [(rel_path.parent / f"{stem}_{tag}.{ext}").as_posix() for stem in stems]
    taken = [name for name in names if log.owner(name) not in (None, rel)]
    if taken:
        raise DatasetError(f"cannot name the crops of {rel}: {taken[0]} is already written for {log.owner(taken[0])}")
    return names


class PrepLog:
    """The append-only JSONL progress log of one DST folder (header line, then one record per source)."""

    def __init__(self, path: Path, header: dict, former_names: tuple[str, ...] = ()) -> None:
        self.path = path
        self.former_names = former_names
        self.records: dict[str, dict] = {}
        self._owners: dict[str, str] = {}
        if path.exists():
            self._load(header)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(header) + "\n")

    def _load(self, header: dict) -> None:
        entries = read_jsonl_log(self.path)
        if entries and entries[0].get("tool") in self.former_names:
            entries[0] = {**entries[0], "tool": header["tool"]}
        if not entries or entries[0] != header:
            previous = entries[0] if entries else {}
            raise ConfigError(
                f"{self.path.parent} was prepared with {json.dumps(previous)}, not {json.dumps(header)}; "
                "use another --out folder, or delete that folder to start over"
            )
        for record in entries[1:]:
            self._remember(record)

    def _remember(self, record: dict) -> None:
        self.records[record["source"]] = record
        for name in record.get("outputs", []):
            self._owners[name] = record["source"]

    def owner(self, output_name: str) -> str | None:
        return self._owners.get(output_name)

    def is_done(self, rel: str, dst: Path) -> bool:
        """Finished in an earlier run, with all its crops still on disk."""
        record = self.records.get(rel)
        return record is not None and all((dst / name).is_file() for name in record.get("outputs", []))

    def append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._remember(record)


def read_jsonl_log(path: Path) -> list[dict]:
    """Entries of an append-only JSONL log; a last line cut short by a crash is removed from the file."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        atomic_write_text(path, data.decode("utf-8"))
    try:
        return [json.loads(line) for line in data.decode("utf-8").splitlines()]
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: corrupt log file ({exc}); delete it to start over") from exc


def _summarise(tool: str, src: Path, dst: Path, options: dict, records: dict[str, dict], this_run: dict) -> dict:
    kept = [r for r in records.values() if r["status"] == "kept"]
    skipped = [r for r in records.values() if r["status"] == "skipped"]
    by_reason: dict[str, int] = {}
    examples: dict[str, list[dict]] = {}
    for record in sorted(skipped, key=lambda r: r["source"]):
        reason = record["reason"]
        by_reason[reason] = by_reason.get(reason, 0) + 1
        if len(examples.setdefault(reason, [])) < EXAMPLES_PER_REASON:
            examples[reason].append({"source": record["source"], "detail": record.get("detail")})
    return {
        "tool": tool,
        "source": str(src),
        "output": str(dst),
        "options": options,
        "sources": len(records),
        "kept": len(kept),
        "skipped": len(skipped),
        "skipped_by_reason": dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        "crops_written": sum(len(r["outputs"]) for r in kept),
        "this_run": this_run,
        "skipped_examples": examples,
    }


def format_summary(summary: dict) -> str:
    """The few lines a prep tool prints when it finishes."""
    reasons = ", ".join(f"{reason}: {n}" for reason, n in summary["skipped_by_reason"].items())
    run = summary["this_run"]
    lines = [
        f"prep {summary['tool']}: {summary['kept']} kept, {summary['skipped']} skipped"
        + (f" ({reasons})" if reasons else "")
        + f"; {summary['crops_written']} crops in {summary['output']}",
        f"  this run: {run['processed']} processed ({run['kept']} kept, {run['skipped']} skipped), "
        f"{run['resumed']} already done",
        f"  summary: {Path(summary['output']) / SUMMARY_NAME}",
    ]
    return "\n".join(lines)
