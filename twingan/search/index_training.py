"""Training an approximate index: the training sample, the PCA in front of it, and the tuning of ``nprobe``."""
from __future__ import annotations

import math
import warnings
from typing import Any, Mapping

import faiss
import numpy as np

from twingan.errors import ConfigError
from twingan.search.brute_force import cosine_topk, recall_at_k
from twingan.search.index_plan import search_parameters

MAX_TRAIN_VECTORS = 131_072
PCA_TRAIN_VECTORS = 8_192
TUNE_TARGET_RECALL = 0.95
"""When ``nprobe`` is not given, the smallest value reaching this recall@10 on held-out training vectors is used."""
TUNE_QUERIES = 256
TUNE_GALLERY = 65_536


def training_subset(
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


def with_pca(pca: faiss.LinearTransform, inner: faiss.Index) -> faiss.IndexPreTransform:
    """pca -> L2 renormalisation -> inner, owned by the C++ object like a deserialized index."""
    normalize = faiss.NormalizationTransform(pca.d_out, 2.0)
    faiss_index = faiss.IndexPreTransform(inner)
    faiss_index.prepend_transform(normalize)
    faiss_index.prepend_transform(pca)
    faiss_index.own_fields = True
    for part in (inner, normalize, pca):
        part.this.disown()
    return faiss_index


def tune_nprobe(
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
        _, ids = probe_index.search(queries, k, params=search_parameters(probe_index, "ivf", nprobe=nprobe))
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
