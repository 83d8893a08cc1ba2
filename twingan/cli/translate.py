"""`twingan translate CHECKPOINT INPUTS... --to DOMAIN --out DIR [--reference PATH] [--attr NAME=VALUE]`:
translate photos or face crops, optionally in the style of a reference picture or with attributes set."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from twingan.errors import ConfigError

if TYPE_CHECKING:
    from PIL import Image

    from twingan.inference.faces_pipeline import FacePipeline


def register(subparsers: argparse._SubParsersAction) -> None:
    from twingan.data.image_io import DEFAULT_MAX_PIXELS
    from twingan.faces.align import DEFAULT_FEATHER, DEFAULT_MARGIN
    from twingan.inference.faces_pipeline import BORDERS, DEFAULT_MAX_FACES, FALLBACKS
    from twingan.inference.files import DEFAULT_MIN_SIDE
    from twingan.inference.translator import DEFAULT_BATCH_SIZE

    parser = subparsers.add_parser(
        "translate",
        description="Translate images with a trained checkpoint (EMA weights). Photos of a domain whose face "
        "profile is 'photo' (recorded in the checkpoint; implied by the domain name for older ones) go through "
        "MTCNN face detection and the 5-point alignment of `twingan prep photo`; every face (up to --max-faces) "
        "is translated. Other domains, and --no-detect, take each picture as a face crop (centre square, resized "
        "to the model resolution). Outputs: OUT/<stem>.png (several faces: "
        "<stem>_face0.png largest, <stem>_face1.png, ...), plus <stem>_side.png and <stem>_pasted.png when asked. "
        "An input whose outputs exist is skipped unless --overwrite. Exit status 1 when any input failed. "
        "--reference and --attr condition every translation (checkpoints trained with model.style_dim>0 / "
        "model.attributes).",
    )
    parser.add_argument("checkpoint", type=Path, help="a twingan checkpoint (.safetensors)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders (searched recursively; sub-folders are kept in the output) "
                        "or quoted glob patterns ('photos/**/*.jpg')")
    parser.add_argument("--to", required=True, metavar="DOMAIN", help="target domain, e.g. anime")
    parser.add_argument("--from", dest="src", default=None, metavar="DOMAIN",
                        help="domain of the inputs (default: with two domains, the one that is not --to; "
                        "required with more)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"photos per detection batch and faces per model batch (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--device", default="auto", help="torch device: auto (default: CUDA when available), cpu, cuda:1")
    parser.add_argument("--weights", choices=("ema", "model"), default="ema",
                        help="the checkpoint's EMA generator (default) or its raw training weights")
    parser.add_argument("--no-detect", action="store_true",
                        help="take every input as a face crop already (no face detection)")
    parser.add_argument("--max-faces", type=int, default=DEFAULT_MAX_FACES, metavar="K",
                        help=f"translate at most the K largest faces of a photo (default {DEFAULT_MAX_FACES})")
    parser.add_argument("--min-face-size", type=int, default=20, metavar="PX",
                        help="smallest face MTCNN looks for, in photo pixels (default 20)")
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                        help=f"alignment margin; use the one the training crops were made with "
                        f"(default {DEFAULT_MARGIN}, as `twingan prep photo`)")
    parser.add_argument("--border", choices=BORDERS, default="reflect",
                        help="fill of crop parts outside the photo (default reflect, as `twingan prep photo`)")
    parser.add_argument("--fallback", choices=FALLBACKS, default="none",
                        help="photos without a detected face: report them (none, default) or translate the "
                        "centre square (center-crop)")
    parser.add_argument("--side-by-side", action="store_true",
                        help="also write <stem>_side.png: each input crop next to its translation")
    parser.add_argument("--paste-back", action="store_true",
                        help="also write <stem>_pasted.png: the photo with the translated faces warped back")
    parser.add_argument("--feather", type=float, default=DEFAULT_FEATHER,
                        help=f"soft edge of pasted faces, as a fraction of the crop side (default {DEFAULT_FEATHER})")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip those inputs)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse larger images, a decompression-bomb guard (default {DEFAULT_MAX_PIXELS})")
    parser.add_argument("--min-size", type=int, default=DEFAULT_MIN_SIDE, metavar="PX",
                        help=f"refuse images with a shorter side (default {DEFAULT_MIN_SIDE})")
    parser.add_argument("--reference", type=Path, default=None, metavar="PATH",
                        help="a picture of the TARGET domain whose style (hair and eye colours, shading) every "
                        "translation takes; needs a checkpoint trained with model.style_dim>0. A reference of "
                        "a domain with the 'photo' profile is face-detected and aligned like the inputs (largest face; "
                        "--no-detect takes it as a crop); others are taken as face crops (centre square)")
    parser.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE",
                        help="set an attribute of every translation, e.g. --attr hair=blue (repeatable; groups not "
                        "named keep the source's); needs a checkpoint trained with model.attributes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _check_options(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.max_faces < 1:
        raise ConfigError(f"--max-faces must be at least 1, got {args.max_faces}")
    if args.min_face_size < 1:
        raise ConfigError(f"--min-face-size must be at least 1 pixel, got {args.min_face_size}")
    if args.feather < 0:
        raise ConfigError(f"--feather must be >= 0, got {args.feather}")
    if args.max_pixels < 1 or args.min_size < 1:
        raise ConfigError("--max-pixels and --min-size must be positive")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} exists and is not a folder")


def _load_reference(args: argparse.Namespace) -> Image.Image | None:
    """The --reference picture through the toolkit's image loader: one-line ConfigError for a bad file."""
    from twingan.data.image_io import load_image
    from twingan.errors import ImageLoadError

    if args.reference is None:
        return None
    try:
        return load_image(args.reference, max_pixels=args.max_pixels, min_size=args.min_size)
    except ImageLoadError as exc:
        raise ConfigError(f"--reference {exc}") from None


def _reference_crop(args: argparse.Namespace, photo: Image.Image, pipeline: FacePipeline) -> Image.Image:
    """The reference as the model sees it: the aligned largest face (with a detector) or the centre square."""
    result = pipeline.face_crops([photo])[0]
    if result.error is not None:
        raise ConfigError(f"--reference {args.reference}: {result.error}")
    return result.crops[0].crop


def run(args: argparse.Namespace) -> int:
    from twingan.faces import FaceDetector
    from twingan.inference import Translator
    from twingan.inference.faces_pipeline import FacePipeline
    from twingan.inference.files import OutputOptions, collect_inputs, translate_files

    _check_options(args)
    reference = _load_reference(args)
    translator = Translator.load(args.checkpoint, device=args.device, weights=args.weights)
    src = translator.source_domain(args.to, args.src)
    if reference is not None:
        translator.check_reference_support()
    if args.attr:
        translator.attribute_labels(args.attr)
    detect = not args.no_detect and translator.detects_faces(src)
    detect_reference = reference is not None and not args.no_detect and translator.detects_faces(args.to)
    if args.paste_back and not detect:
        raise ConfigError("--paste-back needs face detection (photos of a domain with the 'photo' profile, without "
                          "--no-detect): a face crop has no photo to paste into")
    if args.fallback != "none" and not (detect or detect_reference):
        raise ConfigError("--fallback applies to face detection; without it every picture is centre-cropped already")
    if not args.no_detect and not detect:
        print(f"note: face detection is for domains with the 'photo' profile; '{src}' ({translator.profiles[src]}) "
              "inputs are taken as face crops", file=sys.stderr)
    detector = (FaceDetector(device=translator.device, min_face_size=args.min_face_size)
                if detect or detect_reference else None)
    pipeline = FacePipeline(translator, detector if detect else None, max_faces=args.max_faces,
                            margin=args.margin, border=args.border, fallback=args.fallback)
    if reference is not None:
        reference_pipeline = FacePipeline(translator, detector if detect_reference else None, max_faces=1,
                                          margin=args.margin, border=args.border, fallback=args.fallback)
        reference = _reference_crop(args, reference, reference_pipeline)
    cond = translator.condition(args.to, reference=reference, attrs=args.attr or None)
    inputs = collect_inputs(args.inputs, exclude=args.out)
    for problem in inputs.failures + inputs.skipped:
        print(problem, file=sys.stderr)
    options = OutputOptions(args.out, side_by_side=args.side_by_side, paste_back=args.paste_back,
                            overwrite=args.overwrite, feather=args.feather)
    summary = translate_files(pipeline, inputs.files, args.to, src, options, batch_size=args.batch_size,
                              max_pixels=args.max_pixels, min_side=args.min_size, progress=not args.no_progress,
                              cond=cond)
    summary.failed[:0] = inputs.failures
    summary.skipped[:0] = inputs.skipped
    faces = f" ({summary.faces} faces)" if detect else ""
    print(f"{summary.line()}{faces}; outputs in {args.out}")
    return 1 if summary.failed else 0
