"""Entry point of the `twingan` command.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed namespace and returning an exit status. Modules are imported
lazily by name so that `twingan --help` stays fast and a sub-command's heavy
dependencies load only when it runs.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from twingan.errors import TwinGANError

COMMAND_MODULES: tuple[str, ...] = (
    "summary",
    "train",
    "demo",
    "prep",
    "fid",
    "eval",
    "embed",
    "index",
    "translate",
    "generate",
    "export",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twingan",
        description="Unpaired face-domain translation (TwinGAN) and cross-domain face search.",
    )
    from twingan import __version__

    parser.add_argument("--version", action="version", version=f"twingan {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"twingan.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except TwinGANError as exc:
        print(f"twingan {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"twingan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
