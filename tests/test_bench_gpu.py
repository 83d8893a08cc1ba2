"""scripts/bench_gpu.sh runs every part end to end: on the CPU at tiny sizes here, on CUDA where there is a GPU.

The GPU figures of BENCHMARKS.md come from this script; these tests keep it runnable on a machine without one,
so the few minutes of a lent GPU are spent measuring, not debugging the script.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--train-res", "8", "--infer-res", "16", "--batches", "1 2", "--faiss-size", "2000", "--faiss-dim", "32",
        "--steps", "1", "--max-channels", "8", "--train-batch", "2", "--threads", "1"]


def run_script(tmp_path: Path, device: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(ROOT / "scripts" / "bench_gpu.sh"), "--device", device, *TINY,
                           "--out", str(tmp_path / "logs")], capture_output=True, text=True, env=env, timeout=3000)


def check_logs(result: subprocess.CompletedProcess, logs: Path) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    train = (logs / "train.log").read_text()
    for label in ("| 8 | new |", "| 8 | channels_last |", "| 8 | bf16 |", "| 8 | bf16+channels_last |",
                  "| 8 | compiled |"):
        assert label in train, train
    assert "compiled encoder + generator" in train
    assert "TwinGAN" in (logs / "infer.log").read_text()
    assert "flat" in (logs / "faiss.log").read_text() and "ivf_sq8" in (logs / "faiss.log").read_text()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="bench_gpu.sh needs bash")
def test_bench_gpu_runs_every_part_on_the_cpu(tmp_path):
    check_logs(run_script(tmp_path, "cpu"), tmp_path / "logs")


def test_bench_gpu_refuses_cuda_without_a_gpu_and_unknown_options(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = str(ROOT / "scripts" / "bench_gpu.sh")
    bad = subprocess.run(["bash", script, "--frobnicate", "1"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "unknown option --frobnicate" in bad.stderr
    if not torch.cuda.is_available():
        refused = subprocess.run(["bash", script, "--out", str(tmp_path / "logs")], capture_output=True, text=True,
                                 env=env, timeout=600)
        assert refused.returncode == 2 and "no CUDA device" in refused.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
def test_bench_gpu_runs_every_part_on_cuda(tmp_path):
    check_logs(run_script(tmp_path, "cuda"), tmp_path / "logs")
