"""`twingan prep photo|anime|cat|dedup`: face crops for training, one tool per face profile, and duplicate removal.

The crop tools are named after the profiles of :mod:`twingan.faces.profiles`
(their crop logic is :mod:`twingan.faces.prep_crops`); their former names
stay accepted. Every crop tool walks SRC, writes crops named after the source files into
--out, resumes from ``--out/.prep_log.jsonl`` when run again, and ends with a
kept / skipped summary (also in ``--out/prep_summary.json``).
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from twingan.errors import ConfigError

if TYPE_CHECKING:
    from twingan.faces.prep_crops import AnimeCropper, CatCropper, PhotoCropper


def register(prep_subparsers: argparse._SubParsersAction) -> None:
    from twingan.faces.align import DEFAULT_MARGIN
    from twingan.faces.anime import BACKENDS, CASCADE_NAME, CASCADE_URL, DEFAULT_ENLARGE, OUTSIDE_MODES
    from twingan.faces.dedup import ACTIONS, DEFAULT_THRESHOLD, MAX_THRESHOLD
    from twingan.faces.detect import DEFAULT_MIN_SCORE
    from twingan.faces.prep_crops import DEFAULT_PHOTO_MIN_FACE, FORMER_TOOL_NAMES
    from twingan.faces.profiles import ANIME, CAT, PHOTO

    photo = prep_subparsers.add_parser(
        PHOTO,
        aliases=list(FORMER_TOOL_NAMES[PHOTO]),
        help="crop aligned human faces from photos (MTCNN + 5-point alignment)",
        description="Detect faces with MTCNN, level the eyes with a similarity transform from the 5 landmarks "
        "and crop a square that keeps the hair. The same alignment is used when translating photos.",
    )
    photo.add_argument("src", help="folder of photos (searched recursively)")
    _add_output_options(photo, default_size=256)
    photo.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                       help=f"space around the tight face square on each side, as a fraction of it "
                       f"(default {DEFAULT_MARGIN}: keeps hair and chin)")
    photo.add_argument("--max-faces", type=int, default=1, metavar="K",
                       help="crop at most the K largest faces of a photo (default 1)")
    photo.add_argument("--min-face-size", type=int, default=DEFAULT_PHOTO_MIN_FACE, metavar="PX",
                       help=f"skip faces whose detected box is smaller than PX pixels (default "
                       f"{DEFAULT_PHOTO_MIN_FACE}; small faces make blurry crops)")
    photo.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE,
                       help=f"MTCNN face probability needed (default {DEFAULT_MIN_SCORE})")
    photo.add_argument("--border", choices=("reflect", "replicate", "constant"), default="reflect",
                       help="fill of crop parts outside the photo (default reflect)")
    photo.add_argument("--device", default="auto", help="torch device for MTCNN: auto (default), cpu, cuda, cuda:1")
    photo.set_defaults(func=run_photo)

    anime = prep_subparsers.add_parser(
        ANIME,
        help="crop anime faces with the lbpcascade_animeface OpenCV cascade (box enlarged ~1.5x)",
        description=f"Detect anime faces with nagadomi's cascade ({CASCADE_NAME}, from {CASCADE_URL}; "
        "download it once and pass its path) and crop the box enlarged around its centre, as the Getchu "
        "dataset was made.",
    )
    anime.add_argument("src", help="folder of anime pictures (searched recursively)")
    anime.add_argument("--cascade", required=True, metavar="PATH", help=f"path of {CASCADE_NAME}")
    _add_output_options(anime, default_size=256)
    anime.add_argument("--enlarge", type=float, default=DEFAULT_ENLARGE,
                       help=f"side of the crop / longer side of the detected box (default {DEFAULT_ENLARGE})")
    anime.add_argument("--outside", choices=OUTSIDE_MODES, default="pad",
                       help="where the enlarged box leaves the picture: pad (repeat edge pixels, default) or "
                       "clip (move it inside, shrink if needed)")
    anime.add_argument("--max-faces", type=int, default=1, metavar="K",
                       help="crop at most the K largest faces of a picture (default 1)")
    anime.add_argument("--min-face-size", type=int, default=48, metavar="PX",
                       help="smallest face box the cascade reports (default 48)")
    anime.add_argument("--backend", choices=BACKENDS, default="auto",
                       help="cascade implementation: opencv (needs an OpenCV with CascadeClassifier: 4.x or "
                       "opencv-contrib), skimage (scikit-image, LBP cascades, slower) or auto (default: opencv "
                       "when available, else skimage)")
    anime.set_defaults(func=run_anime)

    cat = prep_subparsers.add_parser(
        CAT,
        aliases=list(FORMER_TOOL_NAMES[CAT]),
        help="crop cat faces from the CAT dataset's .cat keypoint files (eyes level, ears kept)",
        description="For every photo X.jpg with keypoints in X.jpg.cat beside it, crop the face with the eyes "
        "level and a margin around the ears. Photos without a valid .cat file are skipped with the reason.",
    )
    cat.add_argument("src", help="CAT dataset folder (searched recursively)")
    _add_output_options(cat, default_size=128)
    cat.add_argument("--margin", type=float, default=None,
                      help="space around the keypoint box on each side, as a fraction of its side "
                      "(default: the dataset reader's)")
    cat.set_defaults(func=run_cat)

    dedup = prep_subparsers.add_parser(
        "dedup",
        help="find exact and near-exact duplicate images (sha256 + perceptual hash) and report or move them",
        description="Group identical files (sha256) and near-identical pictures (pHash within a Hamming "
        "distance). The first file of each group in sorted order is kept. By default only the report is "
        "written; --action move moves the duplicates to --dup-dir.",
    )
    dedup.add_argument("dir", help="folder of images (searched recursively)")
    dedup.add_argument("--report", required=True, metavar="FILE.json", help="JSON report to write")
    dedup.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD,
                       help=f"largest pHash Hamming distance (of 64 bits) counted as a duplicate, 0..{MAX_THRESHOLD} "
                       f"(default {DEFAULT_THRESHOLD})")
    dedup.add_argument("--action", choices=ACTIONS, default="report",
                       help="report (default): only write the report; move: also move duplicates to --dup-dir")
    dedup.add_argument("--dup-dir", metavar="D", help="where --action move puts the duplicates (outside DIR)")
    dedup.set_defaults(func=run_dedup)


def _add_output_options(parser: argparse.ArgumentParser, default_size: int) -> None:
    parser.add_argument("--out", required=True, metavar="DST", help="output folder (created; resumable)")
    parser.add_argument("--size", type=int, default=default_size, help=f"crop side in pixels (default {default_size})")
    parser.add_argument("--ext", choices=("png", "jpg"), default="png", help="output format (default png)")


def run_photo(args: argparse.Namespace) -> int:
    from twingan.faces.prep_crops import PhotoCropper
    from twingan.faces.profiles import PHOTO

    cropper = PhotoCropper(args.size, margin=args.margin, max_faces=args.max_faces, min_face_size=args.min_face_size,
                           min_score=args.min_score, border=args.border, device=args.device)
    return _run(PHOTO, args, cropper)


def run_anime(args: argparse.Namespace) -> int:
    from twingan.faces.prep_crops import AnimeCropper
    from twingan.faces.profiles import ANIME

    cropper = AnimeCropper(args.cascade, args.size, enlarge=args.enlarge, outside=args.outside,
                           max_faces=args.max_faces, min_face_size=args.min_face_size, backend=args.backend)
    return _run(ANIME, args, cropper)


def run_cat(args: argparse.Namespace) -> int:
    from twingan.faces.prep_crops import CatCropper
    from twingan.faces.profiles import CAT

    return _run(CAT, args, CatCropper(args.size, margin=args.margin))


def _run(profile: str, args: argparse.Namespace, cropper: PhotoCropper | AnimeCropper | CatCropper) -> int:
    from twingan.faces.prep_crops import FORMER_TOOL_NAMES
    from twingan.faces.prep_runner import format_summary, run_prep

    summary = run_prep(profile, args.src, args.out, cropper, cropper.options, ext=args.ext,
                       former_names=FORMER_TOOL_NAMES.get(profile, ()))
    print(format_summary(summary))
    return 0


def run_dedup(args: argparse.Namespace) -> int:
    from twingan.faces.dedup import dedup_folder, format_report

    if args.dup_dir is not None and args.action != "move":
        raise ConfigError("--dup-dir is only used with --action move")
    report = dedup_folder(args.dir, args.report, threshold=args.threshold, action=args.action, dup_dir=args.dup_dir)
    print(format_report(report, args.report))
    return 0
