import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # also for the training subprocesses the tests start

import pytest
import torch

from helpers import SYNTHETIC, tiny_run_overrides

os.environ.setdefault("TQDM_DISABLE", "1")
torch.set_num_threads(1)  # tiny tensors: one thread is fastest and immune to a busy machine


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
