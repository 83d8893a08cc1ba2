"""Embeddings on disk: float32 vectors with their image paths, domain and model metadata.

A store is a folder that grows in shards, so that embedding millions of images
can stop and resume without redoing work::

    STORE/
      meta.json                 format, version, domain, EmbeddingMeta
      shard_000000.paths.json   the image paths of shard 0, in row order
      shard_000000.npy          float32 (rows, dim), L2-normalised
      shard_000001.paths.json
      shard_000001.npy
      ...

Every file is written atomically. A shard's paths file is written before its
vectors, and a shard exists only once its ``.npy`` is in place, so a crash
leaves at most an orphan paths file that the next append overwrites. A resumed
run asks :meth:`EmbeddingStore.existing_paths` which images are done.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, Union

import numpy as np

from twingan.errors import CheckpointError, DatasetError, quoted, write_failure
from twingan.utils.atomic import atomic_paths, atomic_write_text, remove_stale_temporaries
from twingan.utils.schema import parse

PathLike = Union[str, os.PathLike]

STORE_FORMAT = "twingan-embeddings"
STORE_VERSION = 1
NORM_TOLERANCE = 1e-3
"""How far from 1 a vector's L2 norm may be and still count as normalised."""

_SHARD_RE = re.compile(r"^shard_(\d{6})\.npy$")


class EmbeddingMismatchError(CheckpointError):
    """Vectors made by a different checkpoint, embedding kind or dimension than the ones they meet."""


@dataclass(frozen=True)
class EmbeddingMeta:
    """Where embeddings come from. Vectors are comparable only if the first three fields are equal.

    ``model`` is an informational summary of the model configuration (architecture,
    resolution, domains); it is recorded but not compared.
    """

    checkpoint_sha256: str
    embedding_kind: str
    dim: int
    model: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.checkpoint_sha256, str) or not self.checkpoint_sha256:
            raise ValueError("EmbeddingMeta.checkpoint_sha256 must be a non-empty string")
        if not isinstance(self.embedding_kind, str) or not self.embedding_kind:
            raise ValueError("EmbeddingMeta.embedding_kind must be a non-empty string")
        if isinstance(self.dim, bool) or not isinstance(self.dim, (int, np.integer)) or self.dim <= 0:
            raise ValueError(f"EmbeddingMeta.dim must be a positive integer, got {self.dim!r}")
        object.__setattr__(self, "dim", int(self.dim))
        object.__setattr__(self, "model", dict(self.model))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EmbeddingMeta":
        """The metadata :meth:`to_dict` wrote (read from a file: schema-checked, ValueError naming the bad field)."""
        return parse(cls, data)

    def describe(self) -> str:
        return f"checkpoint {self.checkpoint_sha256[:12]}, kind {self.embedding_kind}, {self.dim}-d"

    def check_matches(self, other: "EmbeddingMeta", *, this: str, that: str) -> None:
        """Raise EmbeddingMismatchError naming what differs between ``this`` (self) and ``that`` (other)."""
        differences = [
            f"{name} {getattr(self, name)!r} vs {getattr(other, name)!r}"
            for name in ("checkpoint_sha256", "embedding_kind", "dim")
            if getattr(self, name) != getattr(other, name)
        ]
        if differences:
            raise EmbeddingMismatchError(
                f"{this} ({self.describe()}) does not match {that} ({other.describe()}): "
                f"{'; '.join(differences)}. Embed both with the same checkpoint and embedding kind, "
                "or rebuild the index from embeddings of the checkpoint you query with."
            )


@dataclass(frozen=True)
class StoreHeader:
    """What a store's meta.json holds."""

    format: str
    version: int
    domain: str
    embedding: dict[str, Any]

    def __post_init__(self) -> None:
        if not self.domain:
            raise ValueError("domain must be a domain name, got ''")


def validate_vectors(vectors: np.ndarray, dim: int, *, what: str) -> np.ndarray:
    """Return ``vectors`` as a C-contiguous float32 (n, dim) array; raise DatasetError if not finite unit rows."""
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[1] != dim:
        raise DatasetError(f"{what}: expected vectors of shape (n, {dim}), got {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise DatasetError(f"{what}: expected floating-point vectors, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise DatasetError(f"{what}: vectors contain NaN or infinity")
    norms = np.linalg.norm(array, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOLERANCE)
    if bad.size:
        raise DatasetError(
            f"{what}: {bad.size} of {len(array)} vectors are not L2-normalised (row {bad[0]} has norm "
            f"{norms[bad[0]]:.4g}); cosine search needs unit vectors, normalise them first "
            "(twingan.search.brute_force.l2_normalize)"
        )
    return array


class EmbeddingStore:
    """A folder of embedding shards for one domain and one :class:`EmbeddingMeta`."""

    def __init__(self, path: Path, meta: EmbeddingMeta, domain: str) -> None:
        self.path = path
        self.meta = meta
        self.domain = domain
        self._known_paths: set[str] | None = None

    @classmethod
    def create(cls, path: PathLike, meta: EmbeddingMeta, domain: str) -> "EmbeddingStore":
        """Start a new store at ``path``; the folder must not exist or be empty."""
        path = Path(path)
        if not domain or not isinstance(domain, str):
            raise DatasetError(f"{path}: the embeddings need a domain name (e.g. 'anime'), got {domain!r}")
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise DatasetError(
                f"{path}: already exists and is not an empty folder; choose a new output or resume into it"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_failure(path, exc) from exc
        header = {"format": STORE_FORMAT, "version": STORE_VERSION, "domain": domain, "embedding": meta.to_dict()}
        atomic_write_text(path / "meta.json", json.dumps(header, indent=2) + "\n")
        return cls(path, meta, domain)

    @classmethod
    def open(cls, path: PathLike) -> "EmbeddingStore":
        """Open an existing store, checking its meta.json."""
        path = Path(path)
        meta_file = path / "meta.json"
        if not path.is_dir():
            raise DatasetError(f"{path}: not an embeddings store folder (create one with `twingan embed`)")
        if not meta_file.is_file():
            raise DatasetError(f"{path}: no meta.json, so this is not an embeddings store made by twingan")
        try:
            header = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{meta_file}: unreadable embeddings metadata ({exc})") from exc
        if not isinstance(header, dict):
            raise DatasetError(f"{quoted(meta_file)}: holds a JSON {type(header).__name__}, not the object of a "
                               "twingan embeddings store")
        if header.get("format") != STORE_FORMAT:
            raise DatasetError(f"{meta_file}: not a twingan embeddings store (format {header.get('format')!r})")
        if header.get("version") != STORE_VERSION:
            raise DatasetError(
                f"{meta_file}: embeddings store version {header.get('version')!r} is not supported "
                f"(this twingan reads version {STORE_VERSION}); re-embed with this version"
            )
        try:
            checked = parse(StoreHeader, header)
            meta = EmbeddingMeta.from_dict(checked.embedding)
        except (TypeError, ValueError) as exc:  # SchemaError is a ValueError
            raise DatasetError(f"{quoted(meta_file)}: malformed embeddings metadata ({exc})") from None
        return cls(path, meta, checked.domain)

    @classmethod
    def open_or_create(cls, path: PathLike, meta: EmbeddingMeta, domain: str) -> "EmbeddingStore":
        """Resume into an existing store (same meta and domain required) or create a new one."""
        path = Path(path)
        if not (path / "meta.json").exists():
            return cls.create(path, meta, domain)
        store = cls.open(path)
        meta.check_matches(store.meta, this="the new embeddings", that=f"the existing store {path}")
        if store.domain != domain:
            raise DatasetError(
                f"{path}: holds domain {store.domain!r} embeddings, cannot resume it with domain {domain!r}"
            )
        store.remove_leftovers()
        return store

    def remove_leftovers(self) -> None:
        """Temporary files of runs killed while writing, and paths files whose shard was never committed."""
        remove_stale_temporaries(self.path)
        for paths_file in self.path.glob("shard_*.paths.json"):
            if not paths_file.with_name(paths_file.name.replace(".paths.json", ".npy")).exists():
                paths_file.unlink(missing_ok=True)

    def shard_files(self) -> list[Path]:
        """Committed shards (their .npy files), in order."""
        shards = [p for p in self.path.iterdir() if _SHARD_RE.match(p.name)]
        return sorted(shards, key=lambda p: int(_SHARD_RE.match(p.name).group(1)))

    def __len__(self) -> int:
        return sum(self._load_shard_vectors(shard).shape[0] for shard in self.shard_files())

    def existing_paths(self) -> set[str]:
        """The image paths already embedded (a resumed run skips these)."""
        if self._known_paths is None:
            known: set[str] = set()
            for shard in self.shard_files():
                known.update(self._load_shard_paths(shard))
            self._known_paths = known
        return set(self._known_paths)

    def append(self, vectors: np.ndarray, paths: Sequence[str]) -> None:
        """Write one new shard; paths must be new to the store and unique."""
        paths = [str(p) for p in paths]
        vectors = validate_vectors(vectors, self.meta.dim, what=f"{self.path}: appended batch")
        if len(paths) != vectors.shape[0]:
            raise DatasetError(f"{self.path}: {vectors.shape[0]} vectors but {len(paths)} paths")
        if not paths:
            return
        if len(set(paths)) != len(paths):
            raise DatasetError(f"{self.path}: the appended batch lists the same image path twice")
        known = self.existing_paths()
        repeated = [p for p in paths if p in known]
        if repeated:
            raise DatasetError(
                f"{self.path}: {len(repeated)} paths are already in the store (first: {repeated[0]}); "
                "skip the paths from existing_paths() when resuming"
            )
        shards = self.shard_files()
        number = int(_SHARD_RE.match(shards[-1].name).group(1)) + 1 if shards else 0
        stem = self.path / f"shard_{number:06d}"
        # Both files are written before either is published, the .npy (which commits the shard) last: a full
        # disk or a killed run leaves no orphan paths file.
        with atomic_paths([stem.with_suffix(".paths.json"), stem.with_suffix(".npy")]) as (paths_tmp, npy_tmp):
            paths_tmp.write_text(json.dumps(paths), encoding="utf-8")
            with open(npy_tmp, "wb") as fh:
                np.save(fh, vectors)
        assert self._known_paths is not None
        self._known_paths.update(paths)

    def iter_shards(self) -> Iterator[tuple[np.ndarray, list[str]]]:
        """Yield ``(vectors, paths)`` per shard; vectors are memory-mapped, read-only."""
        for shard in self.shard_files():
            vectors = self._load_shard_vectors(shard)
            paths = self._load_shard_paths(shard)
            if len(paths) != vectors.shape[0]:
                raise DatasetError(f"{shard}: {vectors.shape[0]} vectors but {len(paths)} paths in its paths file")
            yield vectors, paths

    def load(self) -> tuple[np.ndarray, list[str]]:
        """All vectors (float32, in memory) and paths, in shard order."""
        chunks: list[np.ndarray] = []
        all_paths: list[str] = []
        for vectors, paths in self.iter_shards():
            chunks.append(np.asarray(vectors))
            all_paths.extend(paths)
        if not chunks:
            return np.zeros((0, self.meta.dim), np.float32), []
        return np.concatenate(chunks), all_paths

    def sample(self, count: int, *, seed: int = 0) -> np.ndarray:
        """Up to ``count`` vectors chosen uniformly at random (e.g. to train an index without loading everything)."""
        sizes = [self._load_shard_vectors(shard).shape[0] for shard in self.shard_files()]
        total = sum(sizes)
        if total == 0:
            return np.zeros((0, self.meta.dim), np.float32)
        rows = np.sort(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False))
        picked: list[np.ndarray] = []
        start = 0
        for shard, size in zip(self.shard_files(), sizes):
            local = rows[(rows >= start) & (rows < start + size)] - start
            if local.size:
                picked.append(np.asarray(self._load_shard_vectors(shard)[local]))
            start += size
        return np.concatenate(picked)

    def validate(self) -> int:
        """Read every shard fully and check shapes, counts, norms and path uniqueness; return the row count."""
        seen: set[str] = set()
        total = 0
        for shard, (vectors, paths) in zip(self.shard_files(), self.iter_shards()):
            validate_vectors(np.asarray(vectors), self.meta.dim, what=str(shard))
            repeated = seen.intersection(paths)
            if repeated or len(set(paths)) != len(paths):
                raise DatasetError(f"{shard}: repeats image paths already in the store")
            seen.update(paths)
            total += vectors.shape[0]
        return total

    def _load_shard_vectors(self, shard: Path) -> np.ndarray:
        try:
            vectors = np.load(shard, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{shard}: unreadable or truncated shard ({exc}); delete it and resume") from exc
        if vectors.ndim != 2 or vectors.shape[1] != self.meta.dim or vectors.dtype != np.float32:
            raise DatasetError(
                f"{shard}: expected float32 vectors of shape (n, {self.meta.dim}), "
                f"got {vectors.dtype} {vectors.shape}"
            )
        return vectors

    def _load_shard_paths(self, shard: Path) -> list[str]:
        paths_file = shard.with_suffix(".paths.json")
        try:
            paths = json.loads(paths_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{paths_file}: unreadable paths file of shard {shard.name} ({exc})") from exc
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise DatasetError(f"{paths_file}: expected a JSON list of path strings")
        return paths
