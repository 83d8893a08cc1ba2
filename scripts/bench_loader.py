"""Loader throughput: DataLoader images/s at several resolutions, decoding JPEGs vs reading the pre-resized cache.

Generates a folder of JPEG photos-like pictures, builds the cache, then for
each resolution times full epochs of a shuffled DataLoader (the first batch,
which includes starting the workers, is not timed). Also times the kornia
augmentation of one batch on the CPU, which runs in the training process.

    python scripts/bench_loader.py --num-images 512 --source-size 256 --resolutions 64 128 256 --workers 2
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from twingan.data.augment import Augment
from twingan.data.cache import build_cache
from twingan.data.datasets import FolderDataset


def make_photos(folder: Path, count: int, size: int, seed: int = 0) -> int:
    """JPEGs with smooth shapes plus sensor-like noise (compressing like photos); returns total bytes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    total = 0
    for index in range(count):
        phases = rng.uniform(0, 2 * np.pi, 3)
        freqs = rng.uniform(1, 4, (3, 2))
        base = np.stack([np.sin(2 * np.pi * (f[0] * xx + f[1] * yy) + p) for f, p in zip(freqs, phases)], -1)
        pixels = 127 + 100 * base + rng.normal(0, 6, (size, size, 3))
        path = folder / f"{index:05d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        total += path.stat().st_size
    return total


def loader_throughput(dataset: FolderDataset, batch_size: int, workers: int, epochs: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True)
    images, start = 0, None
    for _ in range(epochs):
        for batch in loader:
            if start is None:
                start = time.perf_counter()
                continue
            images += batch.shape[0]
    return images / (time.perf_counter() - start)


def augment_throughput(resolution: int, batch_size: int, repeats: int = 5) -> float:
    augment = Augment(resolution)
    batch = torch.randint(0, 256, (batch_size, 3, resolution, resolution), dtype=torch.uint8)
    augment(batch)
    start = time.perf_counter()
    for _ in range(repeats):
        augment(batch)
    return repeats * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--source-size", type=int, default=256, help="side of the generated JPEGs")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the main process (augmentation)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        size_bytes = make_photos(photos, args.num_images, args.source_size)
        print(f"{args.num_images} JPEGs of {args.source_size}x{args.source_size}, "
              f"{size_bytes / args.num_images / 1024:.1f} KiB each on average")
        start = time.perf_counter()
        build_cache(FolderDataset(photos), args.resolutions, Path(tmp) / "cache", num_workers=args.workers)
        print(f"cache build at {args.resolutions} with {args.workers} workers: "
              f"{args.num_images / (time.perf_counter() - start):.0f} images/s")
        print(f"\n{'resolution':>10} | {'decode img/s':>12} | {'cache img/s':>11} | {'augment img/s (CPU)':>19}")
        print(f"{'-' * 10}-+-{'-' * 12}-+-{'-' * 11}-+-{'-' * 19}")
        for resolution in args.resolutions:
            plain = FolderDataset(photos, resolution=resolution)
            cached = FolderDataset(photos, resolution=resolution, cache=Path(tmp) / "cache")
            decode = loader_throughput(plain, args.batch_size, args.workers, args.epochs)
            from_cache = loader_throughput(cached, args.batch_size, args.workers, args.epochs)
            augment = augment_throughput(resolution, args.batch_size)
            print(f"{resolution:>10} | {decode:>12.0f} | {from_cache:>11.0f} | {augment:>19.0f}")


if __name__ == "__main__":
    main()
