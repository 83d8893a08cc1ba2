"""Cross-domain retrieval scores: recall@k of finding a face's paired twin in the other domain, per embedding kind.

On the synthetic paired test set every face exists as a photo and as an anime
drawing. Each face of one style is a query, the other style is the gallery,
and recall@k is the share of queries whose own twin is among the k most
cosine-similar gallery faces (:func:`twin_recall_at_k`; not to be confused with
:func:`twingan.search.brute_force.recall_at_k`, an approximate index's overlap
with exact search). Kinds are those of :meth:`twingan.models.TwinGAN.embed`:
``full`` (the flattened 4x4 latent) and ``pooled`` (its spatial mean); any system
with ``embed(x, domain, kind)`` can be scored (e.g. :class:`~twingan.metrics.paired.PixelBaseline`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from twingan.metrics.paired import PairedTestSet, Translatable, require_finite
from twingan.models import EMBEDDING_KINDS

DIRECTIONS = (("photo", "anime"), ("anime", "photo"))


def twin_recall_at_k(queries: np.ndarray, gallery: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Fraction of queries i whose own twin (gallery row i) is among the k most cosine-similar gallery rows."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(1e-12)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True).clip(1e-12)
    sims = q @ g.T
    own = np.diag(sims)
    rank = np.where(np.isfinite(own), (sims > own[:, None]).sum(axis=1), len(g))  # NaN never ties as a hit
    return {k: float((rank < k).mean()) for k in ks}


def metric_name(src: str, dst: str, kind: str, k: int) -> str:
    """``photo2anime/recall@5`` for full embeddings (the eval name), ``photo2anime/pooled_recall@5`` otherwise."""
    prefix = "" if kind == "full" else f"{kind}_"
    return f"{src}2{dst}/{prefix}recall@{k}"


@torch.no_grad()
def embed_styles(
    model: Translatable, test_set: PairedTestSet, style_domains: Mapping[str, str], kind: str, batch_size: int = 64
) -> dict[str, np.ndarray]:
    """style -> (N, D) embeddings of the test faces of that style, each with its own domain's normalisation."""
    parameters = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
    device = parameters[0].device if parameters else torch.device("cpu")
    embeddings = {}
    for style, images in test_set.images.items():
        chunks = [
            model.embed(chunk.to(device), style_domains[style], kind).float().cpu()
            for chunk in images.split(batch_size)
        ]
        embeddings[style] = require_finite(torch.cat(chunks), "embeddings").numpy()
    return embeddings


def embedding_recall(
    model: Translatable,
    test_set: PairedTestSet,
    style_domains: Mapping[str, str],
    kinds: Sequence[str] = EMBEDDING_KINDS,
    ks: Sequence[int] = (1, 5, 10),
    batch_size: int = 64,
) -> dict[str, float]:
    """Cross-domain recall@k per kind and direction, named by :func:`metric_name`."""
    unknown = set(kinds) - set(EMBEDDING_KINDS)
    if unknown:
        raise ValueError(f"embedding kinds must be among {list(EMBEDDING_KINDS)}, got {sorted(unknown)}")
    scores: dict[str, float] = {}
    for kind in kinds:
        embeddings = embed_styles(model, test_set, style_domains, kind, batch_size)
        for src, dst in DIRECTIONS:
            for k, value in twin_recall_at_k(embeddings[src], embeddings[dst], ks).items():
                scores[metric_name(src, dst, kind, k)] = value
    return scores
