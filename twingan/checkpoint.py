"""The one checkpoint format: a single safetensors file with a JSON header.

Tensors are stored flat under prefixes (``model.``, ``ema.``, ``disc.``,
``optim.g.``, ``optim.d.``, ``rng.``); everything else (format version, the
architecture, the resolved training config, the schedule position, data
positions, RNG states that are not tensors) is JSON in the safetensors metadata
under the key ``twingan``. Nothing is pickled, so loading never runs code, and
a checkpoint always carries the architecture its weights belong to.

The header also records the SHA-256 of the tensor data (``tensor_sha256``), which
every load of tensors checks, so a flipped byte anywhere in the weights or the
optimiser state is refused instead of trained on; and the SHA-256 of the header
itself (safetensors metadata key ``twingan_sha256``), checked by every read, so an
edited header (a claimed source checkpoint, swapped domain profiles) is refused
as well. A translator whose weights hold NaN or infinite values is refused too.

A file is untrusted until checked, and checked before it costs anything: its
header must fit a bounded size and the schema of
:mod:`twingan.checkpoint_header`; its tensors must have the dtypes twingan writes
(float32 weights and optimiser states, uint8 random states); and the shapes its
architecture implies are compared with the tensors in the file, on a model built
on the ``meta`` device (no memory), before a single real layer is allocated.

The metadata's ``kind`` says what a file holds: ``training`` (everything a run
resumes from) or ``release`` (only the ``ema.`` translator and a path-free
summary, :mod:`twingan.inference.release`); both load for inference.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from pathlib import Path
from typing import Any, Mapping, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from twingan.checkpoint_header import CheckpointHeader
from twingan.errors import CheckpointError, quoted
from twingan.models import ModelConfig, TwinGAN
from twingan.utils.atomic import atomic_write_bytes
from twingan.utils.schema import SchemaError, parse

PathLike = Union[str, os.PathLike]

FORMAT_NAME = "twingan-checkpoint"
FORMAT_VERSION = 2
"""2: RGB output layers without a domain norm, no PixelNorm, ``model.norm`` and the embedding's latent
statistics (twingan 0.2). Version 1 files hold the earlier architecture, which did not learn."""
METADATA_KEY = "twingan"
DIGEST_KEY = "tensor_sha256"
"""Header key of the SHA-256 of the tensor data (:func:`tensor_digest`); checked by every load."""
METADATA_DIGEST_KEY = "twingan_sha256"
"""safetensors metadata key of the SHA-256 of the header's JSON text (which holds the tensor digest)."""
MAX_HEADER_BYTES = 16 * 2**20
"""A safetensors header (tensor table + twingan JSON) larger than this is refused unread; real ones are < 1 MB."""
STORED_DTYPES = {"rng.": ("U8",), "": ("F32",)}
"""The dtypes (safetensors' names) twingan writes, by tensor name prefix: random states are bytes, everything
else float32. A tensor of another dtype was not written by twingan and is refused, not converted."""
_TORCH_DTYPES = {torch.float32: "F32", torch.uint8: "U8", torch.int64: "I64", torch.float16: "F16",
                 torch.bfloat16: "BF16", torch.float64: "F64", torch.bool: "BOOL", torch.int8: "I8"}

log = logging.getLogger("twingan.checkpoint")


def save_checkpoint(path: PathLike, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Path:
    """Write ``tensors`` and the JSON-able ``meta`` atomically (temporary file, then rename).

    The header records the SHA-256 of the tensor data (:func:`tensor_digest`), which every load checks.
    The file is serialised in memory and written through :func:`~twingan.utils.atomic.atomic_write_bytes`,
    so the only temporary file is ours: named for the cleanup of killed runs, with the umask's permissions.
    """
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}  # no shared storage
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **meta, DIGEST_KEY: tensor_digest(flat)}
    text = json.dumps(header)
    path = Path(path)
    metadata = {METADATA_KEY: text, METADATA_DIGEST_KEY: hashlib.sha256(text.encode("utf-8")).hexdigest()}
    atomic_write_bytes(path, save(flat, metadata=metadata))
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
            _check_dtypes(f, path)
            _verify_digest(f, path, header)
            return {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
        except SafetensorError as exc:
            raise CheckpointError(f"{quoted(path)}: truncated or corrupt tensor data ({exc})") from exc


def tensor_specs(path: PathLike, prefix: str = "") -> dict[str, tuple[tuple[int, ...], str]]:
    """(shape, safetensors dtype) of each tensor whose name starts with ``prefix`` (prefix removed), read from
    the file's header alone: nothing is allocated. Every tensor's dtype must be one twingan writes."""
    path = Path(path)
    with _open(path) as f:
        _header(path, f.metadata())
        _check_dtypes(f, path)
        specs = {}
        for name in f.keys():
            if name.startswith(prefix):
                piece = f.get_slice(name)
                specs[name[len(prefix):]] = (tuple(piece.get_shape()), piece.get_dtype())
        return specs


def verify_checkpoint(path: PathLike) -> dict[str, Any]:
    """The header of ``path`` once its tensor data is checked against the digest it records (CheckpointError)."""
    path = Path(path)
    with _open(path) as f:
        header = _header(path, f.metadata())
        try:
            _check_dtypes(f, path)
            _verify_digest(f, path, header)
        except SafetensorError as exc:
            raise CheckpointError(f"{quoted(path)}: truncated or corrupt tensor data ({exc})") from exc
    return header


def _check_dtypes(f: Any, path: Path) -> None:
    for name in f.keys():
        dtype = f.get_slice(name).get_dtype()
        allowed = next(kinds for prefix, kinds in STORED_DTYPES.items() if name.startswith(prefix))
        if dtype not in allowed:
            raise CheckpointError(
                f"{quoted(path)}: tensor {name!r} is stored as {dtype}; twingan writes {' or '.join(allowed)} there "
                "and converts nothing: the file was not written by twingan, or was altered"
            )


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
    if meta.get("model_config") is None:
        raise CheckpointError(f"{path}: the checkpoint has no model_config; it cannot be rebuilt")
    try:
        return parse(ModelConfig, ModelConfig.from_dict(meta["model_config"]).to_dict())
    except (TypeError, ValueError) as exc:  # SchemaError is a ValueError
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
    specs = tensor_specs(path, prefix=f"{weights}.")
    if not specs:
        if meta.get("kind") == "release":
            raise CheckpointError(f"{path}: a release file holds only the EMA translator; the '{weights}' "
                                  "weights are in the training checkpoint it was made from")
        raise CheckpointError(f"{path}: the checkpoint holds no '{weights}' weights")
    with torch.device("meta"):  # the shapes the architecture implies, without allocating them
        expected = {k: (tuple(v.shape), _TORCH_DTYPES.get(v.dtype, str(v.dtype)))
                    for k, v in TwinGAN(cfg).state_dict().items()}
    check_fits(expected, specs, path, weights)
    progress = meta.get("progress") or {}
    resolution, alpha = progress.get("resolution", cfg.resolution), progress.get("alpha", 1.0)
    if resolution not in cfg.resolutions:
        raise CheckpointError(f"{path}: its progress resolution {resolution} is not one of the architecture's "
                              f"{cfg.resolutions}; the file is damaged")
    model = TwinGAN(cfg)
    state = load_tensors(path, prefix=f"{weights}.")
    model.load_state_dict(state, strict=True)
    check_finite(state, path, f"'{weights}'")
    model.set_progress(resolution, 1.0 if alpha is None else alpha)
    return model.to(device).eval(), meta


def check_fits(
    expected: Mapping[str, tuple[tuple[int, ...], str]], found: Mapping[str, tuple[tuple[int, ...], str]],
    path: PathLike, what: str,
) -> None:
    """CheckpointError unless the tensors ``found`` in a file (name -> (shape, dtype)) are exactly those a
    module ``expected``; both come from headers or the meta device, so nothing has been allocated yet."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong_shape = [k for k in expected if k in found and found[k][0] != expected[k][0]]
    wrong_dtype = [k for k in expected if k in found and found[k][1] != expected[k][1]]
    if missing or unexpected or wrong_shape or wrong_dtype:
        details = []
        if missing:
            details.append(f"missing {len(missing)} (e.g. {missing[:3]})")
        if unexpected:
            details.append(f"unexpected {len(unexpected)} (e.g. {unexpected[:3]})")
        if wrong_shape:
            name = wrong_shape[0]
            details.append(f"{len(wrong_shape)} of another shape (e.g. {name}: {list(found[name][0])} in the file, "
                           f"{list(expected[name][0])} for the architecture)")
        if wrong_dtype:
            details.append(f"{len(wrong_dtype)} of another dtype (e.g. {wrong_dtype[0]}: {found[wrong_dtype[0]][1]})")
        hint = ""
        if missing == ["attribute_prior"]:
            hint = (" (saved before twingan stored the training labels' attribute prior, from which generation "
                    "draws the attributes nobody names: retrain with this version)")
        raise CheckpointError(
            f"{path}: '{what}' weights do not match the stored architecture: " + "; ".join(details) + hint
        )


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
    other file's is its own content hash.

    A release's claim is taken only from a header its digest covers (so it was not edited since it was
    written); a release written before twingan recorded that digest is identified by its own hash.
    """
    source = meta.get("source") or {}
    if meta.get("kind") == "release" and source.get("sha256"):
        if _has_metadata_digest(Path(path)):
            return str(source["sha256"])
        log.warning("%s: a release written before twingan covered its header with a digest; it is identified by "
                    "its own hash, so it does not share the indexes of its training checkpoint (export it again)",
                    quoted(path))
    return file_sha256(path)


def _has_metadata_digest(path: Path) -> bool:
    with _open(path) as f:
        return METADATA_DIGEST_KEY in (f.metadata() or {})


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
        _check_header_size(path)
        try:
            self._ctx = safe_open(str(path), framework="pt", device=self.device)
            return self._ctx.__enter__()
        except (SafetensorError, OSError, ValueError) as exc:
            with open(path, "rb") as fh:
                hint = _pickle_hint(fh.read(2))
            raise CheckpointError(
                f"{path}: not a readable twingan checkpoint (truncated, corrupt or not a safetensors file: {exc}).{hint}"
            ) from exc

    def __exit__(self, *exc_info):
        return self._ctx.__exit__(*exc_info)


def _check_header_size(path: Path) -> None:
    """Refuse a file whose safetensors header would be larger than any twingan writes, before it is parsed."""
    try:
        with open(path, "rb") as fh:
            start = fh.read(8)
    except OSError as exc:
        raise CheckpointError(f"{quoted(path)}: cannot read it ({exc.strerror or exc})") from exc
    claimed = struct.unpack("<Q", start)[0] if len(start) == 8 else 0
    if claimed > MAX_HEADER_BYTES:
        raise CheckpointError(
            f"{quoted(path)}: not a readable twingan checkpoint (its header claims {claimed} bytes, twingan's are "
            f"well under {MAX_HEADER_BYTES // 2**20} MB: not a safetensors file, or a damaged one).{_pickle_hint(start)}"
        )


def _pickle_hint(start: bytes) -> str:
    if start[:2] in (b"\x80\x02", b"PK"):
        return " It looks like a pickled torch file; twingan never unpickles checkpoints."
    return ""


def _header(path: Path, metadata: Mapping[str, str] | None) -> dict[str, Any]:
    """The twingan header of an open file: its digest (where recorded), format, version and schema checked."""
    raw = (metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise CheckpointError(
            f"{path}: a safetensors file without twingan metadata (foreign weights?); twingan checkpoints "
            "carry their architecture and config, weights alone cannot be loaded"
        )
    recorded = (metadata or {}).get(METADATA_DIGEST_KEY)
    if recorded is not None and hashlib.sha256(raw.encode("utf-8")).hexdigest() != recorded:
        raise CheckpointError(
            f"{quoted(path)}: its header does not match the checksum written with it (it was edited or damaged "
            "after the file was saved); use another copy"
        )
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt twingan metadata ({exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{quoted(path)}: its twingan metadata is a JSON {type(header).__name__}, not an "
                              "object: not a twingan checkpoint, or a damaged one")
    if header.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: unknown format {header.get('format')!r}, expected {FORMAT_NAME!r}")
    version = header.get("format_version")
    if version == 1 and isinstance(version, int) and not isinstance(version, bool):
        raise CheckpointError(
            f"{path}: a version 1 checkpoint (twingan 0.1), whose architecture changed in twingan 0.2 (no domain "
            "norm on the RGB output, no PixelNorm, per-domain embedding statistics); its weights cannot be loaded "
            "into the new networks: train again (`twingan demo` or `twingan train`)"
        )
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{quoted(path)}: its format_version is {version!r} ({type(version).__name__}), "
                              "not a whole number: the file is damaged or was not written by twingan")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version}, this twingan reads version {FORMAT_VERSION}; "
            "use the twingan release that wrote it"
        )
    try:
        parse(CheckpointHeader, header)
    except SchemaError as exc:
        raise CheckpointError(f"{quoted(path)}: malformed twingan metadata ({exc}): the file is damaged or was not "
                              "written by twingan") from None
    return header
