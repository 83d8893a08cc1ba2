"""Planning an index: which kind for how many vectors, its parameters, and the FAISS objects they describe."""
from __future__ import annotations

import math
from typing import Any, Mapping

import faiss
import numpy as np

from twingan.errors import ConfigError

INDEX_KINDS = ("flat", "ivf_sq8", "ivf_pq", "hnsw")
AUTO_FLAT_MAX_ELEMENTS = 1 << 24
"""``auto`` picks the exact flat index while vectors x dims stays below this (64 MiB of
float32, e.g. 4k x 4096 or 65k x 256): a brute-force scan reads the whole gallery per
query, which stays within a few ms at this size (see BENCHMARKS.md)."""
AUTO_SQ8_MAX_BYTES = 2 << 30
"""``auto`` switches from SQ8 codes to PQ codes when the SQ8 codes would exceed this."""
AUTO_PCA_DIM = 256
"""``auto`` projects vectors with more dimensions than this onto this many principal components."""

_PARAM_DEFAULTS: dict[str, dict[str, Any]] = {
    "flat": {},
    "ivf_sq8": {"pca_dim": None, "nlist": None, "nprobe": None},
    "ivf_pq": {"pca_dim": None, "nlist": None, "nprobe": None, "pq_m": None, "pq_nbits": 8},
    "hnsw": {"pca_dim": None, "hnsw_m": 32, "ef_construction": 80, "ef_search": 128},
}


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


def search_parameters(
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
