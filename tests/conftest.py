import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # also for the training subprocesses the tests start

import pytest
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
torch.set_num_threads(1)  # tiny tensors: one thread is fastest and immune to a busy machine

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


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A tiny synthetic photo/anime dataset (24 unpaired images per style, 4 paired test faces, 16 px)."""
    from twingan.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, SYNTHETIC["n_train"], SYNTHETIC["n_test"], SYNTHETIC["size"], SYNTHETIC["seed"], progress=False)
    return root


@pytest.fixture(scope="session")
def judged_root(tmp_path_factory) -> Path:
    """A synthetic dataset large enough to fit the independent judges (200 pictures per style, 40 test faces, 16 px)."""
    from twingan.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("judged")
    generate_dataset(root, n_train=200, n_test=40, size=16, seed=3, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(synthetic_root, tmp_path_factory) -> Path:
    """A real checkpoint (domains human, anime; 16 px) from a ten-step training run, shared by the suite."""
    from twingan.training import train

    run_dir = tmp_path_factory.mktemp("tiny_run")
    return train(tiny_run_overrides(synthetic_root, run_dir))


def run_and_kill_after_first_checkpoint(overrides, run_dir: Path, timeout_s: float = 300) -> int:
    """Start `twingan train` in a subprocess, SIGKILL it once its first checkpoint exists; return its exit code."""
    import signal
    import subprocess
    import sys
    import time

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
