"""A run's folder: resolved config, log.jsonl, TensorBoard events, sample grids, checkpoints."""
from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from twingan.checkpoint import verify_checkpoint
from twingan.data.image_io import save_image, tensor_to_pil
from twingan.errors import CheckpointError, quoted
from twingan.utils.atomic import TEMPORARY_NAME, atomic_write_text, remove_stale_temporaries

CHECKPOINT_GLOB = "ckpt-*.safetensors"
_CHECKPOINT_NAME = re.compile(r"^ckpt-(\d+)\.safetensors$")

log = logging.getLogger("twingan.train")


class RunFolder:
    """The files of one run. Retention (``keep_last``) counts only the run's own checkpoints that read back
    (:meth:`adopt_checkpoints`, :meth:`retain`): a corrupt file, or one of a later image count than the run
    resumed from, is never counted and never deleted."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.samples = self.root / "samples"
        self.log_path = self.root / "log.jsonl"
        self._own: list[Path] = []
        self._readable: dict[Path, bool] = {}

    def create(self) -> None:
        for folder in (self.root, self.checkpoints, self.samples):
            folder.mkdir(parents=True, exist_ok=True)

    def checkpoint_path(self, images_seen: int) -> Path:
        return self.checkpoints / f"ckpt-{images_seen:012d}.safetensors"

    def list_checkpoints(self) -> list[Path]:
        """Checkpoints, oldest first (names sort by images seen)."""
        return sorted(self.checkpoints.glob(CHECKPOINT_GLOB)) if self.checkpoints.is_dir() else []

    @staticmethod
    def images_of(path: Path) -> int | None:
        """The image count in a checkpoint's name (None for another file name)."""
        match = _CHECKPOINT_NAME.match(Path(path).name)
        return int(match.group(1)) if match else None

    def adopt_checkpoints(self, resumed_from: Path | None, images_seen: int) -> None:
        """Take the checkpoints of this folder up to ``images_seen`` (the point the run resumes from, checked
        already) as the run's own, for retention; later ones belong to a run that was abandoned."""
        self._own = [p for p in self.list_checkpoints() if (self.images_of(p) or 0) <= images_seen]
        if resumed_from is not None:
            self._readable[Path(resumed_from)] = True

    def retain(self, path: Path, keep_last: int) -> None:
        """Record ``path``, just written and verified, and delete the run's own checkpoints older than its newest
        ``keep_last`` readable ones."""
        path = Path(path)
        self._readable[path] = True
        self._own = [p for p in self._own if p != path] + [path]
        readable = 0
        for index in range(len(self._own) - 1, -1, -1):
            readable += self._reads_back(self._own[index])
            if readable == keep_last:
                for old in self._own[:index]:
                    old.unlink(missing_ok=True)
                self._own = self._own[index:]
                return

    def _reads_back(self, path: Path) -> bool:
        if path not in self._readable:
            try:
                verify_checkpoint(path)
                self._readable[path] = True
            except CheckpointError as exc:
                log.warning("%s does not read back (%s): kept, but not counted by train.checkpoint.keep_last",
                            quoted(path), exc)
                self._readable[path] = False
        return self._readable[path]

    def remove_stale_temporaries(self) -> None:
        """Temporary files of writes (checkpoints, samples, config, log) that a killed run never renamed.

        Also the leftovers of earlier twingan versions in checkpoints/: their temporary names, and the
        ``.tmpXXXXXX`` files of safetensors' ``save_file``, which they wrote checkpoints with.
        """
        for folder in (self.root, self.checkpoints, self.samples):
            remove_stale_temporaries(folder)
        if self.checkpoints.is_dir():  # names without a process id: only a training run wrote them, and this
            for pattern in (".ckpt-*.tmp*", ".tmp??????"):  # one owns the folder (RunLock)
                for tmp in self.checkpoints.glob(pattern):
                    if tmp.is_file() and not TEMPORARY_NAME.match(tmp.name):
                        tmp.unlink(missing_ok=True)

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
