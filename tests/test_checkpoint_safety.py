"""Checkpoints under abuse: killed writes, file modes, flipped bytes, NaN weights, a full disk."""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from twingan.checkpoint import load_tensors, load_translator, read_meta, save_checkpoint, tensor_digest
from twingan.cli.main import main
from twingan.errors import CheckpointError
from twingan.inference import Translator
from twingan.training import train

from helpers import tiny_run_overrides

WIDER = ("model.max_channels=64", "model.fmap_base=256")
"""A model whose checkpoints (about 14 MB) take long enough to write that a watcher can kill the writer mid-write."""


def hidden_files(folder: Path) -> list[Path]:
    """Files under ``folder`` whose name, or a folder's on the way, starts with '.' (temporary files)."""
    return [p for p in folder.rglob("*") if p.is_file() and any(part.startswith(".") for part in
                                                                   p.relative_to(folder).parts)]


def _holds_data(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:  # renamed into place since it was listed
        return False


def kill_while_writing(command: list[str], folder: Path, umask: int = 0o022, timeout_s: float = 240) -> list[str]:
    """Run ``command``; SIGKILL it the moment a temporary file under ``folder`` holds data; return the names of
    the temporary files left."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: os.umask(umask))
    deadline = time.monotonic() + timeout_s
    try:
        while not (folder.is_dir() and any(_holds_data(p) for p in hidden_files(folder))):
            assert proc.poll() is None, "the run ended before a write could be interrupted"
            assert time.monotonic() < deadline, "no write was seen in time"
            time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        return [p.name for p in hidden_files(folder)]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_checkpoint_write_killed_midway_leaves_nothing_after_resume(synthetic_root, tmp_path):
    run_dir = tmp_path / "run"
    overrides = tiny_run_overrides(synthetic_root, run_dir, *WIDER)
    left = kill_while_writing([sys.executable, "-m", "twingan", "train", *overrides], run_dir / "checkpoints",
                              umask=0o027)
    assert left, "the writer was killed with a temporary file in place"
    resumed = subprocess.run([sys.executable, "-m", "twingan", "train", *overrides, "resume=auto"],
                             capture_output=True, text=True, timeout=300, preexec_fn=lambda: os.umask(0o027))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert hidden_files(run_dir) == []
    checkpoints = sorted((run_dir / "checkpoints").glob("ckpt-*.safetensors"))
    assert checkpoints[-1].name == "ckpt-000000000040.safetensors"
    assert {stat.S_IMODE(p.stat().st_mode) for p in checkpoints} == {0o640}  # what the umask allows, not 0600


def test_checkpoints_get_the_permissions_the_umask_gives(tmp_path):
    previous = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "a.safetensors", {"w": torch.ones(3)}, {"kind": "test"})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]


def tensor_offsets(path: Path) -> tuple[int, dict]:
    """Where the tensors lie in a safetensors file, read from its header as the format specifies it."""
    with open(path, "rb") as fh:
        size = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(size))
    return 8 + size, {k: v for k, v in header.items() if k != "__metadata__"}


def test_the_digest_is_the_sha256_of_the_tensor_bytes_in_name_order(tiny_checkpoint):
    import hashlib

    base, tensors = tensor_offsets(tiny_checkpoint)
    blob = Path(tiny_checkpoint).read_bytes()
    digest = hashlib.sha256()
    for name in sorted(tensors):
        start, end = tensors[name]["data_offsets"]
        digest.update(blob[base + start: base + end])
    assert read_meta(tiny_checkpoint)["tensor_sha256"] == digest.hexdigest() == tensor_digest(load_tensors(tiny_checkpoint))


def test_flipped_bytes_in_an_optimiser_tensor_are_caught_by_every_load(synthetic_root, tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(tiny_run_overrides(synthetic_root, run_dir, "train.max_images=16"))
    corrupt = run_dir / "checkpoints" / "ckpt-000000000016.safetensors"
    base, tensors = tensor_offsets(corrupt)
    name = max((k for k in tensors if k.startswith("optim.g.")),
               key=lambda k: tensors[k]["data_offsets"][1] - tensors[k]["data_offsets"][0])
    start = base + tensors[name]["data_offsets"][0]
    blob = bytearray(corrupt.read_bytes())
    blob[start: start + 64] = bytes(b ^ 0xFF for b in blob[start: start + 64])
    corrupt.write_bytes(bytes(blob))
    read_meta(corrupt)  # the header is intact: only the digest tells
    with pytest.raises(CheckpointError, match="does not match the checksum"):
        load_translator(corrupt)
    for command in (["translate", str(corrupt), str(synthetic_root / "test" / "photo"), "--to", "anime", "--out",
                     str(tmp_path / "out"), "--no-progress"],
                    ["eval", str(corrupt), "--device", "cpu", "--quiet"]):
        assert main(command) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "does not match the checksum" in err[0], err
    # A resume passes over the corrupt checkpoint to the one before it and trains on to the end.
    final = train(tiny_run_overrides(synthetic_root, run_dir, "resume=auto"))
    assert read_meta(final)["progress"]["images_seen"] == 40
    assert load_tensors(run_dir / "checkpoints" / "ckpt-000000000016.safetensors")  # rewritten, verified


def poisoned_checkpoint(tiny_checkpoint: Path, path: Path, poison) -> Path:
    """A copy of the tiny checkpoint with ``poison(name, tensor)`` applied to its EMA tensors."""
    meta = read_meta(tiny_checkpoint)
    tensors = load_tensors(tiny_checkpoint)
    for name in [k for k in tensors if k.startswith("ema.")]:
        tensors[name] = poison(name, tensors[name])
    return save_checkpoint(path, tensors, meta)


def test_a_checkpoint_with_nan_weights_is_refused_by_every_command(tiny_checkpoint, synthetic_root, tmp_path, capsys):
    first = {}

    def one_nan(name, t):
        if t.is_floating_point() and t.numel() > 1 and not first:
            first[name] = True
            t = t.clone()
            t.view(-1)[0] = float("nan")
        return t

    nan = poisoned_checkpoint(tiny_checkpoint, tmp_path / "nan.safetensors", one_nan)
    photos = synthetic_root / "test" / "photo"
    commands = [
        ["translate", str(nan), str(photos), "--to", "anime", "--out", str(tmp_path / "t"), "--no-progress"],
        ["eval", str(nan), "--device", "cpu", "--quiet"],
        ["embed", str(nan), str(photos), "--domain", "human", "--out", str(tmp_path / "e"), "--no-progress"],
        ["export", str(nan), "--format", "pt2", "--to", "anime", "--out", str(tmp_path / "x.pt2")],
    ]
    for command in commands:
        assert main(command) == 1, command
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "hold NaN or infinite values" in err[0], (command, err)
    assert not (tmp_path / "t").exists() or not any((tmp_path / "t").iterdir())
    assert not (tmp_path / "x.pt").exists()


def test_weights_that_overflow_are_refused_at_the_output(tiny_checkpoint, synthetic_root, tmp_path, capsys):
    huge = poisoned_checkpoint(tiny_checkpoint, tmp_path / "huge.safetensors",
                               lambda name, t: t * 1e30 if t.is_floating_point() and name.endswith("weight") else t)
    translator = Translator.load(huge, device="cpu")
    face = Image.fromarray(np.full((16, 16, 3), 128, np.uint8))
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        translator.translate(face, to="anime")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        translator.embed(face, domain="human")
    assert main(["eval", str(huge), "--device", "cpu", "--quiet"]) == 1  # NaN similarities used to score 1.0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NaN or infinite" in err[0] and "huge.safetensors" in err[0], err
    out = tmp_path / "out"
    assert main(["translate", str(huge), str(synthetic_root / "test" / "photo"), "--to", "anime", "--out", str(out),
                 "--no-detect", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NaN or infinite" in err[0]
    assert not out.exists() or not any(out.rglob("*.png"))


def test_nan_embeddings_never_count_as_recall_hits():
    from twingan.metrics.retrieval import twin_recall_at_k

    queries = np.full((4, 3), np.nan, np.float32)
    assert twin_recall_at_k(queries, np.eye(4, 3, dtype=np.float32), ks=(1,)) == {1: 0.0}


def limited_file_size(limit: int):
    """preexec_fn: files may not grow beyond ``limit`` bytes (a write past it fails with EFBIG, as a full disk
    fails with ENOSPC), without the SIGXFSZ that would kill the process."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("limit", [200, 200_000])
def test_a_failed_write_during_training_is_one_line_and_leaves_no_partial_file(synthetic_root, tmp_path, limit):
    """200 bytes: config.yaml at the start cannot be written; 200 kB: the first checkpoint (300 kB) cannot."""
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "twingan", "train", *tiny_run_overrides(synthetic_root, run_dir)],
                          capture_output=True, text=True, timeout=300, preexec_fn=limited_file_size(limit))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("twingan train: error: cannot write ") and "file too large" in last, done.stderr[-2000:]
    assert hidden_files(run_dir) == []
    assert list(run_dir.rglob("*.safetensors")) == []
