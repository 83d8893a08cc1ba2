"""`twingan generate CHECKPOINT --domain D --out DIR`: new faces from noise, or a latent walk between seeds."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from twingan.errors import ConfigError

if TYPE_CHECKING:  # the CLI starts without importing torch
    import torch

    from twingan.models import TwinGAN

DEFAULT_N = 64
DEFAULT_SEED = 0
DEFAULT_FRAME_MS = 80


def register(subparsers: argparse._SubParsersAction) -> None:
    from twingan.inference.generation import DEFAULT_BATCH_SIZE, MAX_STRIP_COLUMNS

    parser = subparsers.add_parser(
        "generate",
        description="Draw new faces of one domain from noise with a checkpoint that has a mapping network "
        "(trained with experiment=generate_anime or model.noise_dim>0); EMA weights by default. Writes "
        "OUT/seed<S>_0000.png ... and OUT/grid.png (and, for a model trained with attributes, "
        "OUT/seed<S>_labels.csv: the attributes each face was drawn with, those not named by --attr from the "
        "training labels' prior). The images are deterministic: image i of --seed S is the same face "
        "whatever --n, --batch-size and the device. With --interpolate --seeds A B C: a spherical walk "
        "through the seeds' noise (--steps frames from each seed to the next, plus the last), written as "
        "OUT/walk_strip.png and an animated, looping OUT/walk.gif; the walk's first and last frames are the first "
        "and last seeds' image 0. Existing outputs are refused unless --overwrite; files are written atomically.",
    )
    parser.add_argument("checkpoint", type=Path, help="a twingan checkpoint (.safetensors) with a mapping network")
    parser.add_argument("--domain", required=True, metavar="DOMAIN", help="the domain to draw, e.g. anime")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    parser.add_argument("--n", type=int, default=None,
                        help=f"number of images (default {DEFAULT_N}; not with --interpolate)")
    parser.add_argument("--seed", type=int, default=None,
                        help=f"noise seed (default {DEFAULT_SEED}; not with --interpolate, which takes --seeds)")
    parser.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE",
                        help="condition on an attribute value, e.g. --attr hair=blue (repeat, or comma-join; "
                        "checkpoints trained with model.attributes, which draw the attributes not named from the "
                        "training labels' prior)")
    parser.add_argument("--interpolate", action="store_true",
                        help="write a latent walk through --seeds instead of a set of images")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                        help="--interpolate: the seeds to walk through, in order (at least 2)")
    parser.add_argument("--steps", type=int, default=16,
                        help="--interpolate: frames from one seed to the next (default 16, at least 2)")
    parser.add_argument("--frame-ms", type=int, default=DEFAULT_FRAME_MS,
                        help=f"--interpolate: GIF frame duration in milliseconds (default {DEFAULT_FRAME_MS})")
    parser.add_argument("--grid-cols", type=int, default=None, metavar="C",
                        help=f"images per row of grid.png (default: about square) or frames per row of "
                        f"walk_strip.png (default: at most {MAX_STRIP_COLUMNS})")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"images per model batch (default {DEFAULT_BATCH_SIZE}); does not change the images")
    parser.add_argument("--device", default="auto", help="torch device: auto (default: CUDA when available), cpu, cuda:1")
    parser.add_argument("--weights", choices=("ema", "model"), default="ema",
                        help="the checkpoint's EMA generator (default) or its raw training weights")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files (default: refuse)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _check_options(args: argparse.Namespace) -> None:
    if args.interpolate:
        if args.seeds is None or len(args.seeds) < 2:
            got = 0 if args.seeds is None else len(args.seeds)
            raise ConfigError(f"--interpolate needs at least 2 --seeds to walk between, got {got}")
        if args.steps < 2:
            raise ConfigError(f"--steps must be at least 2, got {args.steps}")
        if args.frame_ms < 1:
            raise ConfigError(f"--frame-ms must be at least 1, got {args.frame_ms}")
        if args.n is not None or args.seed is not None:
            raise ConfigError("--n and --seed are for a set of images; with --interpolate give --seeds (and --steps)")
    else:
        if args.seeds is not None:
            raise ConfigError("--seeds is for --interpolate; a set of images takes one --seed")
        args.n = DEFAULT_N if args.n is None else args.n
        args.seed = DEFAULT_SEED if args.seed is None else args.seed
        if args.n < 1:
            raise ConfigError(f"--n must be at least 1, got {args.n}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.grid_cols is not None and args.grid_cols < 1:
        raise ConfigError(f"--grid-cols must be at least 1, got {args.grid_cols}")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} exists and is not a folder")


def output_paths(args: argparse.Namespace) -> list[Path]:
    if args.interpolate:
        return [args.out / "walk_strip.png", args.out / "walk.gif"]
    return [args.out / f"seed{args.seed}_{i:04d}.png" for i in range(args.n)] + [args.out / "grid.png"]


def _refuse_existing(paths: list[Path]) -> None:
    existing = [p for p in paths if p.exists()]
    if existing:
        more = f" and {len(existing) - 1} more output files exist" if len(existing) > 1 else " exists"
        raise ConfigError(f"{existing[0]}{more} already; use --overwrite to replace them")


def run(args: argparse.Namespace) -> int:
    from twingan.data.image_io import save_image
    from twingan.inference import Translator
    from twingan.inference.translator import check_model_domain
    from twingan.inference.generation import (
        attribute_labels, check_generation, generate_images, image_grid, latent_walk, seed_labels, walk_strip,
    )
    from twingan.utils.atomic import atomic_write_text

    _check_options(args)
    paths = output_paths(args)
    if not args.overwrite:
        _refuse_existing(paths)
    translator = Translator.load(args.checkpoint, device=args.device, weights=args.weights)
    model = translator.model
    check_generation(model)
    check_model_domain(model, args.domain, "--domain")
    attribute_labels(model, args.attr, "--attr")  # bad --attr: a clear error before any work
    progress = not args.no_progress
    args.out.mkdir(parents=True, exist_ok=True)
    if args.interpolate:
        frames = latent_walk(model, args.seeds, args.steps, args.domain, args.attr, args.batch_size, progress)
        strip_path, gif_path = paths
        save_image(walk_strip(frames, args.grid_cols), strip_path)
        save_image(frames[0], gif_path, save_all=True, append_images=frames[1:], loop=0, duration=args.frame_ms,
                   optimize=False, disposal=1)
        print(f"{len(frames)} frames through seeds {' '.join(map(str, args.seeds))}: {strip_path}, {gif_path}")
        return 0
    labels_path = args.out / f"seed{args.seed}_labels.csv"
    if model.attribute_schema and not args.overwrite:
        _refuse_existing([labels_path])
    images = generate_images(model, args.n, args.domain, args.seed, args.attr, args.batch_size, progress)
    for img, path in zip(images, paths):
        save_image(img, path)
    save_image(image_grid(images, args.grid_cols), paths[-1])
    extra = paths[-1].name
    if model.attribute_schema:
        atomic_write_text(labels_path, _labels_csv(model, paths[:-1], seed_labels(
            model, args.seed, args.n, args.domain, args.attr)))
        extra += f", {labels_path.name}: the attributes each face was drawn with"
    print(f"{len(images)} {args.domain} faces of seed {args.seed} in {args.out} (and {extra})")
    return 0


def _labels_csv(model: TwinGAN, paths: list[Path], labels: torch.Tensor) -> str:
    """``file,<group>,...`` rows (the labels.csv format training reads) of the images and their drawn attributes."""
    schema = model.attribute_schema
    rows = [",".join(["file", *schema.names])]
    for path, label in zip(paths, labels.tolist()):
        rows.append(",".join([path.name, *(values[v] for values, v in zip(schema.groups.values(), label))]))
    return "\n".join(rows) + "\n"
