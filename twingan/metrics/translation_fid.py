"""FID and KID of a model's translations: a folder of real SRC images translated, against a folder of real DST images.

Both folders are centre-cropped and resized to the model resolution the way
training data is, so the score measures the translation, not the gap between the
model's resolution and the size of the real files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from twingan.data.image_io import load_image, resize_square, tensor_to_uint8, uint8_to_tensor
from twingan.errors import DatasetError, ImageLoadError
from twingan.metrics import compute_fid_kid
from twingan.metrics.folder_features import list_folder_images
from twingan.metrics.inception import InceptionFeatures
from twingan.metrics.paired import Translatable
from twingan.utils.progress import progress_bar


class FolderImages:
    """A folder's readable images as uint8 (N, 3, R, R) batches at the model resolution; skipped files are kept."""

    def __init__(self, root: Path, resolution: int, batch_size: int) -> None:
        self.root = root
        self.files = list_folder_images(root)
        self.resolution = resolution
        self.batch_size = batch_size
        self.skipped: list[tuple[str, str]] = []
        self.count = 0

    def batches(self, progress: bool, label: str) -> Iterator[torch.Tensor]:
        self.skipped, self.count = [], 0
        arrays: list[np.ndarray] = []
        for index, path in enumerate(progress_bar(self.files, desc=label, unit="img", disable=not progress)):
            try:
                arrays.append(resize_square(load_image(path), self.resolution))
            except ImageLoadError as exc:
                self.skipped.append((path.relative_to(self.root).as_posix(), exc.reason))
            if arrays and (len(arrays) == self.batch_size or index == len(self.files) - 1):
                self.count += len(arrays)
                yield torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
                arrays = []
        if self.count < 2:
            raise DatasetError(
                f"{self.root}: FID and KID need at least 2 readable images, got {self.count}"
                + (f" (first unreadable: {self.skipped[0][0]}: {self.skipped[0][1]})" if self.skipped else "")
            )


def fid_of_translations(
    systems: Mapping[str, Translatable],
    real: Mapping[str, Path],
    target: Mapping[str, Path],
    resolution: int,
    extractor: InceptionFeatures,
    batch_size: int,
    progress: bool,
    scores: dict[str, dict[str, float]],
) -> dict[str, dict[str, Any]]:
    """Add ``SRC2DST/fid`` and ``SRC2DST/kid`` to ``scores`` for every system; return each pair's details."""
    target_images = {dst: FolderImages(folder, resolution, batch_size) for dst, folder in target.items()}
    target_features = {
        dst: np.concatenate([extractor(batch) for batch in images.batches(progress, f"real {dst}")])
        for dst, images in target_images.items()
    }
    details: dict[str, dict[str, Any]] = {}
    for src, folder in real.items():
        source = FolderImages(folder, resolution, batch_size)
        dsts = [dst for dst in target if dst != src]
        chunks: dict[tuple[str, str], list[np.ndarray]] = {(s, d): [] for s in systems for d in dsts}
        for batch in source.batches(progress, f"translate {src}"):
            x = uint8_to_tensor(batch)
            for name, system in systems.items():
                device = next(system.parameters()).device if isinstance(system, torch.nn.Module) else torch.device("cpu")
                for dst in dsts:
                    fake = system.translate(x.to(device), src, dst).float().cpu()
                    chunks[(name, dst)].append(extractor(tensor_to_uint8(fake)))
        for dst in dsts:
            pair = f"{src}2{dst}"
            for name in systems:
                fid = compute_fid_kid(np.concatenate(chunks[(name, dst)]), target_features[dst], progress=False)
                scores[name][f"{pair}/fid"] = fid["fid"]
                scores[name][f"{pair}/kid"] = fid["kid_mean"]
                scores[name][f"{pair}/kid_std"] = fid["kid_std"]
            details[pair] = {
                "source": str(folder),
                "target": str(target[dst]),
                "n_source": source.count,
                "n_target": target_images[dst].count,
                "skipped_source": source.skipped,
                "skipped_target": target_images[dst].skipped,
                "resolution": resolution,
                "kid_subsets": fid["kid_subsets"],
                "kid_subset_size": fid["kid_subset_size"],
                "inception": extractor.weights_id,
            }
    return details
