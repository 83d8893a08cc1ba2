"""Command-line start-up: wall time of `twingan --help`, `--version` and a sub-command's help, and of importing torch.

Each command runs in a fresh interpreter (`python -m twingan ...`, as the console script does) several times;
the median and the fastest run are printed in seconds. The torch import is the reference: it is what
`--help` used to pay for.

    python scripts/bench_cli.py --runs 7
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "twingan --help": [sys.executable, "-m", "twingan", "--help"],
    "twingan --version": [sys.executable, "-m", "twingan", "--version"],
    "twingan translate --help": [sys.executable, "-m", "twingan", "translate", "--help"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def time_command(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (default 7)")
    args = parser.parse_args()
    for name, argv in COMMANDS.items():
        times = time_command(argv, args.runs)
        print(f"{name:<28} median {statistics.median(times):.3f} s   fastest {min(times):.3f} s   ({args.runs} runs)")


if __name__ == "__main__":
    main()
