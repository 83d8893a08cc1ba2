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

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import faiss
import numpy as np

from twingan.errors import ConfigError, DatasetError
from twingan.search.embeddings_store import EmbeddingMeta, validate_vectors
from twingan.search.index_device import GPU_MAX_K, gpu_copy, resolve_device
from twingan.search.index_file import IndexFileError, read_index_header, read_index_sections, write_index_file
from twingan.search.index_plan import INDEX_KINDS, factory_string, plan_index, search_parameters
from twingan.search.index_training import fit_pca, training_subset, tune_nprobe, with_pca

PathLike = Union[str, os.PathLike]


@dataclass
class SearchResult:
    """Top-k per query, best first. ``scores``/``ids`` are (n_queries, k'); -inf / -1 mark missing entries."""

    scores: np.ndarray
    ids: np.ndarray
    paths: list[list[str]]
    domains: list[list[str]]


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
        self.device = resolve_device(device, kind, self.params)

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
            train_vectors = training_subset(kind, params, train_vectors, seed)
            if params.get("pca_dim"):
                faiss_index = with_pca(fit_pca(train_vectors, params["pca_dim"], seed=seed), inner)
            faiss_index.train(train_vectors)
        tuning = None
        if kind.startswith("ivf") and params["nprobe"] is None:
            params["nprobe"], tuning = tune_nprobe(faiss_index, params["nlist"], train_vectors, seed)
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
            search_params = search_parameters(
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
            self._gpu_index = gpu_copy(self._gpu_resources, self._cpu_index)
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
        description = {
            "metric": "inner_product",
            "kind": self.kind,
            "factory": factory_string(self.kind, self.params),
            "params": self.params,
            "tuning": self.tuning,
            "ntotal": self.ntotal,
            "domains": self.domains,
            "domain_counts": self.domain_counts(),
            "embedding": self.meta.to_dict(),
        }
        write_index_file(path, self._cpu_index, self.paths, self._domain_codes, description)

    @classmethod
    def load(cls, path: PathLike, *, device: str = "auto") -> "Index":
        """Read a file written by :meth:`save`; raise IndexFileError if it is foreign, truncated or corrupted."""
        path = Path(path)
        footer = read_index_header(path)  # its digest and schema checked
        try:
            meta = EmbeddingMeta.from_dict(footer["embedding"])
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexFileError(f"{path}: malformed embedding metadata in the index ({exc}); rebuild it") from exc
        kind, params, domains, ntotal = footer["kind"], footer["params"], list(footer["domains"]), footer["ntotal"]
        tuning = footer.get("tuning")
        if kind not in INDEX_KINDS:
            raise IndexFileError(f"{path}: unknown index kind {kind!r}; this file needs a newer twingan")
        faiss_index, paths, codes = read_index_sections(path, footer)
        if not (faiss_index.ntotal == len(paths) == len(codes) == ntotal) or faiss_index.d != meta.dim:
            raise IndexFileError(f"{path}: inconsistent contents (counts or dimension disagree); rebuild the index")
        return cls(faiss_index, meta, kind, params, paths, codes, domains, device, tuning)
