"""Reference cosine top-k in plain numpy: the ground truth for tests and the benchmark baseline.

Vectors are expected to be L2-normalised, so cosine similarity is the inner
product. Results are ordered by decreasing score; equal scores are ordered by
increasing id so that the output is deterministic.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np


def l2_normalize(vectors: np.ndarray, *, eps: float = 1e-12) -> np.ndarray:
    """Return float32 copies of ``vectors`` (rows) scaled to unit L2 norm; zero rows raise ValueError."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    if np.any(norms <= eps):
        raise ValueError("cannot L2-normalise a zero vector")
    return vectors / norms


def cosine_topk(queries: np.ndarray, gallery: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product of ``queries`` (nq, d) against ``gallery`` (n, d).

    Returns ``(scores, ids)`` of shape (nq, min(k, n)), best first.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    gallery = np.asarray(gallery, dtype=np.float32)
    k = min(int(k), gallery.shape[0])
    if k <= 0:
        return np.zeros((queries.shape[0], 0), np.float32), np.zeros((queries.shape[0], 0), np.int64)
    scores = queries @ gallery.T
    return _topk_rows(scores, np.arange(gallery.shape[0], dtype=np.int64), k)


def streaming_cosine_topk(
    queries: np.ndarray, gallery_chunks: Iterable[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over a gallery given as consecutive chunks (ids continue across chunks).

    Lets the benchmark compute ground truth for galleries that do not fit in memory.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    best_scores = np.zeros((queries.shape[0], 0), np.float32)
    best_ids = np.zeros((queries.shape[0], 0), np.int64)
    offset = 0
    for chunk in gallery_chunks:
        chunk = np.asarray(chunk, dtype=np.float32)
        scores = np.concatenate([best_scores, queries @ chunk.T], axis=1)
        ids = np.concatenate(
            [best_ids, np.broadcast_to(np.arange(offset, offset + chunk.shape[0]), (queries.shape[0], chunk.shape[0]))],
            axis=1,
        )
        best_scores, best_ids = _topk_rows_with_ids(scores, ids, min(k, scores.shape[1]))
        offset += chunk.shape[0]
    return best_scores, best_ids


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    """Mean fraction of the exact top-k ids found in the approximate top-k (per query, then averaged)."""
    hits = 0
    for approx_row, exact_row in zip(approx_ids[:, :k], exact_ids[:, :k]):
        hits += len(set(approx_row.tolist()) & set(exact_row.tolist()))
    return hits / (exact_ids.shape[0] * k)


def _topk_rows(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    return _topk_rows_with_ids(scores, np.broadcast_to(ids, scores.shape), k)


def _topk_rows_with_ids(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        scores = np.take_along_axis(scores, part, axis=1)
        ids = np.take_along_axis(ids, part, axis=1)
    order = np.lexsort((ids, -scores), axis=1)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1).astype(np.int64)
