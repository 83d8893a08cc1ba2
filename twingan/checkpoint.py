"""The one checkpoint format: a single safetensors file with a JSON header.

Tensors are stored flat under prefixes (``model.``, ``ema.``, ``disc.``,
``optim.g.``, ``optim.d.``, ``rng.``); everything else (format version, the
architecture, the resolved training config, the schedule position, data
positions, RNG states that are not tensors) is JSON in the safetensors metadata
under the key ``twingan``. Nothing is pickled, so loading never runs code, and
a checkpoint always carries the architecture its weights belong to.

The header also records the SHA-256 of the tensor data (``tensor_sha256``), which
every load of tensors checks, so a flipped byte anywhere in the weights or the
optimiser state is refused instead of trained on. A translator whose weights hold
NaN or infinite values is refused too.

The metadata's ``kind`` says what a file holds: ``training`` (everything a run
resumes from) or ``release`` (only the ``ema.`` translator and a path-free
summary, :mod:`twingan.inference.release`); both load for inference.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from twingan.errors import CheckpointError, quoted
from twingan.models import ModelConfig, TwinGAN
from twingan.utils.atomic import atomic_write_bytes

PathLike = Union[str, os.PathLike]

FORMAT_NAME = "twingan-checkpoint"
FORMAT_VERSION = 2
"""2: RGB output layers without a domain norm, no PixelNorm, ``model.norm`` and the embedding's latent
statistics (twingan 0.2). Version 1 files hold the earlier architecture, which did not learn."""
METADATA_KEY = "twingan"
DIGEST_KEY = "tensor_sha256"
"""Header key of the SHA-256 of the tensor data (:func:`tensor_digest`); checked by every load."""

log = logging.getLogger("twingan.checkpoint")


def save_checkpoint(path: PathLike, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Path:
    """Write ``tensors`` and the JSON-able ``meta`` atomically (temporary file, then rename).

    The header records the SHA-256 of the tensor data (:func:`tensor_digest`), which every load checks.
    The file is serialised in memory and written through :func:`~twingan.utils.atomic.atomic_write_bytes`,
    so the only temporary file is ours: named for the cleanup of killed runs, with the umask's permissions.
    """
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}  # no shared storage
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **meta, DIGEST_KEY: tensor_digest(flat)}
    path = Path(path)
    atomic_write_bytes(path, save(flat, metadata={METADATA_KEY: json.dumps(header)}))
    return path


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors' raw bytes, in the order of their sorted names (independent of the file layout)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(tensors[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def check_finite(tensors: Mapping[str, torch.Tensor], path: PathLike, what: str) -> None:
    """CheckpointError when a floating-point tensor of ``tensors`` holds NaN or infinite values."""
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(
            f"{quoted(path)}: {len(bad)} {what} tensors hold NaN or infinite values (e.g. {bad[0]}): the run had "
            "diverged when this checkpoint was written; use an earlier checkpoint of the run"
        )


def read_meta(path: PathLike) -> dict[str, Any]:
    """The checkpoint's JSON header, after checking that the file is a twingan checkpoint we can read."""
    path = Path(path)
    with _open(path) as f:
        return _header(path, f.metadata())


def load_tensors(path: PathLike, prefix: str = "", device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Tensors whose name starts with ``prefix``, with the prefix removed, after checking the file's digest."""
    path = Path(path)
    with _open(path, device=str(device)) as f:
        header = _header(path, f.metadata())
        try:
            _verify_digest(f, path, header)
            return {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
        except SafetensorError as exc:
            raise CheckpointError(f"{quoted(path)}: truncated or corrupt tensor data ({exc})") from exc


def verify_checkpoint(path: PathLike) -> dict[str, Any]:
    """The header of ``path`` once its tensor data is checked against the digest it records (CheckpointError)."""
    path = Path(path)
    with _open(path) as f:
        header = _header(path, f.metadata())
        try:
            _verify_digest(f, path, header)
        except SafetensorError as exc:
            raise CheckpointError(f"{quoted(path)}: truncated or corrupt tensor data ({exc})") from exc
    return header


def _verify_digest(f: Any, path: Path, header: Mapping[str, Any]) -> None:
    expected = header.get(DIGEST_KEY)
    if expected is None:
        log.warning("%s has no checksum (written before twingan recorded one); its tensor data cannot be verified",
                    quoted(path))
        return
    digest = hashlib.sha256()
    for name in sorted(f.keys()):
        digest.update(f.get_tensor(name).reshape(-1).view(torch.uint8).cpu().numpy())
    if digest.hexdigest() != expected:
        raise CheckpointError(
            f"{quoted(path)}: its tensor data does not match the checksum written with it (the file changed after "
            "it was saved: a disk, copy or transfer error); use another checkpoint or copy it again"
        )


def stored_model_config(meta: Mapping[str, Any], path: PathLike) -> ModelConfig:
    """The architecture a checkpoint's header (``meta``, from :func:`read_meta`) records; CheckpointError when
    it records none or an invalid one."""
    if "model_config" not in meta:
        raise CheckpointError(f"{path}: the checkpoint has no model_config; it cannot be rebuilt")
    try:
        return ModelConfig.from_dict(meta["model_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid model_config in the checkpoint ({exc})") from exc


def load_translator(
    path: PathLike, device: str | torch.device = "cpu", weights: str = "ema"
) -> tuple[TwinGAN, dict[str, Any]]:
    """Rebuild the TwinGAN translator stored in ``path`` (EMA weights by default), in eval mode.

    The model is set to the checkpoint's resolution and fade-in alpha.
    """
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    path = Path(path)
    meta = read_meta(path)
    cfg = stored_model_config(meta, path)
    model = TwinGAN(cfg)
    state = load_tensors(path, prefix=f"{weights}.")
    if not state:
        if meta.get("kind") == "release":
            raise CheckpointError(f"{path}: a release file holds only the EMA translator; the '{weights}' "
                                  "weights are in the training checkpoint it was made from")
        raise CheckpointError(f"{path}: the checkpoint holds no '{weights}' weights")
    _load_state_strict(model, state, path, weights)
    check_finite(state, path, f"'{weights}'")
    progress = meta.get("progress", {})
    model.set_progress(int(progress.get("resolution", cfg.resolution)), float(progress.get("alpha", 1.0)))
    return model.to(device).eval(), meta


def _load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong_shape:
        details = []
        if missing:
            details.append(f"missing {len(missing)} (e.g. {missing[:3]})")
        if unexpected:
            details.append(f"unexpected {len(unexpected)} (e.g. {unexpected[:3]})")
        if wrong_shape:
            details.append(f"wrong shape for {wrong_shape[:3]}")
        hint = ""
        if missing == ["attribute_prior"]:
            hint = (" (saved before twingan stored the training labels' attribute prior, from which generation "
                    "draws the attributes nobody names: retrain with this version)")
        raise CheckpointError(
            f"{path}: '{what}' weights do not match the stored architecture: " + "; ".join(details) + hint
        )
    module.load_state_dict(state, strict=True)


def file_sha256(path: PathLike, chunk: int = 1 << 20) -> str:
    """Content hash of a file (identifies the checkpoint an index or embedding file was made with)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(path: PathLike, meta: dict[str, Any]) -> str:
    """The hash that identifies a file's translator for embeddings and indexes: a release's is that of the
    training checkpoint it was copied from byte for byte (the two embed alike, so they share indexes); any
    other file's is its own content hash."""
    source = meta.get("source") or {}
    if meta.get("kind") == "release" and source.get("sha256"):
        return str(source["sha256"])
    return file_sha256(path)


class _open:
    """safe_open with our error messages for missing, foreign and truncated files."""

    def __init__(self, path: Path, device: str = "cpu") -> None:
        self.path = path
        self.device = device

    def __enter__(self):
        path = self.path
        if not path.exists():
            raise CheckpointError(f"{path}: checkpoint not found")
        if path.is_dir():
            raise CheckpointError(f"{path}: is a folder; pass the .safetensors checkpoint file inside it")
        try:
            self._ctx = safe_open(str(path), framework="pt", device=self.device)
            return self._ctx.__enter__()
        except (SafetensorError, OSError, ValueError) as exc:
            hint = ""
            with open(path, "rb") as fh:
                if fh.read(2) in (b"\x80\x02", b"PK"):
                    hint = " It looks like a pickled torch file; twingan never unpickles checkpoints."
            raise CheckpointError(
                f"{path}: not a readable twingan checkpoint (truncated, corrupt or not a safetensors file: {exc}).{hint}"
            ) from exc

    def __exit__(self, *exc_info):
        return self._ctx.__exit__(*exc_info)


def _header(path: Path, metadata: Mapping[str, str] | None) -> dict[str, Any]:
    raw = (metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise CheckpointError(
            f"{path}: a safetensors file without twingan metadata (foreign weights?); twingan checkpoints "
            "carry their architecture and config, weights alone cannot be loaded"
        )
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt twingan metadata ({exc})") from exc
    if header.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: unknown format {header.get('format')!r}, expected {FORMAT_NAME!r}")
    version = header.get("format_version")
    if version == 1:
        raise CheckpointError(
            f"{path}: a version 1 checkpoint (twingan 0.1), whose architecture changed in twingan 0.2 (no domain "
            "norm on the RGB output, no PixelNorm, per-domain embedding statistics); its weights cannot be loaded "
            "into the new networks: train again (`twingan demo` or `twingan train`)"
        )
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version}, this twingan reads version {FORMAT_VERSION}; "
            "use the twingan release that wrote it"
        )
    return header
