"""Training runs for the tests: tiny Hydra overrides, and a run killed once it has written a checkpoint."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

SYNTHETIC = dict(n_train=24, n_test=4, size=16, seed=0)


def tiny_run_overrides(synthetic_root, run_dir, *extra):
    """Hydra overrides for a 4 -> 16 px run of ten steps of a very narrow model on the synthetic faces."""
    return [
        "experiment=demo",
        f"data.synthetic.root={synthetic_root}",
        *(f"data.synthetic.{k}={v}" for k, v in SYNTHETIC.items()),
        f"run_dir={run_dir}",
        "model.resolution=16",
        "model.max_channels=8",
        "model.fmap_base=32",
        "train.schedule.batch_size={4: 4, 8: 4, 16: 4}",
        "train.schedule.fade_images=8",
        "train.schedule.stable_images=8",
        "train.schedule.final_stable_images=8",
        "train.checkpoint.every_images=8",
        "train.checkpoint.keep_last=20",
        "logging.every_steps=1",
        "logging.samples.every_images=16",
        "logging.progress_bar=false",
        "logging.tensorboard=false",
        *extra,
    ]


def run_and_kill_after_first_checkpoint(overrides, run_dir: Path, timeout_s: float = 300) -> int:
    """Start `twingan train` in a subprocess, SIGKILL it once its first checkpoint exists; return its exit code."""
    proc = subprocess.Popen([sys.executable, "-m", "twingan", "train", *overrides],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    try:
        while not list((Path(run_dir) / "checkpoints").glob("ckpt-*.safetensors")):
            assert proc.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "no checkpoint appeared in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
