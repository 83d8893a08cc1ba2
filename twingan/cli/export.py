"""`twingan export CHECKPOINT --format pt2|onnx --to DOMAIN`: one direction as a standalone model;
`--format release`: the translator for inference, with a model card."""
from __future__ import annotations

import argparse
from pathlib import Path

RELEASE = "release"


def register(subparsers: argparse._SubParsersAction) -> None:
    from twingan.inference.export import DEFAULT_OPSET, FORMATS, PARITY_TOLERANCE

    parser = subparsers.add_parser(
        "export",
        description="--format pt2|onnx writes the checkpoint's translator for one direction (EMA weights, fp32) "
        "at its resolution R, made with torch.export: the model takes a float32 (N, 3, R, R) RGB batch in "
        "[-1, 1] and returns the translation, clamped to [-1, 1]; N is free. The written file is run on a "
        "fixed-seed batch and compared with PyTorch; the max abs difference is printed, and above the tolerance "
        "no file is kept and the exit status is 1. ONNX needs the onnx, onnxscript and onnxruntime packages "
        "(pip install 'twingan[export]'). A checkpoint trained with a style encoder or attributes is exported "
        "with those inputs too: 'reference' (N, 3, S, S), the reference face resized to the style resolution S, "
        "and 'attributes' (N, A), one one-hot block per group (zeros: keep); the file's metadata describes them. "
        "--plain exports the unconditioned translation. "
        "--format release writes what inference needs (the EMA translator, its config and format version; no "
        "optimiser states, discriminators, RNG states or local paths) as a checkpoint every command loads, and "
        "a model card (.md) beside it with its `twingan eval` scores when the synthetic test set is at hand.",
    )
    parser.add_argument("checkpoint", type=Path, help="a twingan training checkpoint (.safetensors)")
    parser.add_argument("--format", required=True, choices=(*FORMATS, RELEASE), dest="fmt",
                        help="pt2 (torch.export), onnx, or release (a release file and its model card)")
    parser.add_argument("--to", default=None, metavar="DOMAIN", help="target domain, e.g. anime (pt2, onnx)")
    parser.add_argument("--from", dest="src", default=None, metavar="DOMAIN",
                        help="source domain (default: with two domains, the one that is not --to)")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE",
                        help="output file (default: beside the checkpoint, <stem>.<from>-to-<to>.pt2|.onnx or "
                        "<stem>.release.safetensors)")
    parser.add_argument("--weights", choices=("ema", "model"), default="ema",
                        help="EMA (default) or raw weights (pt2, onnx; a release always holds the EMA weights)")
    parser.add_argument("--tolerance", type=float, default=PARITY_TOLERANCE,
                        help=f"largest accepted max abs difference from PyTorch (default {PARITY_TOLERANCE:g})")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--plain", action="store_true",
                        help="leave out the reference/attribute inputs of a conditioned checkpoint")
    parser.add_argument("--synthetic", type=Path, default=None, metavar="ROOT",
                        help="release: the synthetic dataset to score the model on for its card (default: the one "
                        "in the training config, when it exists)")
    parser.add_argument("--no-eval", action="store_true", help="release: do not score the model for its card")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from twingan.errors import ConfigError

    if args.fmt == RELEASE:
        return _release(args)
    if args.to is None:
        raise ConfigError(f"--format {args.fmt} exports one direction: give its target domain with --to")
    if args.tolerance < 0:
        raise ConfigError(f"--tolerance must be >= 0, got {args.tolerance}")
    from twingan.inference import Translator
    from twingan.inference.export import default_output_path, export_direction

    translator = Translator.load(args.checkpoint, device="cpu", weights=args.weights)
    src = translator.source_domain(args.to, args.src)
    out = args.out or default_output_path(args.checkpoint, args.fmt, src, args.to)
    result = export_direction(translator, args.fmt, args.to, src, out, tolerance=args.tolerance, opset=args.opset,
                              conditioned=not args.plain)
    print(f"wrote {result.path}: {result.format}, {result.src} -> {result.dst}, "
          f"input (N, 3, {result.resolution}, {result.resolution}) in [-1, 1]"
          + (f"; also {', '.join(result.inputs[1:])} (see the file's metadata)" if len(result.inputs) > 1 else ""))
    print(result.parity_line())
    return 0


def _release(args: argparse.Namespace) -> int:
    from twingan.errors import ConfigError
    from twingan.inference.release import write_release

    if args.weights != "ema":
        raise ConfigError("a release holds the EMA translator; --weights model applies to pt2 and onnx")
    if args.to or args.src or args.plain:
        raise ConfigError("--to, --from and --plain choose one direction (pt2, onnx); a release holds every one")
    if args.no_eval and args.synthetic is not None:
        raise ConfigError("--synthetic and --no-eval contradict each other; pass one")
    result = write_release(args.checkpoint, args.out, synthetic_root=args.synthetic, evaluate=not args.no_eval)
    print(f"wrote {result.path}: {result.size_line()}; sha256 {result.sha256}")
    scored = "with its eval scores" if result.scores else f"unscored ({result.unscored_reason}; see the card)"
    print(f"wrote {result.card}: the model card, {scored}")
    return 0
