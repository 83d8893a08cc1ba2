"""`twingan prep human|anime|cats|dedup`: face crops for training, and duplicate removal.

Every crop tool walks SRC, writes crops named after the source files into
--out, resumes from ``--out/.prep_log.jsonl`` when run again, and ends with a
kept / skipped summary (also in ``--out/prep_summary.json``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from twingan.errors import ConfigError

DEFAULT_HUMAN_MIN_FACE = 64
DETECTION_MIN_FACE = 20
"""MTCNN looks for faces down to this size, so that smaller ones are reported as 'face too small', not 'no face'."""


def register(prep_subparsers: argparse._SubParsersAction) -> None:
    from twingan.faces.align import DEFAULT_MARGIN
    from twingan.faces.anime import BACKENDS, CASCADE_NAME, CASCADE_URL, DEFAULT_ENLARGE, OUTSIDE_MODES
    from twingan.faces.dedup import ACTIONS, DEFAULT_THRESHOLD, MAX_THRESHOLD
    from twingan.faces.detect import DEFAULT_MIN_SCORE

    human = prep_subparsers.add_parser(
        "human",
        help="crop aligned human faces from photos (MTCNN + 5-point alignment)",
        description="Detect faces with MTCNN, level the eyes with a similarity transform from the 5 landmarks "
        "and crop a square that keeps the hair. The same alignment is used when translating photos.",
    )
    human.add_argument("src", help="folder of photos (searched recursively)")
    _add_output_options(human, default_size=256)
    human.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                       help=f"space around the tight face square on each side, as a fraction of it "
                       f"(default {DEFAULT_MARGIN}: keeps hair and chin)")
    human.add_argument("--max-faces", type=int, default=1, metavar="K",
                       help="crop at most the K largest faces of a photo (default 1)")
    human.add_argument("--min-face-size", type=int, default=DEFAULT_HUMAN_MIN_FACE, metavar="PX",
                       help=f"skip faces whose detected box is smaller than PX pixels (default "
                       f"{DEFAULT_HUMAN_MIN_FACE}; small faces make blurry crops)")
    human.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE,
                       help=f"MTCNN face probability needed (default {DEFAULT_MIN_SCORE})")
    human.add_argument("--border", choices=("reflect", "replicate", "constant"), default="reflect",
                       help="fill of crop parts outside the photo (default reflect)")
    human.add_argument("--device", default="auto", help="torch device for MTCNN: auto (default), cpu, cuda, cuda:1")
    human.set_defaults(func=run_human)

    anime = prep_subparsers.add_parser(
        "anime",
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

    cats = prep_subparsers.add_parser(
        "cats",
        help="crop cat faces from the CAT dataset's .cat keypoint files (eyes level, ears kept)",
        description="For every photo X.jpg with keypoints in X.jpg.cat beside it, crop the face with the eyes "
        "level and a margin around the ears. Photos without a valid .cat file are skipped with the reason.",
    )
    cats.add_argument("src", help="CAT dataset folder (searched recursively)")
    _add_output_options(cats, default_size=128)
    cats.add_argument("--margin", type=float, default=None,
                      help="space around the keypoint box on each side, as a fraction of its side "
                      "(default: the dataset reader's)")
    cats.set_defaults(func=run_cats)

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


def _check_common(args: argparse.Namespace) -> None:
    if args.size < 8:
        raise ConfigError(f"--size must be at least 8 pixels, got {args.size}")
    if getattr(args, "max_faces", 1) < 1:
        raise ConfigError(f"--max-faces must be at least 1, got {args.max_faces}")
    if getattr(args, "margin", None) is not None and args.margin < 0:
        raise ConfigError(f"--margin must be >= 0, got {args.margin}")


def run_human(args: argparse.Namespace) -> int:
    from twingan.faces.align import face_alignment_transform, warp_to_crop
    from twingan.faces.detect import FaceDetector
    from twingan.faces.prep_runner import Crop, SkipImage, format_summary, run_prep

    _check_common(args)
    if args.min_face_size < 1:
        raise ConfigError(f"--min-face-size must be at least 1 pixel, got {args.min_face_size}")
    detector = FaceDetector(
        device=args.device, min_face_size=min(DETECTION_MIN_FACE, args.min_face_size), min_score=args.min_score
    )

    def process(path: Path, image: Image.Image) -> list[Crop]:
        faces = detector.detect(image)
        if not faces:
            raise SkipImage("no face")
        large = [f for f in faces if min(f.width, f.height) >= args.min_face_size]
        if not large:
            raise SkipImage("face too small", f"largest face {faces[0].width:.0f}x{faces[0].height:.0f} px")
        crops = []
        for face in large[: args.max_faces]:
            matrix = face_alignment_transform(face.landmarks, args.size, margin=args.margin)
            crop = warp_to_crop(image, matrix, args.size, border=args.border)
            crops.append(Crop(crop, {**face.to_dict(), "matrix": matrix.round(6).tolist()}))
        return crops

    options = {
        "size": args.size, "margin": args.margin, "max_faces": args.max_faces,
        "min_face_size": args.min_face_size, "min_score": args.min_score, "border": args.border,
    }
    summary = run_prep("human", args.src, args.out, process, options, ext=args.ext)
    print(format_summary(summary))
    return 0


def run_anime(args: argparse.Namespace) -> int:
    from twingan.faces.anime import AnimeFaceDetector
    from twingan.faces.prep_runner import Crop, SkipImage, format_summary, run_prep

    _check_common(args)
    detector = AnimeFaceDetector(
        args.cascade, enlarge=args.enlarge, outside=args.outside, min_size=args.min_face_size, backend=args.backend
    )

    def process(path: Path, image: Image.Image) -> list[Crop]:
        faces = detector.detect(image)
        if not faces:
            raise SkipImage("no face")
        return [Crop(detector.crop(image, face, args.size), face.to_dict()) for face in faces[: args.max_faces]]

    options = {
        "size": args.size, "enlarge": args.enlarge, "outside": args.outside,
        "max_faces": args.max_faces, "min_face_size": args.min_face_size, "backend": detector.backend,
    }
    summary = run_prep("anime", args.src, args.out, process, options, ext=args.ext)
    print(format_summary(summary))
    return 0


def run_cats(args: argparse.Namespace) -> int:
    from twingan.data.cat_crop import DEFAULT_MARGIN, CatKeypointError
    from twingan.faces.cats import cat_keypoint_path, crop_cat, read_cat_keypoints
    from twingan.faces.prep_runner import Crop, SkipImage, format_summary, run_prep

    _check_common(args)
    margin = DEFAULT_MARGIN if args.margin is None else args.margin

    def process(path: Path, image: Image.Image) -> list[Crop]:
        keypoint_file = cat_keypoint_path(path)
        if not keypoint_file.is_file():
            raise SkipImage("no .cat keypoint file", keypoint_file.name)
        try:
            keypoints = read_cat_keypoints(keypoint_file)
        except CatKeypointError as exc:
            raise SkipImage("invalid .cat keypoint file", exc.reason) from exc
        return [Crop(crop_cat(image, keypoints, args.size, margin), {"keypoints": keypoints.tolist()})]

    summary = run_prep("cats", args.src, args.out, process, {"size": args.size, "margin": margin}, ext=args.ext)
    print(format_summary(summary))
    return 0


def run_dedup(args: argparse.Namespace) -> int:
    from twingan.faces.dedup import dedup_folder, format_report

    if args.dup_dir is not None and args.action != "move":
        raise ConfigError("--dup-dir is only used with --action move")
    report = dedup_folder(args.dir, args.report, threshold=args.threshold, action=args.action, dup_dir=args.dup_dir)
    print(format_report(report, args.report))
    return 0
