"""`twingan index ...`: build, extend, inspect and query the similar-face index.

Galleries come from embeddings stores written by `twingan embed` (one domain per
store); the library side is :mod:`twingan.search.gallery` (building from stores)
and :mod:`twingan.search.results_text` (printing what a query finds).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twingan.errors import ConfigError, DatasetError

if TYPE_CHECKING:
    from twingan.inference import Translator

KINDS = ("auto", "flat", "ivf_sq8", "ivf_pq", "hnsw")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "index",
        description="The FAISS similar-face index over embeddings stores made by `twingan embed`.",
    )
    index_sub = parser.add_subparsers(dest="index_command", metavar="ACTION")
    _register_build(index_sub)
    _register_add(index_sub)
    _register_info(index_sub)
    _register_query(index_sub)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None, help="FAISS CPU threads (default: all cores)")


def _register_build(index_sub: argparse._SubParsersAction) -> None:
    parser = index_sub.add_parser(
        "build",
        help="build an index from embeddings stores",
        description="Index the embeddings of one or more stores (same checkpoint and embedding kind, any domains). "
        "The kind is chosen by gallery size unless given: exact 'flat' for small galleries, "
        "PCA + IVF with 8-bit codes for large ones; the parameters are recorded in the index file. "
        "An existing OUT file is replaced atomically.",
    )
    parser.add_argument("embeddings", nargs="+", type=Path, metavar="EMBEDDINGS", help="embeddings store folders")
    parser.add_argument("--out", type=Path, required=True, metavar="INDEX", help="index file to write")
    parser.add_argument("--kind", choices=KINDS, default="auto", help="index kind (default: auto, by size)")
    parser.add_argument("--pca-dim", type=int, default=None, help="approximate kinds: PCA output dimension")
    parser.add_argument("--nlist", type=int, default=None, help="ivf kinds: number of inverted lists")
    parser.add_argument("--nprobe", type=int, default=None,
                        help="ivf kinds: lists scanned per query (default: tuned for recall@10 >= 0.95)")
    parser.add_argument("--pq-m", type=int, default=None, help="ivf_pq: bytes per vector (sub-quantisers)")
    parser.add_argument("--hnsw-m", type=int, default=None, help="hnsw: graph neighbours per node")
    parser.add_argument("--ef-search", type=int, default=None, help="hnsw: search breadth")
    _add_threads_option(parser)
    parser.set_defaults(func=run_build)


def _register_add(index_sub: argparse._SubParsersAction) -> None:
    parser = index_sub.add_parser(
        "add",
        help="add embeddings stores to an existing index",
        description="Add the embeddings of stores to an index (same checkpoint and embedding kind). Images already "
        "in the index are skipped, so re-adding a store that a resumed `twingan embed` extended adds only the new "
        "images. The index file is replaced atomically.",
    )
    parser.add_argument("index", type=Path, metavar="INDEX", help="index file to extend")
    parser.add_argument("embeddings", nargs="+", type=Path, metavar="EMBEDDINGS", help="embeddings store folders")
    _add_threads_option(parser)
    parser.set_defaults(func=run_add)


def _register_info(index_sub: argparse._SubParsersAction) -> None:
    parser = index_sub.add_parser(
        "info",
        help="describe an index file or an embeddings store",
        description="Print what an index file (kind, parameters, sizes, embedding metadata) or an embeddings "
        "store (domain, count, metadata) holds, as JSON.",
    )
    parser.add_argument("path", type=Path, metavar="PATH", help="index file or embeddings store folder")
    parser.add_argument("--validate", action="store_true",
                        help="embeddings store: read every shard and check shapes, norms and paths")
    parser.set_defaults(func=run_info)


def _register_query(index_sub: argparse._SubParsersAction) -> None:
    from twingan.inference.translator import DEFAULT_BATCH_SIZE
    from twingan.search.results_grid import DEFAULT_TILE

    parser = index_sub.add_parser(
        "query",
        help="find the gallery faces most similar to query images",
        description="Search the index with query IMAGEs, embedded by --checkpoint (which must be the checkpoint "
        "that embedded the gallery: its hash, the embedding kind and dimension are checked against the index), "
        "or with precomputed query embeddings (--vectors). Query images are taken as face crops unless --detect "
        "(largest face of each photo, aligned as `twingan translate` does). Prints each query's neighbours "
        "(rank, cosine similarity, domain, path); --grid also draws them. An unusable query image is reported "
        "in one line, the others are searched, and the exit status is 1.",
    )
    parser.add_argument("index", type=Path, metavar="INDEX", help="index file")
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help="query image files, folders or quoted glob patterns (with --checkpoint)")
    parser.add_argument("--checkpoint", type=Path, default=None, metavar="CKPT",
                        help="the checkpoint that embedded the gallery; embeds the query IMAGEs")
    parser.add_argument("--from", dest="src", default=None, metavar="DOMAIN",
                        help="domain of the query images (default: with a two-domain checkpoint and --domain, "
                        "the domain that is not --domain)")
    parser.add_argument("--vectors", type=Path, default=None, metavar="EMBEDDINGS",
                        help="instead of IMAGEs: an embeddings store holding the query embeddings")
    parser.add_argument("--k", type=int, default=10, help="results per query (default 10; at most the gallery size)")
    parser.add_argument("--domain", default=None, help="only return gallery images of this domain")
    parser.add_argument("--json", action="store_true", help="print one JSON object per query")
    parser.add_argument("--grid", type=Path, default=None, metavar="OUT.png",
                        help="IMAGE queries: also save a picture, one row per query: its face, then the neighbours "
                        "with their scores")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE, metavar="PX",
                        help=f"--grid: tile size in pixels (default {DEFAULT_TILE})")
    parser.add_argument("--gallery-root", type=Path, default=None, metavar="DIR",
                        help="--grid: folder that relative gallery paths are relative to (default: the current "
                        "folder; see `twingan embed --relative-to`)")
    parser.add_argument("--detect", action="store_true",
                        help="detect and align the largest face of each query photo (photos of people)")
    parser.add_argument("--min-face-size", type=int, default=20, metavar="PX",
                        help="--detect: smallest face MTCNN looks for, in photo pixels (default 20)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"query images per model batch (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--torch-device", default="auto",
                        help="torch device embedding the query images: auto (default), cpu, cuda:1")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                        help="where to search (default: a GPU when FAISS sees one)")
    _add_threads_option(parser)
    parser.set_defaults(func=run_query)


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import faiss

        faiss.omp_set_num_threads(threads)


def run_build(args: argparse.Namespace) -> int:
    from twingan.search.gallery import add_stores, open_stores, training_sample
    from twingan.search.index import Index
    from twingan.search.index_plan import plan_index
    from twingan.search.index_training import MAX_TRAIN_VECTORS

    _set_threads(args.threads)
    stores = open_stores(args.embeddings)
    sizes = [len(store) for store in stores]
    total = sum(sizes)
    if total == 0:
        raise DatasetError(f"the embeddings stores {', '.join(map(str, args.embeddings))} hold no embeddings")
    params = {
        "pca_dim": args.pca_dim, "nlist": args.nlist, "nprobe": args.nprobe,
        "pq_m": args.pq_m, "hnsw_m": args.hnsw_m, "ef_search": args.ef_search,
    }
    given = {name: value for name, value in params.items() if value is not None}
    kind, _ = plan_index(args.kind, total, stores[0].meta.dim, **given)  # bad parameters fail before any work
    train = None if kind == "flat" else training_sample(stores, sizes, MAX_TRAIN_VECTORS)
    index = Index.create(stores[0].meta, kind=kind, train_vectors=train, expected_size=total, device="cpu", **given)
    del train
    add_stores(index, stores, skip_existing=False)
    index.save(args.out)
    print(f"wrote {args.out}: {index.ntotal} embeddings")
    print(json.dumps(index.info(), indent=2))
    return 0


def run_add(args: argparse.Namespace) -> int:
    from twingan.search.gallery import add_stores, open_stores
    from twingan.search.index import Index

    _set_threads(args.threads)
    index = Index.load(args.index, device="cpu")
    stores = open_stores(args.embeddings)
    for store in stores:
        store.meta.check_matches(index.meta, this=f"embeddings store {store.path}", that=f"the index {args.index}")
    added, skipped = add_stores(index, stores, skip_existing=True)
    index.save(args.index)
    print(f"wrote {args.index}: added {added} embeddings, skipped {skipped} already indexed, {index.ntotal} in all")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from twingan.search.embeddings_store import EmbeddingStore
    from twingan.search.index_file import read_index_header

    if args.path.is_dir():
        store = EmbeddingStore.open(args.path)
        count = store.validate() if args.validate else len(store)
        info: dict[str, Any] = {
            "embeddings_store": str(store.path),
            "domain": store.domain,
            "count": count,
            "shards": len(store.shard_files()),
            "embedding": store.meta.to_dict(),
            "validated": bool(args.validate),
        }
    else:
        header = read_index_header(args.path)
        info = {key: value for key, value in header.items() if key != "sections"}
        info["file_bytes"] = args.path.stat().st_size
    print(json.dumps(info, indent=2))
    return 0


def run_query(args: argparse.Namespace) -> int:
    if (args.vectors is None) == (not args.images):
        raise ConfigError("give query IMAGEs (with --checkpoint) or --vectors EMBEDDINGS, not both or neither")
    if args.vectors is not None:
        if args.grid is not None or args.checkpoint is not None:
            raise ConfigError("--grid and --checkpoint apply to IMAGE queries, not to --vectors")
        return run_query_vectors(args)
    return run_query_images(args)


def run_query_vectors(args: argparse.Namespace) -> int:
    from twingan.search.embeddings_store import EmbeddingStore
    from twingan.search.index import Index
    from twingan.search.results_text import print_search_results

    _set_threads(args.threads)
    index = Index.load(args.index, device=args.device)
    queries = EmbeddingStore.open(args.vectors)
    vectors, labels = queries.load()
    if not labels:
        raise DatasetError(f"{args.vectors}: the query embeddings store is empty")
    print_search_results(index, vectors, queries.meta, labels, k=args.k, domain=args.domain, as_json=args.json)
    return 0


def run_query_images(args: argparse.Namespace) -> int:
    """Embed the query images with --checkpoint (checked against the index), search, print, draw the grid."""
    from twingan.data.image_io import save_image
    from twingan.faces import FaceDetector
    from twingan.inference import Translator
    from twingan.models import EMBEDDING_KINDS
    from twingan.search.embed_images import collect_image_files, detection_note, embedding_meta, load_face_crops
    from twingan.search.index import Index
    from twingan.search.results_grid import GridRow, query_tile, results_grid
    from twingan.search.results_text import print_search_results

    if args.checkpoint is None:
        raise ConfigError("query IMAGEs are embedded by the gallery's checkpoint: add --checkpoint CKPT")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.grid is not None and args.grid.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise ConfigError(f"--grid {args.grid}: use a .png, .jpg or .webp file name")
    _set_threads(args.threads)
    index = Index.load(args.index, device=args.device)
    kind = index.meta.embedding_kind
    if kind not in EMBEDDING_KINDS:
        raise ConfigError(f"the index {args.index} holds {kind!r} embeddings; query images can be embedded as "
                          f"{' or '.join(EMBEDDING_KINDS)} only (use --vectors)")
    translator = Translator.load(args.checkpoint, device=args.torch_device)
    meta = embedding_meta(translator, kind)
    meta.check_matches(index.meta, this=f"the checkpoint {args.checkpoint}", that=f"the index {args.index}")
    src = _query_domain(translator, args.src, args.domain)
    note = detection_note(translator, src) if args.detect else None
    if note:
        print(note, file=sys.stderr)
    detector = FaceDetector(device=translator.device, min_face_size=args.min_face_size) if args.detect else None
    files, failures = collect_image_files(args.images)
    for problem in failures:
        print(problem, file=sys.stderr)
    rows: list[GridRow] = []
    searched = 0
    for start in range(0, len(files), args.batch_size):  # streamed: a batch's pictures are let go once searched
        crops = load_face_crops(files[start: start + args.batch_size], translator, detector)
        for problem in crops.failed:
            print(problem, file=sys.stderr)
        failures += crops.failed
        if not crops.crops:
            continue
        vectors = translator.embed(crops.crops, src, kind, args.batch_size)
        labels = [str(path) for path in crops.paths]
        result = print_search_results(index, vectors, meta, labels, k=args.k, domain=args.domain, as_json=args.json)
        searched += len(labels)
        if args.grid is not None:
            root = args.gallery_root if args.gallery_root is not None else Path.cwd()
            for crop, scores, paths in zip(crops.crops, result.scores, result.paths):
                hits = [(float(score), root / path) for score, path in zip(scores, paths)]
                rows.append(GridRow(query_tile(crop, args.tile), hits))
    if not searched:
        raise DatasetError("none of the query images could be used (reasons above)")
    if args.grid is not None:
        save_image(results_grid(rows, args.tile), args.grid)
        print(f"wrote {args.grid}", file=sys.stderr)
    return 1 if failures else 0


def _query_domain(translator: "Translator", src: str | None, gallery_domain: str | None) -> str:
    """--from, else the checkpoint's domain other than --domain (two domains), else its only domain."""
    if src is not None:
        return translator.check_domain(src, "--from")
    if gallery_domain is not None and gallery_domain in translator.domains:
        return translator.source_domain(gallery_domain)
    if len(translator.domains) == 1:
        return translator.domains[0]
    raise ConfigError(
        f"say which domain the query images are with --from (one of {list(translator.domains)}); it is "
        "inferred only from --domain with a two-domain checkpoint"
    )

