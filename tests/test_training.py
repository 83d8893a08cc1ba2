"""Real (tiny) training runs through the public entry points: growth, resume, guards, DDP, config."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from twingan.checkpoint import load_tensors, load_translator, read_meta
from twingan.cli.main import main
from twingan.errors import ConfigError, DatasetError
from twingan.losses.translation import TranslationLosses
from twingan.training import TrainingDiverged, compose_config, train
from twingan.training.schedule import ProgressiveSchedule

from helpers import run_and_kill_after_first_checkpoint, tiny_run_overrides


def read_log(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]


def test_schedule_phases_and_alpha():
    s = ProgressiveSchedule(4, 16, fade_images=100, stable_images=50, batch_size={4: 10, 8: 10, 16: 5})
    assert [(p.resolution, p.kind, p.length) for p in s.phases] == [
        (4, "stable", 50), (8, "fade", 100), (8, "stable", 50), (16, "fade", 100), (16, "stable", 50)
    ]
    assert s.total_images == 350
    assert s.alpha_at(50) == 0.0 and s.alpha_at(100) == 0.5 and s.alpha_at(150) == 1.0
    assert s.phase_at(349).resolution == 16 and s.phase_at(200).kind == "fade"
    with pytest.raises(ConfigError, match="batch_size"):
        ProgressiveSchedule(4, 16, 10, 10, {4: 2, 8: 2})
    late = ProgressiveSchedule(32, 64, 10, 10, {32: 4, 64: 4})
    assert late.phases[0].resolution == 32 and late.phases[0].kind == "stable"


def test_training_through_the_cli_grows_across_resolutions(synthetic_root, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", *tiny_run_overrides(synthetic_root, run_dir)]) == 0
    records = [r for r in read_log(run_dir) if "g_total" in r]
    assert {r["resolution"] for r in records} == {4, 8, 16}
    fade = [r["alpha"] for r in records if r["phase"] == "fade"]
    assert fade and all(0.0 <= a < 1.0 for a in fade) and fade != sorted(fade, reverse=True)
    assert all(r["images_per_s"] > 0 for r in records)
    ckpts = sorted((run_dir / "checkpoints").glob("ckpt-*.safetensors"))
    meta = read_meta(ckpts[-1])
    assert meta["progress"]["resolution"] == 16 and meta["progress"]["images_seen"] == 40
    assert meta["config"]["model"]["max_channels"] == 8
    assert (run_dir / "config.yaml").read_text().count("max_channels: 8") == 1
    assert list((run_dir / "samples").glob("*.png"))
    model, _ = load_translator(ckpts[-1])
    out = model.translate(torch.zeros(1, 3, 16, 16), "human", "anime")
    assert out.shape == (1, 3, 16, 16) and torch.isfinite(out).all()


def test_config_overrides_and_errors(tmp_path):
    cfg = compose_config(["experiment=demo", "model.max_channels=8", "loss/gan=wgan_gp", "train.optimizer.lr=0.01"])
    assert cfg.model.max_channels == 8 and cfg.loss.gan.objective == "wgan-gp" and cfg.train.optimizer.lr == 0.01
    assert cfg.name == "demo" and cfg.train.schedule.final_resolution == cfg.model.resolution
    with pytest.raises(ConfigError, match="data.domains.human.root"):
        compose_config(["experiment=selfie2anime"])
    with pytest.raises(ConfigError, match="unknown setting model.no_such_key"):
        compose_config(["model.no_such_key=1"])
    three = compose_config(["experiment=three_domains", "data.domains.human.root=a", "data.domains.anime.root=b",
                            "data.domains.cat.root=c"])
    assert list(three.data.domains) == ["human", "anime", "cat"] and three.model.resolution == 128


@pytest.mark.parametrize("override, message", [
    ("train.optimizer.lr=-1", "train.optimizer.lr=-1 is out of range: it must be > 0"),
    ("train.optimizer.lr=fast", "train.optimizer.lr=fast: expected a number; e.g. train.optimizer.lr=0.001"),
    ("seed=abc", "seed=abc: expected an integer; e.g. seed=0"),
    ("model.resolution=abc", "model.resolution=abc: expected an integer; e.g. model.resolution=32"),
    ("+train.optimiser.lr=1", "unknown setting train.optimiser.lr (did you mean train.optimizer.lr?)"),
    ("train.optimizer.betas=[0.5,1.5]", "train.optimizer.betas.1=1.5 is out of range: it must be in [0, 1)"),
    ("train.schedule.batch_size.4=0", "train.schedule.batch_size.4=0 is out of range: it must be >= 1"),
    ("logging.tensorboard=1", "logging.tensorboard=1: expected true or false"),
    ("train.max_images=0", "train.max_images=0 is out of range: it must be >= 1 (or null)"),
    ("train.grad_clip=abc", "train.grad_clip=abc: expected a number"),
    ("train.optimizer=null", "train.optimizer=null: expected a group of settings"),
    ("train.precision=fp64", "train.precision='fp64' is not one of auto, fp32, bf16, fp16"),
    ("train.channels_last=sometimes", "train.channels_last='sometimes' is not one of auto, true, false"),
])
def test_bad_settings_are_refused_in_one_line_naming_the_key(override, message, capsys):
    with pytest.raises(ConfigError) as caught:
        compose_config(["experiment=demo", override])
    assert str(caught.value).startswith(message)
    assert main(["train", "experiment=demo", override]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"twingan train: error: {message}")


def test_per_resolution_settings_can_be_overridden_one_by_one():
    cfg = compose_config(["experiment=demo", "train.schedule.batch_size.4=2", "train.schedule.batch_size.512=1"])
    assert dict(cfg.train.schedule.batch_size) == {4: 2, 8: 8, 16: 8, 32: 8, 64: 8, 128: 4, 256: 3, 512: 1}
    cfg = compose_config(["experiment=demo", "model.attributes={hair: [black, blue]}", "data.domains.human.cache=c",
                          "+data.domains.cat.kind=folder", "+data.domains.cat.root=x", "train.grad_clip=1",
                          "seed=-3", "name=2024", "train.optimizer.lr=1"])
    assert list(cfg.model.attributes.hair) == ["black", "blue"] and cfg.train.optimizer.lr == 1


def test_missing_dataset_fails_at_start_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=str(missing)):
        train(["experiment=demo", "data.synthetic=null", f"data.domains.human.root={missing}",
               f"data.domains.anime.root={missing}", f"run_dir={tmp_path / 'run'}"])


def test_existing_run_folder_needs_resume(synthetic_root, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_run_overrides(synthetic_root, run_dir, "train.max_images=8"))
    with pytest.raises(ConfigError, match="resume=auto"):
        train(tiny_run_overrides(synthetic_root, run_dir))


def test_resume_applies_a_changed_learning_rate_and_refuses_a_changed_schedule(synthetic_root, tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(tiny_run_overrides(synthetic_root, run_dir, "train.max_images=16"))
    resumed = tiny_run_overrides(synthetic_root, run_dir, "resume=auto", "train.max_images=24")
    for changed, key in (("train.schedule.fade_images=16", "train.schedule.fade_images=16"),
                         ("loss.weights.cycle=1", "loss.weights.cycle=1"), ("seed=3", "seed=3")):
        assert main(["train", *resumed, changed]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"twingan train: error: {key} differs from the run being resumed")
    final = train([*resumed, "train.optimizer.lr=0.25", "train.ema.half_life_images=50"])
    meta = read_meta(final)
    assert meta["progress"]["images_seen"] == 24
    assert [g["lr"] for g in meta["optimizers"]["g"] + meta["optimizers"]["d"]] == [0.25, 0.25]
    assert meta["config"]["train"]["optimizer"]["lr"] == 0.25
    assert "lr: 0.25" in (run_dir / "config.yaml").read_text()


def _final_tensors(run_dir):
    final = sorted((Path(run_dir) / "checkpoints").glob("ckpt-*.safetensors"))[-1]
    return final.name, load_tensors(final)


def test_exact_resume_after_sigkill(synthetic_root, tmp_path):
    # One CPU thread in every process: with two, some kernels' reduction order differs between the pytest process
    # and the killed subprocess (differences of 1e-8 in the discriminator, seen on a 2-core machine).
    reference = tmp_path / "reference"
    train(tiny_run_overrides(synthetic_root, reference, "train.cpu_threads=1"))
    interrupted = tmp_path / "interrupted"
    overrides = tiny_run_overrides(synthetic_root, interrupted, "train.cpu_threads=1")
    returncode = run_and_kill_after_first_checkpoint(overrides, interrupted)
    assert returncode == -signal.SIGKILL
    assert len(list((interrupted / "checkpoints").glob("ckpt-*.safetensors"))) < 5
    assert main(["train", *overrides, "resume=auto"]) == 0
    name_a, a = _final_tensors(reference)
    name_b, b = _final_tensors(interrupted)
    assert name_a == name_b
    assert a.keys() == b.keys()
    for key in a:
        if key.startswith(("model.", "ema.", "disc.", "optim.")):
            assert torch.equal(a[key], b[key]), key
    ref_log = [r for r in read_log(reference) if "g_total" in r]
    res_log = [r for r in read_log(interrupted) if "g_total" in r]
    assert [r["step"] for r in res_log] == [r["step"] for r in ref_log]
    assert [r["g_total"] for r in res_log] == [r["g_total"] for r in ref_log]


def poison_generator_loss(monkeypatch, is_poisoned):
    """Make the generator loss NaN on the calls (counted from 1) for which ``is_poisoned(call)`` is true."""
    original = TranslationLosses.generator_step
    calls = {"n": 0}

    def patched(self, model, discs, reals, generator=None):
        total, logs, rendered = original(self, model, discs, reals, generator)
        calls["n"] += 1
        return (total * float("nan") if is_poisoned(calls["n"]) else total), logs, rendered

    monkeypatch.setattr(TranslationLosses, "generator_step", patched)


def test_nan_loss_stops_without_writing_a_poisoned_checkpoint(synthetic_root, tmp_path, monkeypatch):
    poison_generator_loss(monkeypatch, lambda call: call >= 4)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="generator loss is nan at step 3"):
        train(tiny_run_overrides(synthetic_root, run_dir))
    ckpts = sorted((run_dir / "checkpoints").glob("ckpt-*.safetensors"))
    assert [p.name for p in ckpts] == ["ckpt-000000000008.safetensors"]
    for key, value in load_tensors(ckpts[0]).items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), key
    assert any(r.get("event") == "non-finite loss" for r in read_log(run_dir))


def test_nan_rollback_policy_recovers(synthetic_root, tmp_path, monkeypatch):
    poison_generator_loss(monkeypatch, lambda call: call == 4)
    run_dir = tmp_path / "run"
    final = train(tiny_run_overrides(synthetic_root, run_dir, "train.nan_policy=rollback"))
    meta = read_meta(final)
    assert meta["rollbacks"] == 1 and meta["lr_factor"] == 0.5 and meta["progress"]["images_seen"] == 40


def test_every_rollback_of_a_run_counts_and_compounds_the_learning_rate_factor(synthetic_root, tmp_path, monkeypatch):
    poison_generator_loss(monkeypatch, lambda call: call in (4, 5))  # the retry diverges too
    run_dir = tmp_path / "run"
    final = train(tiny_run_overrides(synthetic_root, run_dir, "train.nan_policy=rollback"))
    meta = read_meta(final)
    assert meta["rollbacks"] == 2 and meta["lr_factor"] == 0.25 and meta["progress"]["images_seen"] == 40
    assert [g["lr"] for g in meta["optimizers"]["g"]] == [pytest.approx(1e-3 * 0.25)]
    events = [r for r in read_log(run_dir) if r.get("event") == "non-finite loss"]
    assert len(events) == 2


def test_diverging_run_gives_up_after_max_rollbacks_with_one_line(synthetic_root, tmp_path):
    """A learning rate so large that every retry diverges: the run stops after train.max_rollbacks rollbacks."""
    run_dir = tmp_path / "run"
    overrides = tiny_run_overrides(synthetic_root, run_dir, "train.optimizer.lr=8000", "train.nan_policy=rollback",
                                   "train.max_rollbacks=2", "train.checkpoint.every_images=4")
    done = subprocess.run([sys.executable, "-m", "twingan", "train", *overrides], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr
    assert lines[-1].startswith("twingan train: error: training diverged") and "after 2 rollbacks" in lines[-1]
    retries = [line.split("; ", 1)[1] for line in lines if " of at most 2: back to " in line]
    assert [r.split(":")[0] for r in retries] == ["rollback 1 of at most 2", "rollback 2 of at most 2"]
    assert [r.rsplit("learning rate ", 1)[1] for r in retries] == ["x0.5", "x0.25"]
    events = [r for r in read_log(run_dir) if r.get("event") == "non-finite loss"]
    assert len(events) == 3


def test_ddp_two_processes_on_gloo_stay_identical_and_resume(synthetic_root, tmp_path):
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "twingan", "train", *tiny_run_overrides(synthetic_root, run_dir, "device=cpu", "model.norm=batch",
                                                        "model.sync_bn=true")]
    first = subprocess.run([*base, "train.max_images=16"], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    second = subprocess.run([*base, "resume=auto"], env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    syncs = [r for r in read_log(run_dir) if "ranks_in_sync" in r]
    assert syncs and all(r["ranks_in_sync"] and r["world_size"] == 2 for r in syncs)
    meta = read_meta(sorted((run_dir / "checkpoints").glob("ckpt-*.safetensors"))[-1])
    assert meta["world_size"] == 2 and meta["progress"]["images_seen"] == meta["progress"]["total_images"] == 40
    tensors = load_tensors(sorted((run_dir / "checkpoints").glob("ckpt-*.safetensors"))[-1], prefix="rng.aug.")
    assert set(tensors) == {"0", "1"} and not torch.equal(tensors["0"], tensors["1"])
