"""Helpers shared by the test modules (imported as ``helpers``: pytest puts tests/ on the import path);
conftest.py keeps only the fixtures."""
from helpers.runs import SYNTHETIC, run_and_kill_after_first_checkpoint, tiny_run_overrides

__all__ = ["SYNTHETIC", "run_and_kill_after_first_checkpoint", "tiny_run_overrides"]
