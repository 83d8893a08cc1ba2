"""A gallery index from embeddings stores: open comparable stores, sample training vectors, add their shards.

Stores are read shard by shard, so a gallery larger than memory can be indexed;
approximate index kinds are trained on a sample drawn across the stores.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from twingan.search.embeddings_store import EmbeddingStore
from twingan.search.index import Index
from twingan.utils.progress import progress_bar


def open_stores(folders: Sequence[Path]) -> list[EmbeddingStore]:
    """Open stores and check they hold comparable embeddings (same checkpoint, kind, dimension)."""
    stores = [EmbeddingStore.open(folder) for folder in folders]
    for store in stores[1:]:
        store.meta.check_matches(stores[0].meta, this=f"embeddings store {store.path}", that=f"{stores[0].path}")
    return stores


def training_sample(stores: Sequence[EmbeddingStore], sizes: Sequence[int], count: int) -> np.ndarray:
    """Up to ``count`` vectors drawn from the stores in proportion to their sizes."""
    total = sum(sizes)
    picks = [store.sample(max(1, round(count * size / total)), seed=i) for i, (store, size) in
             enumerate(zip(stores, sizes)) if size]
    return np.concatenate(picks)


def add_stores(index: Index, stores: Sequence[EmbeddingStore], *, skip_existing: bool) -> tuple[int, int]:
    """Add every shard of ``stores`` with a progress bar on stderr; return (added, skipped).

    ``skip_existing``: leave out the paths the index holds already (re-adding a store that grew).
    """
    known = set(index.paths) if skip_existing else set()
    added = skipped = 0
    with progress_bar(total=sum(len(s) for s in stores), unit="vec", desc="indexing", file=sys.stderr) as bar:
        for store in stores:
            for vectors, paths in store.iter_shards():
                keep = [i for i, p in enumerate(paths) if p not in known]
                if keep:
                    index.add(np.asarray(vectors)[keep], [paths[i] for i in keep], store.meta, domain=store.domain)
                added += len(keep)
                skipped += len(paths) - len(keep)
                bar.update(len(paths))
    return added, skipped
