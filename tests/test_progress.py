"""Progress output: a live bar in a terminal, plain rate-limited lines in logs, pipes and files."""
from __future__ import annotations

import io
import re
import subprocess
import sys
import time

from tqdm import tqdm

from helpers import tiny_run_overrides
from twingan.utils.progress import LogProgress, progress_bar

LINE = re.compile(r"^work: +\d+% \d+/40 \[[\d:]+<[\d:?]+, [^\]]*photo/s(, loss=[\d.]+)?\]$")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_whole_lines_at_most_every_interval():
    log = io.StringIO()
    start = time.monotonic()
    with progress_bar(total=40, desc="work", unit="photo", file=log, interval=0.25) as bar:
        assert isinstance(bar, LogProgress)
        for step in range(40):
            time.sleep(0.02)
            bar.update(1)
            bar.set_postfix(loss=f"{step / 10:.1f}")  # tqdm redraws on every postfix: still rate-limited
    elapsed = time.monotonic() - start
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert all(LINE.match(line) for line in lines), lines
    assert lines[0].startswith("work:   0% 0/40") and lines[-1].startswith("work: 100% 40/40")
    assert 3 <= len(lines) <= elapsed / 0.25 + 2


def test_iterables_and_unknown_totals_in_a_log():
    log = io.StringIO()
    assert list(progress_bar(range(3), file=log, interval=10)) == [0, 1, 2]
    assert log.getvalue().splitlines() == [log.getvalue().splitlines()[0], log.getvalue().splitlines()[-1]]
    assert log.getvalue().splitlines()[0].startswith("  0% 0/3")
    assert log.getvalue().splitlines()[-1].startswith("100% 3/3")
    log = io.StringIO()
    with progress_bar(desc="faces", file=log, interval=10) as bar:
        bar.update(5)
    assert log.getvalue().splitlines()[-1].startswith("faces: 5it [")
    silent = io.StringIO()
    with progress_bar(total=3, file=silent, disable=True) as bar:
        bar.update(3)
    assert silent.getvalue() == ""


def test_a_terminal_gets_the_live_bar():
    screen = Terminal()
    with progress_bar(total=3, desc="work", file=screen) as bar:
        assert type(bar) is tqdm
        bar.update(3)
    assert "\r" in screen.getvalue()


def test_training_writes_plain_lines_when_its_output_is_a_file(synthetic_root, tmp_path):
    overrides = tiny_run_overrides(synthetic_root, tmp_path / "run")
    overrides = [o for o in overrides if not o.startswith("logging.progress_bar")] + ["logging.progress_bar=true"]
    with open(tmp_path / "train.log", "w") as log:
        subprocess.run([sys.executable, "-m", "twingan", "train", *overrides], stdout=log, stderr=subprocess.STDOUT,
                       check=True)
    text = (tmp_path / "train.log").read_text()
    assert "\r" not in text
    progress = [line for line in text.splitlines() if re.match(r"^\s*\d+% \d+/\d+ \[", line)]
    assert len(progress) >= 2 and progress[0].startswith("  0% 0/") and progress[-1].startswith("100% "), text
