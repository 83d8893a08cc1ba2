"""`twingan export CHECKPOINT --format torchscript|onnx --to DOMAIN`: one direction as a standalone model."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from twingan.inference.export import DEFAULT_OPSET, FORMATS, PARITY_TOLERANCE

    parser = subparsers.add_parser(
        "export",
        help="export one translation direction to TorchScript or ONNX (with a parity check)",
        description="Write the checkpoint's translator for one direction (EMA weights, fp32) at its resolution R. "
        "The model takes a float32 (N, 3, R, R) RGB batch in [-1, 1] and returns the translation, clamped to "
        "[-1, 1]; N is free. The written file is run on a fixed-seed batch and compared with PyTorch; the max "
        "abs difference is printed, and above the tolerance no file is kept and the exit status is 1. "
        "ONNX needs the onnx and onnxruntime packages (pip install 'twingan[export]'). A checkpoint trained "
        "with a style encoder or attributes is exported with those inputs too: 'reference' (N, 3, S, S), the "
        "reference face resized to the style resolution S, and 'attributes' (N, A), one one-hot block per group "
        "(zeros: keep); the file's metadata describes them. --plain exports the unconditioned translation.",
    )
    parser.add_argument("checkpoint", type=Path, help="a twingan checkpoint (.safetensors)")
    parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt", help="torchscript (.pt) or onnx")
    parser.add_argument("--to", required=True, metavar="DOMAIN", help="target domain, e.g. anime")
    parser.add_argument("--from", dest="src", default=None, metavar="DOMAIN",
                        help="source domain (default: with two domains, the one that is not --to)")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE",
                        help="output file (default: beside the checkpoint, <stem>.<from>-to-<to>.pt|.onnx)")
    parser.add_argument("--weights", choices=("ema", "model"), default="ema", help="EMA (default) or raw weights")
    parser.add_argument("--tolerance", type=float, default=PARITY_TOLERANCE,
                        help=f"largest accepted max abs difference from PyTorch (default {PARITY_TOLERANCE:g})")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--plain", action="store_true",
                        help="leave out the reference/attribute inputs of a conditioned checkpoint")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from twingan.errors import ConfigError
    from twingan.inference import Translator
    from twingan.inference.export import default_output_path, export_direction

    if args.tolerance < 0:
        raise ConfigError(f"--tolerance must be >= 0, got {args.tolerance}")
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
