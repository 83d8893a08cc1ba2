"""The similar-face index: a FAISS index over L2-normalised embeddings plus the paths, domains and metadata.

Kinds (all search by inner product, i.e. cosine similarity on unit vectors):

- ``flat``: exact search over float32 vectors. Chosen by ``auto`` for small galleries.
- ``ivf_sq8``: optional PCA (renormalised after projection), an inverted file of
  ``nlist`` lists and 8-bit scalar-quantised codes; ``nprobe`` lists are scanned per
  query. Chosen by ``auto`` for large galleries. Unless ``nprobe`` is given, it is
  tuned at build time: the smallest value whose recall@10 against exact search
  reaches TUNE_TARGET_RECALL on queries held out of the training sample, searched
  in a gallery made of the rest of that sample. A full gallery is denser than that
  sample, so its recall at the same ``nprobe`` is usually higher (the benchmark
  checks this); the measured figure is recorded as ``tuning``.
- ``ivf_pq``: like ``ivf_sq8`` with product-quantised codes (``pq_m`` bytes a vector);
  for galleries whose SQ8 codes would not fit in memory. Lower recall.
- ``hnsw``: optional PCA, then an HNSW graph over float32 vectors (CPU only).

The parameters used (chosen or given) are recorded in the saved file, with the
:class:`~twingan.search.embeddings_store.EmbeddingMeta` of the vectors; adding or
querying with vectors of another checkpoint, embedding kind or dimension raises
:class:`~twingan.search.embeddings_store.EmbeddingMismatchError`.

Results for ``k`` larger than the gallery (or than the chosen domain) have
``min(k, size)`` columns. An approximate index may find fewer candidates than
that; missing entries have id ``-1`` and score ``-inf`` and are left out of
``SearchResult.paths``.

When FAISS sees a GPU and ``device`` is ``auto`` or ``gpu``, searches run on a GPU
copy of the index (kept in sync on ``add``); the CPU index stays the master copy
that is saved. Searches restricted to a domain, and searches with ``k`` above
FAISS's GPU limit, run on the CPU copy because FAISS GPU indexes cannot filter ids.
"""
from __future__ import annotations

import json
import math
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, Sequence, Union

import faiss
import numpy as np

from twingan import __version__
from twingan.errors import ConfigError, DatasetError, TwinGANError
from twingan.search.brute_force import cosine_topk, recall_at_k
from twingan.search.embeddings_store import EmbeddingMeta, validate_vectors
from twingan.utils.atomic import atomic_path

PathLike = Union[str, os.PathLike]

INDEX_KINDS = ("flat", "ivf_sq8", "ivf_pq", "hnsw")
AUTO_FLAT_MAX_ELEMENTS = 1 << 24
"""``auto`` picks the exact flat index while vectors x dims stays below this (64 MiB of
float32, e.g. 4k x 4096 or 65k x 256): a brute-force scan reads the whole gallery per
query, which stays within a few ms at this size (see BENCHMARKS.md)."""
AUTO_SQ8_MAX_BYTES = 2 << 30
"""``auto`` switches from SQ8 codes to PQ codes when the SQ8 codes would exceed this."""
AUTO_PCA_DIM = 256
"""``auto`` projects vectors with more dimensions than this onto this many principal components."""
MAX_TRAIN_VECTORS = 131_072
PCA_TRAIN_VECTORS = 8_192
TUNE_TARGET_RECALL = 0.95
"""When ``nprobe`` is not given, the smallest value reaching this recall@10 on held-out training vectors is used."""
TUNE_QUERIES = 256
TUNE_GALLERY = 65_536
GPU_MAX_K = 2048
GPU_PQ_M = (1, 2, 3, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96)

_PARAM_DEFAULTS: dict[str, dict[str, Any]] = {
    "flat": {},
    "ivf_sq8": {"pca_dim": None, "nlist": None, "nprobe": None},
    "ivf_pq": {"pca_dim": None, "nlist": None, "nprobe": None, "pq_m": None, "pq_nbits": 8},
    "hnsw": {"pca_dim": None, "hnsw_m": 32, "ef_construction": 80, "ef_search": 128},
}

MAGIC = b"TWGNIDX\x00"
END_MAGIC = b"TWGNEND\x00"
FORMAT_NAME = "twingan-faiss-index"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sI")
_SUFFIX = struct.Struct("<Q8s")


class IndexFileError(TwinGANError):
    """An index file is missing, foreign, truncated, corrupted or from an unsupported format version."""


@dataclass
class SearchResult:
    """Top-k per query, best first. ``scores``/``ids`` are (n_queries, k'); -inf / -1 mark missing entries."""

    scores: np.ndarray
    ids: np.ndarray
    paths: list[list[str]]
    domains: list[list[str]]


def plan_index(kind: str, size: int, dim: int, **params: Any) -> tuple[str, dict[str, Any]]:
    """Resolve ``kind`` ("auto" or one of INDEX_KINDS) and fill in default parameters for ``size`` vectors.

    Explicit ``params`` win over the size-based defaults; unknown names raise ConfigError.
    """
    if kind == "auto":
        if size * dim <= AUTO_FLAT_MAX_ELEMENTS:
            kind = "flat"
        else:
            code_dim = min(dim, params.get("pca_dim") or AUTO_PCA_DIM)
            kind = "ivf_sq8" if size * code_dim <= AUTO_SQ8_MAX_BYTES else "ivf_pq"
    if kind not in INDEX_KINDS:
        raise ConfigError(f"unknown index kind {kind!r}; choose auto or one of {', '.join(INDEX_KINDS)}")
    unknown = set(params) - set(_PARAM_DEFAULTS[kind])
    if unknown:
        allowed = ", ".join(_PARAM_DEFAULTS[kind]) or "none"
        raise ConfigError(f"index kind {kind} has no parameter {', '.join(sorted(unknown))} (allowed: {allowed})")
    resolved = dict(_PARAM_DEFAULTS[kind])
    resolved.update({name: value for name, value in params.items() if value is not None})
    if kind == "flat":
        return kind, resolved
    if resolved["pca_dim"] is None and dim > AUTO_PCA_DIM:
        resolved["pca_dim"] = AUTO_PCA_DIM
    if resolved["pca_dim"] is not None and resolved["pca_dim"] >= dim:
        resolved["pca_dim"] = None  # projecting onto as many dimensions as there are is no reduction
    if kind.startswith("ivf"):
        if resolved["nlist"] is None:
            resolved["nlist"] = _default_nlist(size)
    if kind == "ivf_pq" and resolved["pq_m"] is None:
        resolved["pq_m"] = _default_pq_m(resolved["pca_dim"] or dim)
    _check_positive(kind, resolved)
    return kind, resolved


def _default_nlist(size: int) -> int:
    """About 2 * sqrt(size) lists, as a power of two, with at least 39 training vectors per list."""
    target = 2 ** round(math.log2(max(1.0, 2.0 * math.sqrt(size))))
    return int(max(1, min(target, size // 39)))


def _default_pq_m(code_dim: int) -> int:
    """Sub-quantisers of 2 dimensions each (a byte per 2 dims: half the SQ8 size), or the next divisor below."""
    m = max(1, code_dim // 2)
    while code_dim % m:
        m -= 1
    return m


def _check_positive(kind: str, params: Mapping[str, Any]) -> None:
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ConfigError(f"index parameter {name} of kind {kind} must be a positive integer, got {value!r}")


def factory_string(kind: str, params: Mapping[str, Any], *, with_pca: bool = True) -> str:
    """The faiss.index_factory description of a planned index (``with_pca=False``: the part after the PCA)."""
    prefix = f"PCA{params['pca_dim']},L2norm," if with_pca and params.get("pca_dim") else ""
    if kind == "flat":
        return "Flat"
    if kind == "ivf_sq8":
        return f"{prefix}IVF{params['nlist']},SQ8"
    if kind == "ivf_pq":
        return f"{prefix}IVF{params['nlist']},PQ{params['pq_m']}x{params['pq_nbits']}np"
    return f"{prefix}HNSW{params['hnsw_m']}"


class Index:
    """A searchable gallery of embeddings. Build with :meth:`build` (or :meth:`create` + :meth:`add`)."""

    def __init__(
        self,
        faiss_index: faiss.Index,
        meta: EmbeddingMeta,
        kind: str,
        params: Mapping[str, Any],
        paths: list[str],
        domain_codes: np.ndarray,
        domains: list[str],
        device: str = "auto",
        tuning: Mapping[str, Any] | None = None,
    ) -> None:
        self._cpu_index = faiss_index
        self.meta = meta
        self.kind = kind
        self.params = dict(params)
        self.tuning = dict(tuning) if tuning else None
        self.paths = paths
        self.domains = domains
        self._domain_codes = domain_codes
        self._path_set: set[str] | None = None
        self._selectors: dict[int, tuple[np.ndarray, faiss.IDSelector]] = {}
        self._gpu_resources = None
        self._gpu_index = None
        self.device = _resolve_device(device, kind, self.params)

    # ---------------------------------------------------------------- building

    @classmethod
    def create(
        cls,
        meta: EmbeddingMeta,
        *,
        kind: str = "auto",
        train_vectors: np.ndarray | None = None,
        expected_size: int | None = None,
        device: str = "auto",
        seed: int = 0,
        **params: Any,
    ) -> "Index":
        """An empty, trained index for about ``expected_size`` vectors (default: the training set size).

        Indexes other than ``flat`` learn their PCA and lists from ``train_vectors``
        (a sample of the gallery; at most MAX_TRAIN_VECTORS are used).
        """
        if train_vectors is not None:
            train_vectors = validate_vectors(train_vectors, meta.dim, what="training vectors")
        size = expected_size if expected_size is not None else (0 if train_vectors is None else len(train_vectors))
        if size <= 0:
            raise DatasetError("the gallery is empty: an index needs at least one embedding")
        kind, params = plan_index(kind, size, meta.dim, **params)
        code_dim = params.get("pca_dim") or meta.dim
        inner = faiss.index_factory(code_dim, factory_string(kind, params, with_pca=False), faiss.METRIC_INNER_PRODUCT)
        if kind == "hnsw":
            inner.hnsw.efConstruction = params["ef_construction"]
        faiss_index = inner
        if params.get("pca_dim") or not inner.is_trained:
            train_vectors = _training_subset(kind, params, train_vectors, seed)
            if params.get("pca_dim"):
                faiss_index = _with_pca(fit_pca(train_vectors, params["pca_dim"], seed=seed), inner)
            faiss_index.train(train_vectors)
        tuning = None
        if kind.startswith("ivf") and params["nprobe"] is None:
            params["nprobe"], tuning = _tune_nprobe(faiss_index, params["nlist"], train_vectors, seed)
        return cls(faiss_index, meta, kind, params, [], np.zeros(0, np.uint16), [], device, tuning)

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        paths: Sequence[str],
        meta: EmbeddingMeta,
        *,
        domain: str | Sequence[str],
        kind: str = "auto",
        device: str = "auto",
        seed: int = 0,
        **params: Any,
    ) -> "Index":
        """Index ``vectors`` (unit rows) whose images are ``paths``, all of ``domain`` or one domain per row."""
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise DatasetError("the gallery is empty: an index needs at least one embedding")
        index = cls.create(meta, kind=kind, train_vectors=vectors, device=device, seed=seed, **params)
        index.add(vectors, paths, meta, domain=domain)
        return index

    def add(
        self, vectors: np.ndarray, paths: Sequence[str], meta: EmbeddingMeta, *, domain: str | Sequence[str]
    ) -> None:
        """Append vectors; their ``meta`` must match the index's and their paths must be new to it."""
        meta.check_matches(self.meta, this="the added embeddings", that="the index")
        vectors = validate_vectors(vectors, self.meta.dim, what="added embeddings")
        paths = [str(p) for p in paths]
        if len(paths) != len(vectors):
            raise DatasetError(f"{len(vectors)} vectors but {len(paths)} paths")
        row_domains = [domain] * len(paths) if isinstance(domain, str) else [str(d) for d in domain]
        if len(row_domains) != len(paths):
            raise DatasetError(f"{len(paths)} paths but {len(row_domains)} domains")
        if not paths:
            return
        known = self._known_paths()
        repeated = [p for p in paths if p in known]
        if repeated or len(set(paths)) != len(paths):
            first = repeated[0] if repeated else "a path listed twice in the batch"
            raise DatasetError(f"{len(repeated) or 1} image paths are already in the index (first: {first})")
        codes = np.array([self._domain_code(d) for d in row_domains], dtype=np.uint16)
        self._cpu_index.add(vectors)
        if self._gpu_index is not None:
            self._gpu_index.add(vectors)
        self.paths.extend(paths)
        known.update(paths)
        self._domain_codes = np.concatenate([self._domain_codes, codes])
        self._selectors.clear()

    # ---------------------------------------------------------------- searching

    @property
    def ntotal(self) -> int:
        return int(self._cpu_index.ntotal)

    def domain_counts(self) -> dict[str, int]:
        counts = np.bincount(self._domain_codes, minlength=len(self.domains))
        return {name: int(count) for name, count in zip(self.domains, counts)}

    def search(
        self,
        queries: np.ndarray,
        k: int,
        meta: EmbeddingMeta | None = None,
        *,
        domain: str | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> SearchResult:
        """The ``k`` most similar gallery images for each query (unit rows), optionally only from ``domain``.

        Pass the queries' ``meta`` to have it checked against the index (always do so
        outside tests); ``nprobe``/``ef_search`` override the recorded search parameters.
        """
        if meta is not None:
            meta.check_matches(self.meta, this="the query embeddings", that="the index")
        queries = validate_vectors(np.atleast_2d(queries), self.meta.dim, what="query embeddings")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        if self.ntotal == 0:
            raise DatasetError("the index is empty; add embeddings before searching")
        available = self.ntotal
        selector = None
        if domain is not None:
            code, available = self._domain_selection(domain)
            selector = self._selector(code)
        k_eff = int(min(k, available))
        use_gpu = self.device == "gpu" and selector is None and k_eff <= GPU_MAX_K
        if use_gpu:
            scores, ids = self._search_gpu(queries, k_eff, nprobe)
        else:
            search_params = _search_parameters(
                self._cpu_index,
                self.kind,
                nprobe=int(nprobe or self.params.get("nprobe") or 0),
                ef_search=int(ef_search or self.params.get("ef_search") or 0),
                selector=selector,
            )
            scores, ids = self._cpu_index.search(queries, k_eff, params=search_params)
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        paths = [[self.paths[i] for i in row if i >= 0] for row in ids]
        domains = [[self.domains[self._domain_codes[i]] for i in row if i >= 0] for row in ids]
        return SearchResult(scores=scores, ids=ids.astype(np.int64), paths=paths, domains=domains)

    def _domain_selection(self, domain: str) -> tuple[int, int]:
        if domain not in self.domains:
            raise ConfigError(
                f"the index has no domain {domain!r}; it holds {', '.join(self.domains) or 'no domains'}"
            )
        code = self.domains.index(domain)
        return code, int(np.count_nonzero(self._domain_codes == code))

    def _selector(self, code: int) -> faiss.IDSelector:
        if code not in self._selectors:
            bitmap = np.packbits(self._domain_codes == code, bitorder="little")
            # The selector reads the numpy buffer; keep both alive together.
            self._selectors[code] = (bitmap, faiss.IDSelectorBitmap(self.ntotal, faiss.swig_ptr(bitmap)))
        return self._selectors[code][1]

    def _search_gpu(self, queries: np.ndarray, k: int, nprobe: int | None) -> tuple[np.ndarray, np.ndarray]:
        if self._gpu_index is None:
            self._gpu_resources = faiss.StandardGpuResources()
            self._gpu_index = _gpu_copy(self._gpu_resources, self._cpu_index)
        if self.kind.startswith("ivf"):
            faiss.GpuParameterSpace().set_index_parameter(
                self._gpu_index, "nprobe", int(nprobe or self.params["nprobe"])
            )
        return self._gpu_index.search(queries, k)

    def _known_paths(self) -> set[str]:
        if self._path_set is None:
            self._path_set = set(self.paths)
        return self._path_set

    def _domain_code(self, domain: str) -> int:
        if not domain:
            raise DatasetError("every embedding needs a domain name (e.g. 'anime')")
        if domain not in self.domains:
            if len(self.domains) >= np.iinfo(np.uint16).max:
                raise DatasetError("an index holds at most 65535 domains")
            self.domains.append(domain)
        return self.domains.index(domain)

    # ---------------------------------------------------------------- files

    def info(self) -> dict[str, Any]:
        """What the index holds and how it was built (also what `twingan index info` prints)."""
        return {
            "kind": self.kind,
            "factory": factory_string(self.kind, self.params),
            "params": dict(self.params),
            "tuning": self.tuning,
            "ntotal": self.ntotal,
            "domains": list(self.domains),
            "domain_counts": self.domain_counts(),
            "embedding": self.meta.to_dict(),
            "device": self.device,
        }

    def save(self, path: PathLike) -> None:
        """Write the index, paths, domains and metadata to one file, atomically (temp file + rename)."""
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            fh.write(_PREFIX.pack(MAGIC, FORMAT_VERSION))
            sections = {
                "faiss": _write_faiss_section(fh, self._cpu_index),
                "paths": _write_bytes_section(fh, json.dumps(self.paths).encode("utf-8")),
                "domain_codes": _write_bytes_section(fh, self._domain_codes.astype("<u2").tobytes()),
            }
            footer = {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "twingan_version": __version__,
                "faiss_version": faiss.__version__,
                "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "metric": "inner_product",
                "kind": self.kind,
                "factory": factory_string(self.kind, self.params),
                "params": self.params,
                "tuning": self.tuning,
                "ntotal": self.ntotal,
                "domains": self.domains,
                "domain_counts": self.domain_counts(),
                "embedding": self.meta.to_dict(),
                "sections": sections,
            }
            footer_bytes = json.dumps(footer).encode("utf-8")
            fh.write(footer_bytes)
            fh.write(_SUFFIX.pack(len(footer_bytes), END_MAGIC))

    @classmethod
    def load(cls, path: PathLike, *, device: str = "auto") -> "Index":
        """Read a file written by :meth:`save`; raise IndexFileError if it is foreign, truncated or corrupted."""
        path = Path(path)
        footer = read_index_header(path)
        try:
            sections = footer["sections"]
            meta = EmbeddingMeta.from_dict(footer["embedding"])
            kind, params, domains, ntotal = footer["kind"], footer["params"], list(footer["domains"]), footer["ntotal"]
            tuning = footer["tuning"]
            with open(path, "rb") as fh:
                faiss_index = _read_faiss_section(fh, sections["faiss"], path)
                paths = json.loads(_read_bytes_section(fh, sections["paths"], path, "paths"))
                codes = _read_bytes_section(fh, sections["domain_codes"], path, "domain codes")
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexFileError(f"{path}: malformed index metadata ({exc!r}); rebuild the index") from exc
        codes = np.frombuffer(codes, dtype="<u2").astype(np.uint16)
        if kind not in INDEX_KINDS:
            raise IndexFileError(f"{path}: unknown index kind {kind!r}; this file needs a newer twingan")
        if not (faiss_index.ntotal == len(paths) == len(codes) == ntotal) or faiss_index.d != meta.dim:
            raise IndexFileError(f"{path}: inconsistent contents (counts or dimension disagree); rebuild the index")
        return cls(faiss_index, meta, kind, params, paths, codes, domains, device, tuning)


def read_index_header(path: PathLike) -> dict[str, Any]:
    """The metadata footer of an index file (cheap: no vectors are read)."""
    path = Path(path)
    if not path.is_file():
        raise IndexFileError(f"{path}: no such index file (build one with `twingan index build`)")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        prefix = fh.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size or prefix[:8] != MAGIC:
            raise IndexFileError(f"{path}: not a twingan index file (build one with `twingan index build`)")
        _, version = _PREFIX.unpack(prefix)
        if version != FORMAT_VERSION:
            raise IndexFileError(
                f"{path}: index format version {version} is not supported (this twingan reads version "
                f"{FORMAT_VERSION}); rebuild the index with this version"
            )
        if size < _PREFIX.size + _SUFFIX.size:
            raise IndexFileError(f"{path}: truncated index file ({size} bytes); rebuild it")
        fh.seek(size - _SUFFIX.size)
        footer_len, end_magic = _SUFFIX.unpack(fh.read(_SUFFIX.size))
        if end_magic != END_MAGIC or footer_len > size - _PREFIX.size - _SUFFIX.size:
            raise IndexFileError(f"{path}: truncated or damaged index file (no end marker); rebuild it")
        fh.seek(size - _SUFFIX.size - footer_len)
        try:
            footer = json.loads(fh.read(footer_len).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexFileError(f"{path}: damaged index metadata ({exc}); rebuild it") from exc
    if not isinstance(footer, dict) or footer.get("format") != FORMAT_NAME:
        raise IndexFileError(f"{path}: not a twingan index file")
    return footer


def _gpu_unsupported(kind: str, params: Mapping[str, Any]) -> str | None:
    """Why FAISS cannot run this index on a GPU, or None if it can."""
    if kind == "hnsw":
        return "FAISS has no GPU version of the hnsw index"
    if kind == "ivf_pq" and params.get("pq_m") not in GPU_PQ_M:
        return f"FAISS GPU IVF-PQ supports pq_m in {GPU_PQ_M}, not {params.get('pq_m')}"
    return None


def _resolve_device(device: str, kind: str, params: Mapping[str, Any]) -> str:
    """``auto`` means the GPU when FAISS sees one and supports the index kind, else the CPU."""
    if device not in ("auto", "cpu", "gpu"):
        raise ConfigError(f"device must be auto, cpu or gpu, got {device!r}")
    has_gpu = faiss.get_num_gpus() > 0
    unsupported = _gpu_unsupported(kind, params)
    if device == "gpu":
        if not has_gpu:
            raise ConfigError("device gpu requested but FAISS sees no GPU (is faiss-gpu installed with CUDA?)")
        if unsupported:
            raise ConfigError(f"{unsupported}; use device cpu or another index kind")
        return "gpu"
    if device == "auto" and has_gpu and unsupported is None:
        return "gpu"
    return "cpu"


def _gpu_copy(resources: Any, cpu_index: faiss.Index) -> faiss.Index:
    """A GPU copy for searching. The PCA/L2norm chain stays on the CPU (FAISS cannot clone L2norm) and is shared."""
    if not isinstance(cpu_index, faiss.IndexPreTransform):
        return faiss.index_cpu_to_gpu(resources, 0, cpu_index)
    gpu_index = faiss.IndexPreTransform(faiss.index_cpu_to_gpu(resources, 0, cpu_index.index))
    for position in reversed(range(cpu_index.chain.size())):
        gpu_index.prepend_transform(cpu_index.chain.at(position))
    return gpu_index


def _search_parameters(
    faiss_index: faiss.Index,
    kind: str,
    *,
    nprobe: int = 0,
    ef_search: int = 0,
    selector: faiss.IDSelector | None = None,
) -> faiss.SearchParameters:
    if kind.startswith("ivf"):
        inner = faiss.SearchParametersIVF(nprobe=nprobe)
    elif kind == "hnsw":
        inner = faiss.SearchParametersHNSW(efSearch=ef_search)
    else:
        inner = faiss.SearchParameters()
    if selector is not None:
        inner.sel = selector
    if not isinstance(faiss_index, faiss.IndexPreTransform):
        return inner
    outer = faiss.SearchParametersPreTransform(index_params=inner)
    outer.referenced_inner = inner  # the wrapper holds a raw pointer to inner; keep inner alive with it
    return outer


def _training_subset(
    kind: str, params: Mapping[str, Any], train_vectors: np.ndarray | None, seed: int
) -> np.ndarray:
    """At most MAX_TRAIN_VECTORS random training vectors, checked to be enough for the parameters."""
    if train_vectors is None or len(train_vectors) == 0:
        raise ConfigError(f"a {kind} index must be trained: pass train_vectors (a sample of the gallery)")
    if len(train_vectors) > MAX_TRAIN_VECTORS:
        rows = np.random.default_rng(seed).choice(len(train_vectors), MAX_TRAIN_VECTORS, replace=False)
        train_vectors = train_vectors[np.sort(rows)]
    for name in ("nlist", "pca_dim"):
        value = params.get(name)
        if value is not None and value > len(train_vectors):
            raise ConfigError(
                f"{name}={value} needs at least that many training vectors, got {len(train_vectors)}; "
                f"lower {name} or train on more vectors"
            )
    return train_vectors


def fit_pca(vectors: np.ndarray, out_dim: int, *, seed: int = 0, power_iterations: int = 1) -> faiss.LinearTransform:
    """PCA to ``out_dim`` components as a FAISS transform, by randomized SVD in numpy.

    FAISS's own PCAMatrix runs a full eigendecomposition (minutes at 4096-d on
    2 cores) and stores a d x d matrix; the randomized range finder (Halko et al.
    2011) on at most PCA_TRAIN_VECTORS rows costs a few matrix products and keeps
    the same leading subspace on embedding-like data.
    """
    sample = np.asarray(vectors[: max(PCA_TRAIN_VECTORS, 32 * out_dim)], dtype=np.float32)
    mean = sample.mean(axis=0, dtype=np.float64).astype(np.float32)
    centered = sample - mean
    rng = np.random.default_rng(seed)
    width = min(out_dim + 32, *centered.shape)
    basis = centered @ rng.standard_normal((centered.shape[1], width)).astype(np.float32)
    for _ in range(power_iterations):
        basis = centered @ np.linalg.qr(centered.T @ np.linalg.qr(basis)[0])[0]
    projected = np.linalg.qr(basis)[0].T @ centered
    components = np.linalg.svd(projected, full_matrices=False)[2][:out_dim].astype(np.float32)
    transform = faiss.LinearTransform(centered.shape[1], out_dim, True)
    faiss.copy_array_to_vector(np.ascontiguousarray(components).ravel(), transform.A)
    faiss.copy_array_to_vector(-(components @ mean).astype(np.float32), transform.b)
    transform.is_trained = True
    return transform


def _with_pca(pca: faiss.LinearTransform, inner: faiss.Index) -> faiss.IndexPreTransform:
    """pca -> L2 renormalisation -> inner, owned by the C++ object like a deserialized index."""
    normalize = faiss.NormalizationTransform(pca.d_out, 2.0)
    faiss_index = faiss.IndexPreTransform(inner)
    faiss_index.prepend_transform(normalize)
    faiss_index.prepend_transform(pca)
    faiss_index.own_fields = True
    for part in (inner, normalize, pca):
        part.this.disown()
    return faiss_index


def _tune_nprobe(
    trained: faiss.Index, nlist: int, train_vectors: np.ndarray, seed: int
) -> tuple[int, dict[str, Any]]:
    """The smallest nprobe (on a ~sqrt(2) ladder) reaching TUNE_TARGET_RECALL, and what was measured.

    When even scanning every list stays below the target (PCA or codes lose too
    much), the smallest nprobe within 0.01 of that ceiling is used and a warning says so.
    """
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(train_vectors))
    n_queries = min(TUNE_QUERIES, len(train_vectors) // 2)
    queries = np.ascontiguousarray(train_vectors[order[:n_queries]])
    gallery = np.ascontiguousarray(train_vectors[order[n_queries : n_queries + TUNE_GALLERY]])
    k = min(10, len(gallery))
    if n_queries == 0 or k == 0:
        return nlist, {"reason": "too few training vectors to tune; all lists are scanned"}
    _, exact_ids = cosine_topk(queries, gallery, k)
    probe_index = faiss.deserialize_index(faiss.serialize_index(trained))  # clone_index cannot copy L2norm
    probe_index.add(gallery)

    def recall_with(nprobe: int) -> float:
        _, ids = probe_index.search(queries, k, params=_search_parameters(probe_index, "ivf", nprobe=nprobe))
        return recall_at_k(ids, exact_ids, k)

    ceiling = recall_with(nlist)
    goal = min(TUNE_TARGET_RECALL, ceiling - 0.01)
    ladder = sorted({min(nlist, max(1, round(2 ** (step / 2)))) for step in range(2 * math.ceil(math.log2(nlist)) + 1)})
    nprobe, recall = nlist, ceiling
    for candidate in ladder:
        candidate_recall = recall_with(candidate) if candidate < nlist else ceiling
        if candidate_recall >= goal:
            nprobe, recall = candidate, candidate_recall
            break
    if ceiling < TUNE_TARGET_RECALL:
        warnings.warn(
            f"the approximate index reaches only recall@10 {ceiling:.3f} against exact search even scanning all "
            f"{nlist} lists (target {TUNE_TARGET_RECALL}); the PCA or quantisation loses too much for these "
            "embeddings: use a larger pca_dim, kind ivf_sq8 instead of ivf_pq, or kind flat",
            stacklevel=3,
        )
    tuning = {
        "target_recall_at_10": TUNE_TARGET_RECALL,
        "recall_at_10": round(recall, 4),
        "all_lists_recall_at_10": round(ceiling, 4),
        "nprobe": nprobe,
        "queries": n_queries,
        "gallery": len(gallery),
    }
    return nprobe, tuning


class _SectionWriter:
    """Counts and checksums what goes through it to the file."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.offset = fh.tell()
        self.length = 0
        self.crc = 0

    def write(self, data: bytes) -> int:
        self.fh.write(data)
        self.length += len(data)
        self.crc = zlib.crc32(data, self.crc)
        return len(data)

    def record(self) -> dict[str, int]:
        return {"offset": self.offset, "length": self.length, "crc32": self.crc}


def _write_faiss_section(fh: BinaryIO, faiss_index: faiss.Index) -> dict[str, int]:
    writer = _SectionWriter(fh)
    callback_writer = faiss.PyCallbackIOWriter(writer.write)
    faiss.write_index(faiss_index, callback_writer)
    del callback_writer  # flushes its buffer into writer
    return writer.record()


def _write_bytes_section(fh: BinaryIO, data: bytes) -> dict[str, int]:
    writer = _SectionWriter(fh)
    writer.write(data)
    return writer.record()


def _section_reader(fh: BinaryIO, section: Mapping[str, int]) -> tuple[Callable[[int], bytes], dict[str, int]]:
    fh.seek(section["offset"])
    state = {"left": section["length"], "crc": 0}

    def read(n: int) -> bytes:
        data = fh.read(min(n, state["left"]))
        state["left"] -= len(data)
        state["crc"] = zlib.crc32(data, state["crc"])
        return data

    return read, state


def _check_section(state: Mapping[str, int], section: Mapping[str, int], path: Path, name: str) -> None:
    if state["left"] != 0 or state["crc"] != section["crc32"]:
        raise IndexFileError(f"{path}: the {name} section is corrupted (checksum mismatch); rebuild the index")


def _read_faiss_section(fh: BinaryIO, section: Mapping[str, int], path: Path) -> faiss.Index:
    read, state = _section_reader(fh, section)
    try:
        faiss_index = faiss.read_index(faiss.PyCallbackIOReader(read))
    except RuntimeError as exc:
        raise IndexFileError(f"{path}: the FAISS section is unreadable ({str(exc).splitlines()[0]})") from exc
    _check_section(state, section, path, "FAISS")
    return faiss_index


def _read_bytes_section(fh: BinaryIO, section: Mapping[str, int], path: Path, name: str) -> bytes:
    read, state = _section_reader(fh, section)
    data = read(section["length"])
    _check_section(state, section, path, name)
    return data
