"""`twingan prep check DIR` (list unreadable images) and `twingan prep cache` (build the pre-resized cache)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any


from twingan.data.cache import build_cache, cache_bytes
from twingan.data.datasets import DATASET_KINDS, SPLITS, ImageDomainDataset, build_domain_dataset
from twingan.data.image_io import DEFAULT_MAX_PIXELS
from twingan.errors import ConfigError, DatasetError
from twingan.utils.atomic import atomic_write_text
from twingan.utils.progress import progress_bar

DEFAULT_WORKERS = min(4, os.cpu_count() or 1)


def register(prep_subparsers: argparse._SubParsersAction) -> None:
    check = prep_subparsers.add_parser(
        "check",
        help="list the image files of a dataset that cannot be read, and why",
        description="Decode every image of a dataset and list the problem files (truncated, empty, not an "
        "image, too large, malformed keypoints...) with their reasons and a summary. Exit status 1 when "
        "any file has a problem.",
    )
    check.add_argument("dir", help="dataset root folder")
    _add_dataset_options(check)
    check.add_argument("--report", metavar="FILE.json", help="also write the problems to this JSON file")
    check.set_defaults(func=run_check)

    cache = prep_subparsers.add_parser(
        "cache",
        help="build the pre-resized image cache of a dataset (one array per resolution)",
        description="Decode every image of a dataset once per resolution and store the results as "
        "memory-mapped uint8 arrays, so that training does not decode full images every step. An interrupted "
        "build resumes when run again with the same arguments. Use the folder as the dataset's cache option.",
    )
    cache.add_argument("--root", required=True, help="dataset root folder")
    cache.add_argument("--resolutions", required=True, type=int, nargs="+", metavar="R",
                       help="square sizes to cache, e.g. 32 64 128")
    cache.add_argument("--out", required=True, help="cache folder to create or update")
    _add_dataset_options(cache)
    cache.set_defaults(func=run_cache)


def _add_dataset_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", default="folder", choices=sorted(DATASET_KINDS),
                        help="dataset layout (default folder: every image below the root)")
    parser.add_argument("--split", default="all", choices=SPLITS, help="which split to take (default all)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a kind-specific dataset option, e.g. margin=0.25 for cat or image_dir=img for celeba "
                        "(repeatable)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse images with more pixels than this (default {DEFAULT_MAX_PIXELS})")
    parser.add_argument("--min-size", type=int, default=1, help="refuse images with a shorter side (default 1)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"decoding processes (default {DEFAULT_WORKERS}; 0 decodes in this process)")


def _parse_value(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


def _dataset_spec(args: argparse.Namespace, root: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "kind": args.kind, "root": root, "split": args.split,
        "max_pixels": args.max_pixels, "min_size": args.min_size,
    }
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE")
        spec[key] = _parse_value(value)
    return spec


def _category(reason: str) -> str:
    """The leading words of a reason, e.g. 'truncated or corrupt image', for the summary counts."""
    return reason.split(" (")[0].split(":")[0]


def run_check(args: argparse.Namespace) -> int:
    dataset = build_domain_dataset(_dataset_spec(args, args.dir))
    failure: DatasetError | None = None
    try:
        dataset.scan(
            num_workers=args.workers,
            progress=lambda items, total: progress_bar(items, total=total, unit="img", desc="checking"),
        )
    except DatasetError as exc:
        failure = exc
    bad = dataset.bad_files
    for path in sorted(bad):
        print(f"{path}: {bad[path]}")
    if args.report:
        report = {"root": str(dataset.root), "kind": dataset.kind, "split": dataset.split,
                  "checked": len(dataset), "problems": dict(sorted(bad.items()))}
        atomic_write_text(args.report, json.dumps(report, indent=2) + "\n")
    counts = Counter(_category(reason) for reason in bad.values())
    print(f"checked {len(dataset)} files of the {dataset.kind} dataset in {dataset.root} (split {dataset.split}): "
          f"{len(dataset) - len(bad)} readable, {len(bad)} with problems")
    for category, count in counts.most_common():
        print(f"  {count:6d}  {category}")
    if failure is not None:
        raise failure
    return 1 if bad else 0


def run_cache(args: argparse.Namespace) -> int:
    if args.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {args.workers}")
    dataset: ImageDomainDataset = build_domain_dataset(_dataset_spec(args, args.root))
    out = Path(args.out)
    print(f"caching {len(dataset)} images of {dataset.root} at {sorted(set(args.resolutions))} px "
          f"({cache_bytes(len(dataset), args.resolutions) / 2**30:.2f} GiB) in {out}", file=sys.stderr)
    cache = build_cache(
        dataset, args.resolutions, out, num_workers=args.workers,
        progress=lambda items, done, total: progress_bar(items, total=total, initial=done, unit="img", desc="caching",
                                                 file=sys.stderr),
    )
    for path in sorted(cache.bad)[:20]:
        print(f"{path}: {cache.bad[path]}")
    if len(cache.bad) > 20:
        print(f"... and {len(cache.bad) - 20} more (`twingan prep check` lists them all)")
    print(f"cached {len(cache.entries) - len(cache.bad)} images at {cache.resolutions} px in {out}; "
          f"{len(cache.bad)} unreadable files were left out. Use it with `cache: {out}` in the dataset's spec.")
    return 0
