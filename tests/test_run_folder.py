"""A run folder under abuse: every checkpoint unreadable, two processes on one folder, a stale lock, temporary
files of live writers, SIGTERM and SIGINT during training."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from twingan.checkpoint import load_tensors, read_meta
from twingan.cli.main import main
from twingan.training import train
from twingan.training.run_folder import RunFolder
from twingan.utils.atomic import atomic_path, remove_stale_temporaries

from helpers import tiny_run_overrides


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def flip_a_tensor_byte(path: Path) -> None:
    """Corrupt the last byte of the tensor data (the header stays readable: only the digest tells)."""
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))


def folder_state(root: Path) -> dict[str, str]:
    """Every file under ``root`` and the SHA-256 of its bytes (but the run lock's, which names its last holder)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "train.lock"}


def checkpoint_names(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").glob("ckpt-*.safetensors"))


def default_signals() -> None:
    """In the child: SIGINT as a terminal gives it (a background job's children inherit it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_training(overrides, *, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "twingan", "train", *overrides], stdout=stdout, stderr=stderr,
                            text=True, preexec_fn=default_signals)


def wait_for_steps(proc: subprocess.Popen, run_dir: Path, steps: int, timeout_s: float = 900) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        log = run_dir / "log.jsonl"
        if log.exists() and sum('"g_total"' in line for line in log.read_text().splitlines()) >= steps:
            return
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "the run did not get that far in time"
        time.sleep(0.005)


# ---------------------------------------------------------------- resume=auto, retention


def test_resume_auto_with_every_checkpoint_unreadable_refuses_in_one_line_and_changes_nothing(
        synthetic_root, tmp_path, capsys):
    run_dir = tmp_path / "run"
    overrides = tiny_run_overrides(synthetic_root, run_dir, "train.max_images=16")
    train(overrides)
    for path in (run_dir / "checkpoints").glob("ckpt-*.safetensors"):
        flip_a_tensor_byte(path)
    before = folder_state(run_dir)
    assert main(["train", *tiny_run_overrides(synthetic_root, run_dir), "resume=auto"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("twingan train: error: resume=auto: no checkpoint in ")
    assert "ckpt-000000000016.safetensors, ckpt-000000000008.safetensors" in err[-1]
    assert "resume=PATH" in err[-1] and "another run_dir" in err[-1]
    assert folder_state(run_dir) == before  # the log is whole, no checkpoint deleted or added


def test_retention_counts_only_the_runs_own_readable_checkpoints(synthetic_root, tmp_path, capsys):
    """Two corrupt files of higher image counts than the run reaches never count as the newest: every new
    checkpoint stays, the corrupt ones too, and the final checkpoint printed exists."""
    run_dir = tmp_path / "run"
    train(tiny_run_overrides(synthetic_root, run_dir, "train.max_images=8"))
    good = run_dir / "checkpoints" / "ckpt-000000000008.safetensors"
    for later in (48, 56):
        corrupt = run_dir / "checkpoints" / f"ckpt-{later:012d}.safetensors"
        corrupt.write_bytes(good.read_bytes())
        flip_a_tensor_byte(corrupt)
    capsys.readouterr()
    assert main(["train", *tiny_run_overrides(synthetic_root, run_dir, "train.checkpoint.keep_last=2"),
                 "resume=auto"]) == 0
    final = Path(capsys.readouterr().out.strip().splitlines()[-1].removeprefix("final checkpoint: "))
    assert final.is_file() and read_meta(final)["progress"]["images_seen"] == 40
    assert checkpoint_names(run_dir) == [f"ckpt-{n:012d}.safetensors" for n in (32, 40, 48, 56)]


# ---------------------------------------------------------------- one owner per run folder


def test_the_run_lock_names_its_holder_and_a_killed_holders_lock_is_taken_over(tmp_path):
    from twingan.training.run_lock import RunFolderBusy, RunLock

    first = RunLock(tmp_path / "run")
    first.acquire()
    try:
        with pytest.raises(RunFolderBusy, match=f"in use by another training run \\(pid {os.getpid()}, since "):
            RunLock(tmp_path / "run").acquire()
    finally:
        first.release()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from twingan.training.run_lock import RunLock;"
                               f"RunLock({str(tmp_path / 'run')!r}).acquire(); print('held', flush=True); "
                               "time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy, match=f"pid {holder.pid}"):
            RunLock(tmp_path / "run").acquire()
        holder.kill()
        holder.wait()
        taker = RunLock(tmp_path / "run")
        taker.acquire()  # the kernel dropped the killed holder's lock: a stale lock is simply taken
        assert json.loads((tmp_path / "run" / "train.lock").read_text())["pid"] == os.getpid()
        taker.release()
    finally:
        holder.kill()
        holder.wait()


def test_a_second_training_run_on_the_same_folder_is_refused_naming_the_first(synthetic_root, tmp_path):
    run_dir = tmp_path / "run"
    long_run = tiny_run_overrides(synthetic_root, run_dir, "train.schedule.final_stable_images=100000",
                                  "train.cpu_threads=1", "train.checkpoint.keep_last=100000")
    first = start_training(long_run)  # keeps every checkpoint: its own retention must not look like the second's
    try:
        wait_for_steps(first, run_dir, 3)
        before = folder_state(run_dir / "checkpoints")
        second = subprocess.run([sys.executable, "-m", "twingan", "train", *long_run, "resume=auto",
                                 "train.max_images=16"],
                                capture_output=True, text=True, timeout=900)
        assert second.returncode == 1
        assert "Traceback" not in second.stderr
        line = second.stderr.strip().splitlines()[-1]
        assert line.startswith("twingan train: error: run folder ") and f"(pid {first.pid}, since " in line
        assert first.poll() is None  # the first run goes on: nothing of its was touched
        assert set(before) <= set(folder_state(run_dir / "checkpoints"))
    finally:
        first.kill()
        first.wait()
    lines = len(read_log(run_dir))
    assert lines == len({(r.get("step"), r.get("images"), r.get("event")) for r in read_log(run_dir)})


def test_a_cleanup_leaves_a_locked_temporary_file_of_a_process_it_cannot_see(tmp_path):
    """A writer on another machine sharing the folder: its process id means nothing here (it may be a dead
    process's), but it holds its file's lock, so neither the general cleanup nor the run folder's touches it."""
    folder = RunFolder(tmp_path / "run")
    folder.create()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    names = [f".ckpt-000000000008.safetensors.{dead_pid}.abc123.tmp.safetensors", f".tw.{dead_pid}.xyz789.tmp.png"]
    held = [folder.checkpoints / names[0], folder.samples / names[1]]
    stale = [folder.checkpoints / names[0].replace("abc123", "old111"), folder.samples / names[1].replace("xyz", "q")]
    for path in held + stale:
        path.write_bytes(b"partial")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time\n"
                               "files = [open(p, 'rb') for p in sys.argv[1:]]\n"
                               "[fcntl.flock(f, fcntl.LOCK_EX) for f in files]\n"
                               "print('held', flush=True); time.sleep(120)", *map(str, held)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        folder.remove_stale_temporaries()
        assert [p.exists() for p in held] == [True, True]
        assert [p.exists() for p in stale] == [False, False]
    finally:
        holder.kill()
        holder.wait()
    assert remove_stale_temporaries(folder.checkpoints) == 1  # once the writer is gone


def test_a_temporary_file_being_written_by_this_process_is_not_stale(tmp_path):
    with atomic_path(tmp_path / "out.png") as tmp:
        tmp.write_bytes(b"half")
        assert remove_stale_temporaries(tmp_path) == 0 and tmp.exists()
    assert (tmp_path / "out.png").read_bytes() == b"half"


# ---------------------------------------------------------------- SIGTERM and SIGINT


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_the_resume_is_exact(synthetic_root, tmp_path, signum):
    reference = tmp_path / "reference"
    train(tiny_run_overrides(synthetic_root, reference, "train.cpu_threads=1"))
    run_dir = tmp_path / "interrupted"
    overrides = tiny_run_overrides(synthetic_root, run_dir, "train.cpu_threads=1")
    proc = start_training(overrides, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_steps(proc, run_dir, 3)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=900)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, err[-2000:]
    assert f"{signal.Signals(signum).name} received: stopping after this step" in err
    stopped_at = max(r["images"] for r in read_log(run_dir) if "g_total" in r)
    assert stopped_at < 40
    assert out.strip().splitlines()[-1] == (f"stopped by {signal.Signals(signum).name}: checkpoint "
                                            f"{run_dir / 'checkpoints' / f'ckpt-{stopped_at:012d}.safetensors'}; "
                                            "continue with resume=auto")
    assert read_meta(run_dir / "checkpoints" / f"ckpt-{stopped_at:012d}.safetensors")["progress"]["images_seen"] \
        == stopped_at
    assert main(["train", *overrides, "resume=auto"]) == 0
    a = load_tensors(sorted((reference / "checkpoints").glob("ckpt-*.safetensors"))[-1])
    b = load_tensors(sorted((run_dir / "checkpoints").glob("ckpt-*.safetensors"))[-1])
    for key in a:
        if key.startswith(("model.", "ema.", "disc.", "optim.")):
            assert torch.equal(a[key], b[key]), key
    assert [r["g_total"] for r in read_log(run_dir) if "g_total" in r] == \
        [r["g_total"] for r in read_log(reference) if "g_total" in r]


@pytest.mark.parametrize(("signum", "returncode", "output"), [
    (signal.SIGTERM, -signal.SIGTERM, ""), (signal.SIGINT, -signal.SIGINT, "KeyboardInterrupt")])
def test_a_second_signal_aborts_at_once(signum, returncode, output):
    """A second signal ends the process at once: SIGTERM by its default action, SIGINT as an unhandled
    KeyboardInterrupt, which Python (3.8 and newer) ends by re-raising SIGINT on itself."""
    script = ("import os, signal, time\n"
              "from twingan.training.stop_request import StopRequest\n"
              "with StopRequest() as stop:\n"
              f"    os.kill(os.getpid(), {int(signum)})\n"
              "    print('stop requested' if stop.requested else 'nothing', flush=True)\n"
              f"    os.kill(os.getpid(), {int(signum)})\n"
              "    time.sleep(30)\n"
              "    print('not aborted', flush=True)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          preexec_fn=default_signals)
    assert done.stdout.strip().splitlines() == ["stop requested"]
    assert done.returncode == returncode and output in done.stderr


def test_a_signal_the_process_was_started_ignoring_stays_ignored():
    """nohup, or a background job's SIGINT: the user asked for the signal to be ignored, and it is."""
    script = ("import os, signal, time\n"
              "from twingan.training.stop_request import StopRequest\n"
              "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
              "with StopRequest() as stop:\n"
              "    os.kill(os.getpid(), signal.SIGINT)\n"
              "    time.sleep(0.2)\n"
              "    print('requested' if stop.requested else 'ignored', flush=True)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ignored", done.stderr
