"""Entry point of the `twingan` command.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed namespace and returning an exit status. Only the module of the
command being run is imported: `twingan --help` and `twingan --version` list the
commands from :data:`COMMANDS` without importing any of them (some import torch,
which takes seconds), and a sub-command's heavy dependencies load only when it
runs. `twingan completion bash` builds the whole parser once to write a shell
completion script.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from twingan.errors import TwinGANError

COMMANDS: dict[str, str] = {
    "summary": "print the networks' per-layer parameter counts",
    "train": "train a model (Hydra overrides, e.g. experiment=selfie2anime data.domains.anime.root=...)",
    "demo": "generate synthetic faces, train a small model on CPU, write an HTML report",
    "prep": "prepare datasets: synthetic faces, face crops, de-duplication, checks, caches",
    "fid": "FID and KID between two image folders (standard TF-Inception features)",
    "eval": "score a checkpoint: synthetic paired test set, baselines, FID/KID of translations",
    "embed": "embed images of one domain into an embeddings store (for `twingan index build`)",
    "index": "build, extend, inspect and query the similar-face index",
    "translate": "translate photos or face crops into another domain (selfie -> anime avatar)",
    "generate": "generate new faces from noise (checkpoints trained with a mapping network)",
    "export": "export a release file for inference, or one direction to torch.export (.pt2) or ONNX",
    "serve": "web demo: translate an uploaded or webcam photo, search similar faces (needs the [web] extra)",
    "completion": "print a shell completion script (bash, zsh or tcsh) for the twingan command",
}
"""Sub-command -> the one line `twingan --help` shows for it, in that order; the module is ``twingan.cli.<name>``."""


def build_parser(command: str | None = None, *, full: bool = False) -> argparse.ArgumentParser:
    """The `twingan` parser. ``command``'s module is imported and registers its own parser; the other
    commands are one-line entries (enough to list them and to refuse unknown ones). ``full`` imports and
    registers every command (for completion scripts)."""
    parser = argparse.ArgumentParser(
        prog="twingan",
        description="Unpaired face-domain translation (TwinGAN) and cross-domain face search.",
    )
    from twingan import __version__

    parser.add_argument("--version", action="version", version=f"twingan {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, line in COMMANDS.items():
        if full or name == command:
            importlib.import_module(f"twingan.cli.{name}").register(_WithHelpLine(subparsers, line))
        else:
            subparsers.add_parser(name, help=line, add_help=False)
    return parser


class _WithHelpLine:
    """The sub-parsers, as a command module sees them: its parser gets the command's line from COMMANDS."""

    def __init__(self, subparsers: argparse._SubParsersAction, line: str) -> None:
        self._subparsers = subparsers
        self._line = line

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        return self._subparsers.add_parser(name, help=self._line, **kwargs)


def command_of(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv``: its first argument that is not an option (no global option takes a value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(command_of(argv))
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
