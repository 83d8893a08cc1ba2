"""`twingan prep ...`: dataset preparation tools, one module per group of tools.

Each module in PREP_MODULES exposes ``register(prep_subparsers)`` like the
top-level commands do.
"""
from __future__ import annotations

import argparse
import importlib

PREP_MODULES: tuple[str, ...] = (
    "prep_synthetic",
    "prep_check",
    "prep_faces",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prep",
        description="Dataset preparation tools. Each tool shows a progress bar, can be resumed, "
        "and ends with a summary of kept and skipped files.",
    )
    prep_sub = parser.add_subparsers(dest="prep_command", metavar="TOOL")
    for name in PREP_MODULES:
        importlib.import_module(f"twingan.cli.{name}").register(prep_sub)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
