"""`twingan embed CHECKPOINT INPUTS... --domain D --out STORE`: embed images for the similar-face search."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from twingan.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    from twingan.data.image_io import DEFAULT_MAX_PIXELS
    from twingan.inference.files import DEFAULT_MIN_SIDE
    from twingan.inference.translator import DEFAULT_BATCH_SIZE
    from twingan.search.embed_images import DEFAULT_SHARD_SIZE, EMBEDDING_KINDS

    parser = subparsers.add_parser(
        "embed",
        description="Compute the search embedding of every image: the encoder's 4x4 latent under the images' own "
        "domain normalisation, L2-normalised for cosine similarity ('full': the flattened latent; 'pooled': its "
        "spatial mean, 16x smaller). Pictures are taken as face crops (centre square, resized to the model "
        "resolution) unless --detect: then MTCNN finds the largest face of each photo and aligns it as `twingan "
        "translate` does. OUT is a store folder; running again with the same OUT resumes: images already in it "
        "are skipped (same checkpoint, kind and domain required). Unreadable images and photos without a face "
        "are reported one line each and skipped; the exit status is then 1.",
    )
    parser.add_argument("checkpoint", type=Path, help="a twingan checkpoint (.safetensors)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders (searched recursively) or quoted glob patterns")
    parser.add_argument("--domain", required=True, metavar="DOMAIN", help="the domain of the images, e.g. anime")
    parser.add_argument("--out", required=True, type=Path, metavar="STORE",
                        help="embeddings store folder (created, or resumed when it exists)")
    parser.add_argument("--kind", choices=EMBEDDING_KINDS, default="full",
                        help="full (default): the flattened 4x4 latent; pooled: its spatial mean")
    parser.add_argument("--detect", action="store_true",
                        help="detect and align the largest face of each photo (for photos of people)")
    parser.add_argument("--min-face-size", type=int, default=20, metavar="PX",
                        help="--detect: smallest face MTCNN looks for, in photo pixels (default 20)")
    parser.add_argument("--relative-to", type=Path, default=None, metavar="DIR",
                        help="store image paths relative to DIR (a gallery that can move); default: absolute paths")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"images per model batch (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                        help=f"vectors per store shard (default {DEFAULT_SHARD_SIZE})")
    parser.add_argument("--device", default="auto", help="torch device: auto (default: CUDA when available), cpu, cuda:1")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse larger images, a decompression-bomb guard (default {DEFAULT_MAX_PIXELS})")
    parser.add_argument("--min-size", type=int, default=DEFAULT_MIN_SIDE, metavar="PX",
                        help=f"refuse images with a shorter side (default {DEFAULT_MIN_SIDE})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from twingan.faces import FaceDetector
    from twingan.inference import Translator
    from twingan.search.embed_images import collect_image_files, detection_note, embed_files, embedding_meta
    from twingan.search.embeddings_store import EmbeddingStore

    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} exists and is not a folder (an embeddings store is a folder)")
    if args.min_face_size < 1:
        raise ConfigError(f"--min-face-size must be at least 1 pixel, got {args.min_face_size}")
    translator = Translator.load(args.checkpoint, device=args.device)
    translator.check_domain(args.domain, "--domain")
    note = detection_note(translator, args.domain) if args.detect else None
    if note:
        print(note, file=sys.stderr)
    files, not_found = collect_image_files(args.inputs)
    for problem in not_found:
        print(problem, file=sys.stderr)
    store = EmbeddingStore.open_or_create(args.out, embedding_meta(translator, args.kind), args.domain)
    detector = FaceDetector(device=translator.device, min_face_size=args.min_face_size) if args.detect else None
    summary = embed_files(
        translator, files, store, detector=detector, relative_to=args.relative_to,
        batch_size=args.batch_size, shard_size=args.shard_size, max_pixels=args.max_pixels, min_side=args.min_size,
        progress=not args.no_progress,
    )
    summary.failed[:0] = not_found
    print(f"{summary.line()}; {args.out} holds {len(store)} {args.domain} embeddings ({store.meta.describe()})")
    return 1 if summary.failed else 0
