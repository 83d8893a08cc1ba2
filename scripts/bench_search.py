"""Similar-face index benchmark: build time, memory, query latency and recall@10 against exact search.

Galleries are synthetic clustered unit vectors with a low intrinsic dimension
(like face embeddings: a few dozen directions of variation carry most of the
energy), projected into ``dim`` dimensions with a little isotropic noise on top.
Queries are fresh draws from the same distribution, not gallery members.
Ground truth is exact cosine top-10 in numpy over the full-dimension vectors.

For every (size, dim, kind) the index is built in this process, saved, then
loaded by a fresh child process which runs the queries: its RSS growth is the
memory a search service needs, and its latencies are what a service sees.
Galleries larger than ``--max-gallery-gb`` are streamed (generated, indexed and
scored against the queries chunk by chunk) and never held in memory; the numpy
brute-force baseline is then skipped.

    python scripts/bench_search.py --sizes 10000 100000 --dims 4096 256 --kinds auto flat ivf_sq8 ivf_pq hnsw
    python scripts/bench_search.py --sizes 1000000 --dims 256 4096 --kinds auto
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning threads
# starve each other and single-query latency jumps from ~1 ms to ~40 ms. Must precede `import faiss`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from twingan.search.brute_force import cosine_topk, recall_at_k, streaming_cosine_topk  # noqa: E402
from twingan.search.embeddings_store import EmbeddingMeta  # noqa: E402
from twingan.search.index import Index  # noqa: E402
from twingan.search.index_training import MAX_TRAIN_VECTORS  # noqa: E402

K = 10
CHUNK = 65_536


class ClusteredGenerator:
    """Deterministic gaussian-mixture unit vectors: chunk ``i`` is the same on every call."""

    def __init__(self, dim: int, *, seed: int = 0, clusters: int = 2048, intrinsic_dim: int = 64,
                 spread: float = 0.6, noise_fraction: float = 0.1) -> None:
        rng = np.random.default_rng(seed)
        intrinsic_dim = min(intrinsic_dim, dim)  # a small test dimension has no room for more
        self.dim, self.seed, self.spread = dim, seed, spread
        basis, _ = np.linalg.qr(rng.standard_normal((dim, intrinsic_dim)))
        self.basis = basis.T.astype(np.float32)
        self.centers = rng.standard_normal((clusters, intrinsic_dim)).astype(np.float32)
        latent_energy = intrinsic_dim * (1 + spread**2)
        self.noise_std = float(np.sqrt(noise_fraction * latent_energy / dim))

    def chunk(self, stream: int, index: int, size: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, stream, index])
        labels = rng.integers(len(self.centers), size=size)
        latent = self.centers[labels] + self.spread * rng.standard_normal((size, self.basis.shape[0]), np.float32)
        vectors = latent @ self.basis
        vectors += self.noise_std * rng.standard_normal((size, self.dim), np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors

    def gallery(self, size: int) -> Iterator[np.ndarray]:
        for index, start in enumerate(range(0, size, CHUNK)):
            yield self.chunk(0, index, min(CHUNK, size - start))

    def queries(self, count: int) -> np.ndarray:
        return self.chunk(1, 0, count)


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def latency_ms(search, queries: np.ndarray, batch: int, repeats: int) -> tuple[float, float]:
    """p50 and p99 in ms of ``search(batch of queries)`` over ``repeats`` batches."""
    rng = np.random.default_rng(0)
    times = []
    search(queries[:batch])  # warm-up
    for _ in range(repeats):
        rows = rng.choice(len(queries), size=batch, replace=False)
        batch_queries = np.ascontiguousarray(queries[rows])
        start = time.perf_counter()
        search(batch_queries)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def serve(index_path: str, queries_path: str, ids_dir: str, threads: int, nprobes: list[int | None],
          device: str = "cpu") -> None:
    """Child process: load the index, run the queries with each nprobe (None: the recorded one),
    print the RSS growth and latencies as JSON and save the result ids."""
    faiss.omp_set_num_threads(threads)
    queries = np.load(queries_path)
    baseline = rss_bytes()
    start = time.perf_counter()
    index = Index.load(index_path, device=device)
    load_s = time.perf_counter() - start
    rows = []
    for position, nprobe in enumerate(nprobes):
        def search(q: np.ndarray) -> object:
            return index.search(q, K, nprobe=nprobe)

        np.save(Path(ids_dir) / f"ids_{position}.npy", search(queries).ids)
        p50_1, p99_1 = latency_ms(search, queries, 1, min(len(queries), 300))
        p50_100, p99_100 = latency_ms(search, queries, 100, 30)
        rows.append({"nprobe": nprobe, "load_s": load_s, "p50_1": p50_1, "p99_1": p99_1, "p50_100": p50_100,
                     "p99_100": p99_100})
    rss_mb = (rss_bytes() - baseline) / 2**20
    print(json.dumps([{**row, "rss_mb": rss_mb} for row in rows]))


def bench_kind(kind: str, generator: ClusteredGenerator, size: int, queries: np.ndarray,
               exact_ids: np.ndarray | None, gallery: np.ndarray | None, workdir: Path, threads: int,
               nprobe_sweep: list[int], device: str = "cpu") -> list[dict]:
    """Build, save and serve one index. Without ``gallery`` the gallery is streamed and, if ``exact_ids``
    is None too, the exact top-k is computed from the same chunks as they are added."""
    meta = EmbeddingMeta("0" * 64, "synthetic", generator.dim)
    rss_before = rss_bytes()
    start = time.perf_counter()
    if gallery is not None:
        index = Index.build(gallery, [str(i) for i in range(size)], meta, domain="synthetic", kind=kind, device="cpu")
        build_s = time.perf_counter() - start
    else:
        train = np.concatenate([c for _, c in zip(range(MAX_TRAIN_VECTORS // CHUNK), generator.gallery(size))])
        start = time.perf_counter()
        index = Index.create(meta, kind=kind, train_vectors=train, expected_size=size, device="cpu")
        build_s = time.perf_counter() - start
        del train
        timings = []

        def add_chunks() -> Iterator[np.ndarray]:
            offset = 0
            for chunk in generator.gallery(size):
                add_start = time.perf_counter()
                index.add(chunk, [str(i) for i in range(offset, offset + len(chunk))], meta, domain="synthetic")
                timings.append(time.perf_counter() - add_start)
                offset += len(chunk)
                yield chunk

        if exact_ids is None:
            _, exact_ids = streaming_cosine_topk(queries, add_chunks(), K)
        else:
            for _ in add_chunks():
                pass
        build_s += sum(timings)
    build_rss_mb = (rss_bytes() - rss_before) / 2**20
    index_path = workdir / f"{kind}.twgidx"
    index.save(index_path)
    info = index.info()
    del index
    queries_path = workdir / "queries.npy"
    np.save(queries_path, queries)
    nprobes = [None] + (nprobe_sweep if info["kind"].startswith("ivf") else [])
    child = subprocess.run(
        [sys.executable, __file__, "--serve", str(index_path), str(queries_path), str(workdir), str(threads),
         ",".join("" if n is None else str(n) for n in nprobes), device],
        check=True, capture_output=True, text=True)
    served = json.loads(child.stdout.strip().splitlines()[-1])
    tuned = info["tuning"] or {}
    name = f"{kind}->{info['kind']}" if kind == "auto" else kind
    params = {k: v for k, v in info["params"].items() if v is not None}
    rows = []
    for position, result in enumerate(served):
        row_params = params if result["nprobe"] is None else {**params, "nprobe": result["nprobe"]}
        rows.append({**result, "kind": name if result["nprobe"] is None else f"{name} (sweep)",
                     "factory": info["factory"], "params": row_params, "build_s": build_s,
                     "build_rss_mb": build_rss_mb, "file_mb": index_path.stat().st_size / 2**20,
                     "recall": recall_at_k(np.load(workdir / f"ids_{position}.npy"), exact_ids, K),
                     "tuned_recall": tuned.get("recall_at_10") if result["nprobe"] is None else None})
    return rows


def bench_numpy(gallery: np.ndarray, queries: np.ndarray) -> dict:
    p50_1, p99_1 = latency_ms(lambda q: cosine_topk(q, gallery, K), queries, 1, min(len(queries), 100))
    p50_100, p99_100 = latency_ms(lambda q: cosine_topk(q, gallery, K), queries, 100, 10)
    return {"kind": "numpy brute force", "factory": "-", "params": {}, "build_s": 0.0, "build_rss_mb": 0.0,
            "file_mb": gallery.nbytes / 2**20, "recall": 1.0, "rss_mb": gallery.nbytes / 2**20, "load_s": 0.0,
            "p50_1": p50_1, "p99_1": p99_1, "p50_100": p50_100, "p99_100": p99_100}


def run(args: argparse.Namespace) -> None:
    faiss.omp_set_num_threads(args.threads)
    header = (f"| {'size':>9} | {'dim':>4} | {'index':<18} | {'build s':>7} | {'file MB':>8} | {'RAM MB':>8} | "
              f"{'p50 b1 ms':>9} | {'p99 b1 ms':>9} | {'p50 b100 ms':>11} | {'p99 b100 ms':>11} | "
              f"{'recall@10':>9} | params |")
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    for size in args.sizes:
        for dim in args.dims:
            generator = ClusteredGenerator(dim, seed=args.seed)
            queries = generator.queries(args.queries)
            streamed = size * dim * 4 > args.max_gallery_gb * 2**30
            gallery, exact_ids = None, None
            if streamed:
                print(f"# size {size} dim {dim}: streamed gallery (generated chunk by chunk, never held); "
                      f"exact top-{K} of {len(queries)} queries computed while adding", flush=True)
            else:
                gallery = np.concatenate(list(generator.gallery(size)))
                exact_ids = cosine_topk(queries, gallery, K)[1]
                print_row(size, dim, bench_numpy(gallery, queries))
            with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
                for kind in args.kinds:
                    rows = bench_kind(kind, generator, size, queries, exact_ids, gallery, Path(workdir),
                                      args.threads, args.nprobe_sweep, args.device)
                    for row in rows:
                        print_row(size, dim, row)
                    row = rows[0]
                    if row["tuned_recall"] is not None:
                        print(f"# {row['kind']}: recall@10 measured while tuning nprobe on the training sample: "
                              f"{row['tuned_recall']}; RSS growth during build {row['build_rss_mb']:.0f} MB",
                              flush=True)
            del gallery


def print_row(size: int, dim: int, row: dict) -> None:
    params = ", ".join(f"{k}={v}" for k, v in row["params"].items()) or "-"
    print(f"| {size:>9} | {dim:>4} | {row['kind']:<18} | {row['build_s']:>7.1f} | {row['file_mb']:>8.1f} | "
          f"{row['rss_mb']:>8.1f} | {row['p50_1']:>9.2f} | {row['p99_1']:>9.2f} | {row['p50_100']:>11.2f} | "
          f"{row['p99_100']:>11.2f} | {row['recall']:>9.3f} | {params} |", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        nprobes = [int(n) if n else None for n in sys.argv[6].split(",")]
        serve(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), nprobes, sys.argv[7])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="gallery sizes")
    parser.add_argument("--dims", type=int, nargs="+", default=[4096, 256],
                        help="embedding dimensions (4096: flattened 4x4x256 latent; 256: compact)")
    parser.add_argument("--kinds", nargs="+", default=["auto", "flat", "ivf_sq8", "ivf_pq", "hnsw"],
                        help="index kinds to build (auto resolves by size)")
    parser.add_argument("--queries", type=int, default=500, help="held-out queries (recall over all of them)")
    parser.add_argument("--threads", type=int, default=2, help="faiss OpenMP threads")
    parser.add_argument("--nprobe-sweep", type=int, nargs="*", default=[],
                        help="ivf kinds: also measure latency and recall with these nprobe values")
    parser.add_argument("--max-gallery-gb", type=float, default=4.0,
                        help="stream galleries larger than this instead of holding them (no numpy baseline then)")
    parser.add_argument("--workdir", default=None, help="where index files are written (default: system temp)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "gpu", "auto"], default="cpu",
                        help="where the indexes search (built on the CPU; gpu needs faiss with CUDA)")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
