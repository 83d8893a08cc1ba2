"""`twingan prep synthetic`: draw the built-in synthetic photo/anime face dataset."""
from __future__ import annotations

import argparse


def register(prep_subparsers: argparse._SubParsersAction) -> None:
    parser = prep_subparsers.add_parser(
        "synthetic",
        help="draw the built-in synthetic photo/anime faces (unpaired train, paired test)",
        description="Render procedural faces in a 'photo' and an 'anime' style from a seed: "
        "OUT/train/{photo,anime}/ hold independent (unpaired) faces, OUT/test/{photo,anime}/ hold the same "
        "faces in both styles (paired, same file name) and OUT/test/params.jsonl their parameters. "
        "Re-running with the same options resumes or does nothing; other options need another --out.",
    )
    parser.add_argument("--out", required=True, help="output folder (new, empty, or an earlier run of this tool)")
    parser.add_argument("--n-train", type=int, default=2000, help="training images per style (default: 2000)")
    parser.add_argument("--n-test", type=int, default=200, help="paired test faces (default: 200)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels, 16..1024 (default: 64)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed, >= 0 (default: 0)")
    parser.add_argument(
        "--workers", type=int, default=None, help="rendering processes (default: the number of CPU cores, at most 8)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from twingan.data.synthetic import generate_dataset

    summary = generate_dataset(
        args.out,
        n_train=args.n_train,
        n_test=args.n_test,
        size=args.size,
        seed=args.seed,
        progress=not args.quiet,
        workers=args.workers,
    )
    if summary.already_complete:
        print(f"{summary.out_dir}: already complete ({summary.reused} images); nothing to do")
    else:
        print(f"{summary.out_dir}: drew {summary.rendered} images, kept {summary.reused} from an earlier run")
    print(
        f"  train: {args.n_train} photo + {args.n_train} anime (unpaired); "
        f"test: {args.n_test} pairs with parameters in test/params.jsonl; {args.size}x{args.size} px, seed {args.seed}"
    )
    return 0
