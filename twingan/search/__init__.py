"""Cross-domain similar-face search: embeddings stores and the FAISS index over them.

    from twingan.search import EmbeddingMeta, EmbeddingStore, Index

    store = EmbeddingStore.open("anime.emb")
    vectors, paths = store.load()
    index = Index.build(vectors, paths, store.meta, domain=store.domain)
    index.save("anime.twgidx")
    hits = Index.load("anime.twgidx").search(query_vectors, k=10, meta=query_meta)
"""
from twingan.search.embeddings_store import EmbeddingMeta, EmbeddingMismatchError, EmbeddingStore
from twingan.search.index import Index, SearchResult
from twingan.search.index_file import IndexFileError

__all__ = ["EmbeddingMeta", "EmbeddingMismatchError", "EmbeddingStore", "Index", "IndexFileError", "SearchResult"]
