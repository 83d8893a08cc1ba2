"""Search results as text: a block per query (rank, cosine similarity, domain, path of each hit) or JSON lines."""
from __future__ import annotations

import json
import sys
from typing import Sequence, TextIO

import numpy as np

from twingan.search.embeddings_store import EmbeddingMeta
from twingan.search.index import Index, SearchResult


def print_search_results(
    index: Index,
    queries: np.ndarray,
    query_meta: EmbeddingMeta,
    labels: Sequence[str],
    *,
    k: int,
    domain: str | None = None,
    as_json: bool = False,
    out: TextIO | None = None,
) -> SearchResult:
    """Search ``queries`` (unit rows made with ``query_meta``, which is checked) and print the hits per query.

    ``labels`` name the queries in the output (their image paths). Text output is a
    block per query: rank, cosine similarity, domain and path of each hit; ``as_json``
    prints one JSON object per query instead. Returns the search result.
    """
    out = out or sys.stdout
    result = index.search(queries, k, query_meta, domain=domain)
    for label, scores, paths, domains in zip(labels, result.scores, result.paths, result.domains):
        hits = [
            {"rank": rank, "score": round(float(score), 6), "domain": hit_domain, "path": path}
            for rank, (score, hit_domain, path) in enumerate(zip(scores, domains, paths), start=1)
        ]
        if as_json:
            print(json.dumps({"query": label, "results": hits}), file=out)
            continue
        print(f"{label}", file=out)
        for hit in hits:
            print(f"  {hit['rank']:>3}  {hit['score']:.4f}  {hit['domain']:<10}  {hit['path']}", file=out)
    return result
