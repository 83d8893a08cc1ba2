"""A run's folder: resolved config, log.jsonl, TensorBoard events, sample grids, checkpoints."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from twingan.data.image_io import save_image, tensor_to_pil
from twingan.utils.atomic import atomic_write_text, remove_stale_temporaries

CHECKPOINT_GLOB = "ckpt-*.safetensors"


class RunFolder:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.samples = self.root / "samples"
        self.log_path = self.root / "log.jsonl"

    def create(self) -> None:
        for folder in (self.root, self.checkpoints, self.samples):
            folder.mkdir(parents=True, exist_ok=True)

    def checkpoint_path(self, images_seen: int) -> Path:
        return self.checkpoints / f"ckpt-{images_seen:012d}.safetensors"

    def list_checkpoints(self) -> list[Path]:
        """Checkpoints, oldest first (names sort by images seen)."""
        return sorted(self.checkpoints.glob(CHECKPOINT_GLOB)) if self.checkpoints.is_dir() else []

    def remove_stale_temporaries(self) -> None:
        """Temporary files of writes (checkpoints, samples, config, log) that a killed run never renamed.

        Also the leftovers of earlier twingan versions in checkpoints/: their temporary names, and the
        ``.tmpXXXXXX`` files of safetensors' ``save_file``, which they wrote checkpoints with.
        """
        for folder in (self.root, self.checkpoints, self.samples):
            remove_stale_temporaries(folder)
        if self.checkpoints.is_dir():
            for pattern in (".ckpt-*.tmp*", ".tmp??????"):
                for tmp in self.checkpoints.glob(pattern):
                    if tmp.is_file():
                        tmp.unlink(missing_ok=True)

    def prune_checkpoints(self, keep_last: int) -> None:
        for old in self.list_checkpoints()[:-keep_last]:
            old.unlink(missing_ok=True)

    def save_config(self, cfg: DictConfig) -> None:
        atomic_write_text(self.root / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    def truncate_log(self, images_seen: int) -> None:
        """Drop log lines written after ``images_seen`` (by a run that died before its next checkpoint)."""
        if not self.log_path.exists():
            return
        kept = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("images", 0) <= images_seen:
                    kept.append(line)
            except json.JSONDecodeError:
                continue
        atomic_write_text(self.log_path, "".join(f"{line}\n" for line in kept))

    def save_samples(self, grid: torch.Tensor, images_seen: int) -> Path:
        path = self.samples / f"samples-{images_seen:012d}.png"
        save_image(tensor_to_pil(grid), path)
        return path


class RunLogger:
    """log.jsonl lines plus TensorBoard scalars (rank 0 only)."""

    def __init__(self, folder: RunFolder, tensorboard: bool) -> None:
        self.folder = folder
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(folder.root / "tb"))

    def log(self, record: Mapping[str, Any]) -> None:
        clean = {k: (float(v) if isinstance(v, (float, torch.Tensor)) else v) for k, v in record.items()}
        with open(self.folder.log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(clean, allow_nan=True) + "\n")
        if self.writer is not None:
            step = int(clean.get("images", 0))
            for key, value in clean.items():
                if isinstance(value, float) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)

    def add_image(self, tag: str, grid: torch.Tensor, images_seen: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, (grid.clamp(-1, 1) + 1) / 2, images_seen)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
