"""The similar-face index and embeddings stores, checked against numpy brute-force cosine search."""
from __future__ import annotations

import json
import os
import struct

import faiss
import numpy as np
import pytest

import twingan.search.index_file as index_file_module
from twingan.cli.main import main
from twingan.errors import ConfigError, DatasetError
from twingan.search import EmbeddingMeta, EmbeddingMismatchError, EmbeddingStore, Index, IndexFileError
from twingan.search.brute_force import cosine_topk, l2_normalize, recall_at_k, streaming_cosine_topk
from twingan.search.index_plan import plan_index
from twingan.search.index_training import fit_pca

DIM = 32
META = EmbeddingMeta("a" * 64, "latent_flat", DIM, {"resolution": 64})


@pytest.fixture(autouse=True)
def one_faiss_thread():
    """Tiny indexes gain nothing from threads, and OpenMP threads crawl on a busy machine."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)


def random_unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    return l2_normalize(rng.standard_normal((n, dim)))


def clustered_unit(seed: int, n: int, dim: int, *, clusters: int = 64, intrinsic: int = 16) -> np.ndarray:
    """A gaussian mixture in a low-dimensional subspace plus a little full-dimensional noise (face-embedding-like)."""
    model = np.random.default_rng(1234)
    basis = np.linalg.qr(model.standard_normal((dim, intrinsic)))[0].T
    centers = model.standard_normal((clusters, intrinsic))
    rng = np.random.default_rng(seed)
    latent = centers[rng.integers(clusters, size=n)] + 0.6 * rng.standard_normal((n, intrinsic))
    return l2_normalize(latent @ basis + 0.05 * rng.standard_normal((n, dim)))


def names(n: int, prefix: str = "img") -> list[str]:
    return [f"{prefix}/{i:05d}.png" for i in range(n)]


def assert_matches_brute_force(result, queries: np.ndarray, gallery: np.ndarray, k: int) -> None:
    """Scores equal brute force; ids agree up to ties (every returned id has its returned score, none repeats)."""
    exact_scores, exact_ids = cosine_topk(queries, gallery, k)
    np.testing.assert_allclose(result.scores, exact_scores, atol=1e-5)
    true_scores = np.take_along_axis(queries @ gallery.T, result.ids, axis=1)
    np.testing.assert_allclose(result.scores, true_scores, atol=1e-5)
    for row, exact_row, exact_score_row in zip(result.ids, exact_ids, exact_scores):
        assert len(set(row.tolist())) == len(row)
        clear = exact_score_row > exact_score_row[-1] + 1e-5  # above the k-th score: no tie can reorder these
        assert set(exact_row[clear].tolist()) <= set(row.tolist())


# ------------------------------------------------------------------ exact search


def test_flat_index_equals_numpy_brute_force():
    rng = np.random.default_rng(0)
    gallery, queries = random_unit(rng, 500), random_unit(rng, 25)
    index = Index.build(gallery, names(500), META, domain="anime", kind="flat", device="cpu")
    result = index.search(queries, 10, META)
    assert result.scores.shape == result.ids.shape == (25, 10)
    assert_matches_brute_force(result, queries, gallery, 10)
    assert result.paths[3] == [f"img/{i:05d}.png" for i in result.ids[3]]
    assert result.domains[0] == ["anime"] * 10


def test_flat_index_with_tied_scores():
    rng = np.random.default_rng(1)
    base = random_unit(rng, 40)
    gallery = np.repeat(base, 3, axis=0)  # every score appears three times
    queries = random_unit(rng, 10)
    result = Index.build(gallery, names(120), META, domain="anime", kind="flat", device="cpu").search(queries, 7)
    assert_matches_brute_force(result, queries, gallery, 7)
    exact_scores, _ = cosine_topk(queries, gallery, 7)
    for got, want in zip(result.scores, exact_scores):
        assert sorted(np.round(got, 5)) == sorted(np.round(want, 5))


def test_k_larger_than_gallery_returns_everything_once():
    rng = np.random.default_rng(2)
    gallery, queries = random_unit(rng, 7), random_unit(rng, 3)
    index = Index.build(gallery, names(7), META, domain=["a", "a", "b", "a", "b", "b", "b"], kind="flat")
    result = index.search(queries, 20)
    assert result.ids.shape == (3, 7)
    assert all(sorted(row.tolist()) == list(range(7)) for row in result.ids)
    assert np.all(np.diff(result.scores, axis=1) <= 1e-6)
    only_a = index.search(queries, 20, domain="a")
    assert only_a.ids.shape == (3, 3)
    assert all(sorted(row.tolist()) == [0, 1, 3] for row in only_a.ids)


def test_domain_filter_equals_brute_force_on_that_domain():
    rng = np.random.default_rng(3)
    gallery, queries = random_unit(rng, 300), random_unit(rng, 12)
    domains = ["human" if i % 3 else "anime" for i in range(300)]
    index = Index.build(gallery, names(300), META, domain=domains, kind="flat")
    anime_rows = np.array([i for i, d in enumerate(domains) if d == "anime"])
    result = index.search(queries, 5, domain="anime")
    exact_scores, exact_local = cosine_topk(queries, gallery[anime_rows], 5)
    np.testing.assert_allclose(result.scores, exact_scores, atol=1e-5)
    np.testing.assert_array_equal(result.ids, anime_rows[exact_local])
    assert {d for row in result.domains for d in row} == {"anime"}
    with pytest.raises(ConfigError, match="no domain 'cat'"):
        index.search(queries, 5, domain="cat")


def test_empty_gallery_is_a_clear_error():
    with pytest.raises(DatasetError, match="empty"):
        Index.build(np.zeros((0, DIM), np.float32), [], META, domain="anime")
    empty = Index.create(META, kind="flat", expected_size=10)
    with pytest.raises(DatasetError, match="empty"):
        empty.search(random_unit(np.random.default_rng(0), 1), 5)


def test_add_to_existing_index_matches_building_at_once():
    rng = np.random.default_rng(4)
    gallery, queries = random_unit(rng, 400), random_unit(rng, 10)
    index = Index.build(gallery[:150], names(400)[:150], META, domain="human", kind="flat")
    index.add(gallery[150:], names(400)[150:], META, domain="anime")
    assert index.ntotal == 400
    assert index.domain_counts() == {"human": 150, "anime": 250}
    result = index.search(queries, 10, META)
    assert_matches_brute_force(result, queries, gallery, 10)
    assert all(p == f"img/{i:05d}.png" for row, ids in zip(result.paths, result.ids) for p, i in zip(row, ids))


def test_add_rejects_repeated_paths():
    rng = np.random.default_rng(5)
    index = Index.build(random_unit(rng, 20), names(20), META, domain="anime", kind="flat")
    with pytest.raises(DatasetError, match="already in the index"):
        index.add(random_unit(rng, 2), ["img/00003.png", "new.png"], META, domain="anime")
    assert index.ntotal == 20


@pytest.mark.parametrize(
    "other",
    [
        EmbeddingMeta("b" * 64, "latent_flat", DIM),
        EmbeddingMeta("a" * 64, "latent_pooled", DIM),
        EmbeddingMeta("a" * 64, "latent_flat", 2 * DIM),
    ],
    ids=["checkpoint", "kind", "dim"],
)
def test_meta_mismatch_on_add_and_search(other):
    rng = np.random.default_rng(6)
    index = Index.build(random_unit(rng, 50), names(50), META, domain="anime", kind="flat")
    vectors = random_unit(rng, 3, other.dim)
    with pytest.raises(EmbeddingMismatchError, match="does not match the index"):
        index.add(vectors, ["x1", "x2", "x3"], other, domain="anime")
    with pytest.raises(EmbeddingMismatchError, match="does not match the index"):
        index.search(vectors, 5, other)
    assert index.ntotal == 50


def test_search_rejects_wrong_dimension_and_unnormalised_queries():
    rng = np.random.default_rng(7)
    index = Index.build(random_unit(rng, 50), names(50), META, domain="anime", kind="flat")
    with pytest.raises(DatasetError, match=r"shape \(n, 32\)"):
        index.search(random_unit(rng, 2, DIM + 1), 5)
    with pytest.raises(DatasetError, match="not L2-normalised"):
        index.search(3.0 * random_unit(rng, 2), 5)
    with pytest.raises(ConfigError, match="k must be"):
        index.search(random_unit(rng, 2), 0)


# ------------------------------------------------------------------ approximate search


def test_plan_index_by_size():
    assert plan_index("auto", 1_000, 256) == ("flat", {})
    kind, params = plan_index("auto", 1_000_000, 4096)
    assert kind == "ivf_sq8" and params == {"pca_dim": 256, "nlist": 2048, "nprobe": None}
    kind, params = plan_index("auto", 20_000_000, 4096)
    assert kind == "ivf_pq" and params["pq_m"] == 128
    assert plan_index("ivf_sq8", 100_000, 128, nprobe=7)[1] == {"pca_dim": None, "nlist": 512, "nprobe": 7}
    with pytest.raises(ConfigError, match="no parameter nlist"):
        plan_index("hnsw", 1000, 64, nlist=8)
    with pytest.raises(ConfigError, match="unknown index kind"):
        plan_index("lsh", 1000, 64)


# Stated bounds: recall@10 against exact search on clustered data (8k vectors, 384-d projected to 256 by PCA).
RECALL_BOUNDS = {"ivf_sq8": 0.9, "hnsw": 0.9}


@pytest.mark.parametrize("kind", sorted(RECALL_BOUNDS))
def test_approximate_recall_against_exact(kind):
    dim = 384
    meta = EmbeddingMeta("a" * 64, "latent_flat", dim)
    gallery, queries = clustered_unit(0, 8000, dim), clustered_unit(1, 200, dim)
    index = Index.build(gallery, names(8000), meta, domain="anime", kind=kind, device="cpu")
    assert index.params["pca_dim"] == 256
    _, exact_ids = cosine_topk(queries, gallery, 10)
    recall = recall_at_k(index.search(queries, 10, meta).ids, exact_ids, 10)
    assert recall >= RECALL_BOUNDS[kind], recall
    if kind == "ivf_sq8":
        tuning = index.tuning
        assert tuning["recall_at_10"] >= min(0.95, tuning["all_lists_recall_at_10"] - 0.01)
        assert tuning["nprobe"] == index.params["nprobe"] < index.params["nlist"]


def test_ivf_pq_recall_and_tuning_ceiling():
    """PQ codes (a byte per 2 dims) cap recall below the tuning target: nprobe stops at the plateau, with a warning."""
    dim = 32
    meta = EmbeddingMeta("a" * 64, "latent_flat", dim)
    gallery, queries = clustered_unit(0, 4000, dim), clustered_unit(1, 200, dim)
    with pytest.warns(UserWarning, match="reaches only recall@10"):
        index = Index.build(gallery, names(4000), meta, domain="anime", kind="ivf_pq", device="cpu")
    assert index.params["pq_m"] == 16
    tuning = index.tuning
    assert tuning["recall_at_10"] >= tuning["all_lists_recall_at_10"] - 0.01
    _, exact_ids = cosine_topk(queries, gallery, 10)
    assert recall_at_k(index.search(queries, 10, meta).ids, exact_ids, 10) >= 0.75


def test_randomized_pca_keeps_the_exact_leading_subspace():
    vectors = clustered_unit(9, 3000, 96)
    transform = fit_pca(vectors, 12)
    centered = vectors - vectors.mean(axis=0)
    exact = np.linalg.eigh(centered.T.astype(np.float64) @ centered)[1][:, ::-1][:, :12]
    projected = transform.apply(vectors[:500])
    np.testing.assert_allclose(projected, (vectors[:500] - vectors.mean(axis=0)) @ faiss.vector_to_array(
        transform.A).reshape(12, 96).T, atol=1e-4)
    kept = np.sum(projected**2)
    kept_exact = np.sum(((vectors[:500] - vectors.mean(axis=0)) @ exact) ** 2)
    assert kept >= 0.99 * kept_exact


def test_ivf_add_to_existing_keeps_ids_and_paths():
    dim = 64
    meta = EmbeddingMeta("a" * 64, "latent_flat", dim)
    gallery, queries = clustered_unit(2, 4000, dim), clustered_unit(3, 50, dim)
    index = Index.build(gallery[:3000], names(4000)[:3000], meta, domain="anime", kind="ivf_sq8", nlist=32)
    index.add(gallery[3000:], names(4000)[3000:], meta, domain="anime")
    result = index.search(queries, 10, meta, nprobe=32)  # all lists: only the 8-bit codes are approximate
    exact_scores, exact_ids = cosine_topk(queries, gallery, 10)
    assert recall_at_k(result.ids, exact_ids, 10) >= 0.95
    np.testing.assert_allclose(result.scores, exact_scores, atol=0.02)
    assert any(i >= 3000 for row in result.ids for i in row)
    assert all(p == f"img/{i:05d}.png" for row, ids in zip(result.paths, result.ids) for p, i in zip(row, ids))


def test_streaming_brute_force_equals_in_memory():
    rng = np.random.default_rng(8)
    gallery, queries = random_unit(rng, 1000), random_unit(rng, 5)
    chunks = np.array_split(gallery, 7)
    scores, ids = streaming_cosine_topk(queries, chunks, 10)
    exact_scores, exact_ids = cosine_topk(queries, gallery, 10)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-6)
    np.testing.assert_array_equal(ids, exact_ids)


# ------------------------------------------------------------------ files


@pytest.mark.parametrize("kind", ["flat", "ivf_sq8", "hnsw"])
def test_save_load_round_trip(tmp_path, kind):
    gallery, queries = clustered_unit(4, 2000, DIM), clustered_unit(5, 20, DIM)
    domains = ["human" if i % 2 else "anime" for i in range(2000)]
    index = Index.build(gallery, names(2000), META, domain=domains, kind=kind, device="cpu")
    path = tmp_path / "gallery.twgidx"
    index.save(path)
    loaded = Index.load(path, device="cpu")
    assert (loaded.kind, loaded.params, loaded.tuning, loaded.meta) == (index.kind, index.params, index.tuning, META)
    assert loaded.meta.model == {"resolution": 64}
    assert loaded.paths == index.paths and loaded.domain_counts() == {"anime": 1000, "human": 1000}
    before, after = index.search(queries, 10, META), loaded.search(queries, 10, META)
    np.testing.assert_array_equal(before.ids, after.ids)
    np.testing.assert_allclose(before.scores, after.scores, atol=1e-6)
    assert before.paths == after.paths
    assert os.listdir(tmp_path) == ["gallery.twgidx"]


def test_crash_mid_save_leaves_the_old_index(tmp_path, monkeypatch):
    rng = np.random.default_rng(9)
    path = tmp_path / "gallery.twgidx"
    Index.build(random_unit(rng, 30), names(30), META, domain="anime", kind="flat").save(path)
    old_bytes = path.read_bytes()
    bigger = Index.build(random_unit(rng, 60), names(60), META, domain="anime", kind="flat")

    def crash_after_partial_write(fh, data):
        fh.write(data[: len(data) // 2])
        raise OSError("No space left on device (simulated)")

    monkeypatch.setattr(index_file_module, "_write_bytes_section", crash_after_partial_write)
    with pytest.raises(OSError, match="simulated"):
        bigger.save(path)
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["gallery.twgidx"]
    assert Index.load(path).ntotal == 30


def test_foreign_truncated_and_corrupted_files_are_clear_errors(tmp_path):
    rng = np.random.default_rng(10)
    path = tmp_path / "gallery.twgidx"
    Index.build(random_unit(rng, 100), names(100), META, domain="anime", kind="flat").save(path)
    data = path.read_bytes()

    foreign = tmp_path / "photo.png"
    foreign.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(IndexFileError, match="not a twingan index"):
        Index.load(foreign)
    with pytest.raises(IndexFileError, match="no such index file"):
        Index.load(tmp_path / "missing.twgidx")

    truncated = tmp_path / "truncated.twgidx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFileError, match="truncated"):
        Index.load(truncated)

    corrupted = tmp_path / "corrupted.twgidx"
    flipped = bytearray(data)
    flipped[200] ^= 0xFF  # inside the stored vectors
    corrupted.write_bytes(bytes(flipped))
    with pytest.raises(IndexFileError, match="corrupted"):
        Index.load(corrupted)

    newer = tmp_path / "newer.twgidx"
    newer.write_bytes(data[:8] + struct.pack("<I", 99) + data[12:])
    with pytest.raises(IndexFileError, match="version 99 is not supported"):
        Index.load(newer)


# ------------------------------------------------------------------ embeddings stores


def test_embeddings_store_append_resume_and_load(tmp_path):
    rng = np.random.default_rng(11)
    vectors = random_unit(rng, 50)
    paths = names(50, "anime")
    store = EmbeddingStore.create(tmp_path / "anime.emb", META, "anime")
    store.append(vectors[:20], paths[:20])
    store.append(vectors[20:35], paths[20:35])

    resumed = EmbeddingStore.open_or_create(tmp_path / "anime.emb", META, "anime")
    todo = [i for i, p in enumerate(paths) if p not in resumed.existing_paths()]
    assert todo == list(range(35, 50))
    resumed.append(vectors[todo], [paths[i] for i in todo])

    reopened = EmbeddingStore.open(tmp_path / "anime.emb")
    assert (reopened.meta, reopened.domain, len(reopened)) == (META, "anime", 50)
    assert reopened.meta.model == {"resolution": 64}
    loaded, loaded_paths = reopened.load()
    np.testing.assert_array_equal(loaded, vectors)
    assert loaded_paths == paths
    assert reopened.validate() == 50
    sample = reopened.sample(10, seed=3)
    assert sample.shape == (10, DIM)
    assert all(np.any(np.all(vectors == row, axis=1)) for row in sample)


def test_embeddings_store_refuses_mismatches_and_bad_vectors(tmp_path):
    rng = np.random.default_rng(12)
    folder = tmp_path / "anime.emb"
    store = EmbeddingStore.create(folder, META, "anime")
    store.append(random_unit(rng, 5), names(5))
    with pytest.raises(EmbeddingMismatchError, match="checkpoint_sha256"):
        EmbeddingStore.open_or_create(folder, EmbeddingMeta("c" * 64, "latent_flat", DIM), "anime")
    with pytest.raises(DatasetError, match="domain 'anime'"):
        EmbeddingStore.open_or_create(folder, META, "cat")
    with pytest.raises(DatasetError, match="already in the store"):
        store.append(random_unit(rng, 1), ["img/00002.png"])
    with pytest.raises(DatasetError, match="not L2-normalised"):
        store.append(2 * random_unit(rng, 1), ["new.png"])
    with pytest.raises(DatasetError, match="not an empty folder"):
        EmbeddingStore.create(folder, META, "anime")
    with pytest.raises(DatasetError, match="not an embeddings store"):
        EmbeddingStore.open(tmp_path)
    assert len(EmbeddingStore.open(folder)) == 5


def test_embeddings_store_survives_a_crash_between_paths_and_vectors(tmp_path):
    rng = np.random.default_rng(13)
    folder = tmp_path / "anime.emb"
    store = EmbeddingStore.create(folder, META, "anime")
    store.append(random_unit(rng, 4), names(4))
    (folder / "shard_000001.paths.json").write_text(json.dumps(["lost/1.png", "lost/2.png"]))  # no .npy: never committed
    resumed = EmbeddingStore.open_or_create(folder, META, "anime")
    assert len(resumed) == 4 and "lost/1.png" not in resumed.existing_paths()
    resumed.append(random_unit(rng, 2), ["lost/1.png", "lost/2.png"])
    assert EmbeddingStore.open(folder).validate() == 6

    shard = folder / "shard_000000.npy"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(DatasetError, match="shard_000000.npy: unreadable or truncated"):
        EmbeddingStore.open(folder).validate()


# ------------------------------------------------------------------ command line


def make_store(folder, vectors, paths, domain, meta=META) -> None:
    store = EmbeddingStore.create(folder, meta, domain)
    for start in range(0, len(paths), 40):
        store.append(vectors[start : start + 40], paths[start : start + 40])


def test_cli_build_info_add_and_query(tmp_path, capsys):
    rng = np.random.default_rng(14)
    human, anime, queries = random_unit(rng, 100), random_unit(rng, 120), random_unit(rng, 4)
    make_store(tmp_path / "human.emb", human, names(100, "human"), "human")
    make_store(tmp_path / "anime.emb", anime[:80], names(120, "anime")[:80], "anime")
    make_store(tmp_path / "queries.emb", queries, names(4, "selfie"), "human")
    index_path = tmp_path / "gallery.twgidx"

    assert main(["index", "build", str(tmp_path / "human.emb"), str(tmp_path / "anime.emb"),
                 "--out", str(index_path), "--kind", "flat"]) == 0
    capsys.readouterr()
    assert main(["index", "info", str(index_path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["ntotal"] == 180 and info["kind"] == "flat"
    assert info["domain_counts"] == {"human": 100, "anime": 80}
    assert info["embedding"]["checkpoint_sha256"] == META.checkpoint_sha256

    resumed = EmbeddingStore.open_or_create(tmp_path / "anime.emb", META, "anime")
    resumed.append(anime[80:], names(120, "anime")[80:])
    assert main(["index", "add", str(index_path), str(tmp_path / "anime.emb")]) == 0
    assert "added 40 embeddings, skipped 80" in capsys.readouterr().out

    assert main(["index", "query", str(index_path), "--vectors", str(tmp_path / "queries.emb"),
                 "--k", "5", "--domain", "anime", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    exact_scores, exact_ids = cosine_topk(queries, anime, 5)
    assert [line["query"] for line in lines] == names(4, "selfie")
    for line, scores, ids in zip(lines, exact_scores, exact_ids):
        assert [hit["path"] for hit in line["results"]] == [f"anime/{i:05d}.png" for i in ids]
        np.testing.assert_allclose([hit["score"] for hit in line["results"]], scores, atol=1e-5)

    assert main(["index", "info", str(tmp_path / "anime.emb"), "--validate"]) == 0
    store_info = json.loads(capsys.readouterr().out)
    assert (store_info["count"], store_info["domain"], store_info["shards"]) == (120, "anime", 3)


def test_cli_reports_mismatched_stores_and_bad_files(tmp_path, capsys):
    rng = np.random.default_rng(15)
    make_store(tmp_path / "a.emb", random_unit(rng, 10), names(10), "anime")
    other = EmbeddingMeta("f" * 64, "latent_flat", DIM)
    make_store(tmp_path / "b.emb", random_unit(rng, 10), names(10, "b"), "human", other)
    assert main(["index", "build", str(tmp_path / "a.emb"), str(tmp_path / "b.emb"),
                 "--out", str(tmp_path / "x.twgidx")]) == 1
    assert "does not match" in capsys.readouterr().err
    assert not (tmp_path / "x.twgidx").exists()
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["index", "info", str(tmp_path / "notes.txt")]) == 1
    assert "not a twingan index file" in capsys.readouterr().err


@pytest.mark.skipif(faiss.get_num_gpus() == 0, reason="needs a GPU visible to FAISS")
def test_gpu_search_matches_cpu():
    dim = 64
    meta = EmbeddingMeta("a" * 64, "latent_flat", dim)
    gallery, queries = clustered_unit(6, 5000, dim), clustered_unit(7, 50, dim)
    for kind in ("flat", "ivf_sq8"):
        cpu = Index.build(gallery, names(5000), meta, domain="anime", kind=kind, device="cpu")
        gpu = Index.build(gallery, names(5000), meta, domain="anime", kind=kind, device="gpu")
        assert gpu.device == "gpu"
        assert recall_at_k(gpu.search(queries, 10).ids, cpu.search(queries, 10).ids, 10) >= 0.95
