"""`twingan completion bash|zsh|tcsh`: a shell completion script for every sub-command and option."""
from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh", "tcsh")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "completion",
        description="Print a static completion script (made with shtab from the command's own parser): "
        "sub-commands, their options and option choices, file names for paths. Install it once, e.g. bash: "
        "twingan completion bash > ~/.local/share/bash-completion/completions/twingan; zsh: twingan completion "
        "zsh > ~/.zfunc/_twingan (with ~/.zfunc in $fpath).",
    )
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shtab

    from twingan.cli.main import build_parser

    print(shtab.complete(build_parser(full=True), shell=args.shell))
    return 0
