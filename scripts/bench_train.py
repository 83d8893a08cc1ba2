"""Training throughput: images/s of twingan's own training step, code trees and settings side by side.

    python scripts/bench_train.py --resolutions 32 64 --max-channels 64 --batch 8 --steps 6 --threads 2
    python scripts/bench_train.py --resolutions 64 --max-channels 64 --batch 8 --steps 6 --threads 2 \\
        --compare /tmp/bench_base --ugatit /tmp/ugatit/src
    python scripts/bench_train.py --resolutions 64 --variant fp32:train.precision=fp32,train.channels_last=false
    python scripts/bench_train.py --resolutions 64 128 --max-channels 64 --batch 8 --profile

Each variant runs in its own worker process: this tree with its defaults ("new"), each ``--variant
LABEL:KEY=VALUE,...`` (this tree with those config overrides), the tree given by ``--compare`` (another
checkout of twingan, e.g. the commit before a change, from ``git worktree add``) and U-GAT-IT light from the
clone given by ``--ugatit``. A twingan worker builds the trainer from the config (``model.resolution`` and
``model.max_channels`` from the options, everything else the config's defaults) and times its
``_train_step`` (augmentation, the generator step, the discriminator step with its GAN penalty, both optimiser
updates) on random uint8 batches of both domains; data loading is not timed (scripts/bench_loader.py times it).
The U-GAT-IT worker runs that project's own training loop (``UGATIT.train``, one iteration per step, from a
folder of random PNGs; its data loading included) from a patched copy in a temporary folder (see
:func:`prepare_ugatit`); its code is never copied into this repository.

The workers start together, then take their steps in turn (A B C A B C ...), so a machine shared with other jobs slows every variant
alike; each row gives the median over ``--steps`` steps of the wall-clock time (img/s) and of the process's CPU
time, and the load average before and after. ``--profile`` instead runs torch.profiler over the steps of this
tree's step and prints where the time goes.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THIS_TREE = Path(__file__).resolve().parents[1]


# ---- the twingan worker -----------------------------------------------------------------------------------------

def twingan_trainer(tree: Path, res: int, cap: int, batch: int, threads: int, overrides: list[str], data: Path,
                    compiled: bool = False):
    """A Trainer of the code in ``tree`` at ``res`` px (stable phase), its augmentation and a step function.

    ``compiled``: the encoder and generator run under torch.compile (``nn.Module.compile``, which keeps the
    parameter names); the discriminators do not, since the GAN penalty's double backward cannot go through a
    compiled graph.
    """
    sys.path.insert(0, str(tree))
    import torch
    import twingan
    from twingan.data.augment import Augment
    from twingan.training.config import compose_config
    from twingan.training.trainer import Trainer

    if not Path(twingan.__file__).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"worker for {tree} imported twingan from {twingan.__file__}")
    cfg = compose_config([
        "data.synthetic=null", f"data.domains.human.root={data / 'human'}", f"data.domains.anime.root={data / 'anime'}",
        f"model.resolution={res}", f"model.max_channels={cap}", f"train.schedule.start_resolution={res}",
        f"train.schedule.batch_size.{res}={batch}", f"train.cpu_threads={threads}", "logging.progress_bar=false",
        "logging.tensorboard=false", f"run_dir={data / 'run'}", *overrides,
    ])
    trainer = Trainer(cfg)
    if compiled:
        trainer.model.encoder.compile()
        trainer.model.generator.compile()
    augment = Augment(res, **trainer.settings.augment)
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 256, (batch, 3, res, res), dtype=torch.uint8, generator=generator) for _ in range(2)]
    described = {"precision": getattr(trainer, "precision", "fp32"), "channels_last": trainer.channels_last,
                 "threads": torch.get_num_threads(), "penalty_every": trainer.settings.penalty_every,
                 "device": str(trainer.device), **({"compiled": "encoder + generator"} if compiled else {})}

    def step() -> None:
        trainer._train_step(batches, augment, 1.0)
        trainer.step += 1

    return step, described


def profile_steps(step, steps: int) -> str:
    """torch.profiler over ``steps`` steps: a table of where the time goes, by category and by twingan scope."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wall = (time.perf_counter() - start) / steps
    events = prof.key_averages()
    self_ms = {e.key: e.self_cpu_time_total / 1000 / steps for e in events}
    total_ms = {e.key: e.cpu_time_total / 1000 / steps for e in events}
    categories = {
        "convolution forward": ("aten::mkldnn_convolution", "aten::convolution", "aten::_convolution",
                                "aten::conv2d", "aten::_mkldnn_convolution"),
        "convolution backward": ("aten::convolution_backward", "aten::mkldnn_convolution_backward"),
        "norms (affine / layer / batch)": ("aten::addcmul", "aten::native_layer_norm", "aten::native_layer_norm_backward",
                                           "aten::native_batch_norm", "aten::native_batch_norm_backward",
                                           "aten::_batch_norm_impl_index"),
        "activations": ("aten::leaky_relu", "aten::leaky_relu_backward"),
        "pooling and upsampling": ("aten::avg_pool2d", "aten::avg_pool2d_backward", "aten::upsample_nearest2d",
                                   "aten::upsample_nearest2d_backward", "aten::_upsample_nearest_exact2d"),
        "casts and copies": ("aten::copy_", "aten::_to_copy", "aten::to", "aten::contiguous", "aten::clone"),
        "concatenation": ("aten::cat",),
    }
    optimiser_ms = sum(v for k, v in total_ms.items() if k.startswith("Optimizer.step#"))
    lines = [f"wall {wall * 1000:.0f} ms per step; self CPU time by kind of op (ms per step, share of the step):"]
    covered = 0.0
    step_ms = sum(self_ms.values())
    for name, keys in categories.items():
        ms = sum(self_ms.get(k, 0.0) for k in keys)
        covered += ms
        lines.append(f"  {name:<34} {ms:9.1f} {100 * ms / step_ms:5.1f} %")
    lines.append(f"  {'other ops':<34} {step_ms - covered:9.1f} {100 * (step_ms - covered) / step_ms:5.1f} %")
    lines.append("scopes (inclusive CPU time, ms per step):")
    for key in ("twingan.augment", "twingan.generator_step", "twingan.generator_update", "twingan.discriminator_step",
                "twingan.discriminator_update", "twingan.gradient_penalty"):
        if key in total_ms:
            lines.append(f"  {key:<34} {total_ms[key]:9.1f} {100 * total_ms[key] / step_ms:5.1f} %")
    double = sum(v for k, v in total_ms.items() if k.startswith("autograd::engine::evaluate_function:")
                 and "BackwardBackward" in k)
    lines.append(f"  {'double backward (penalty)':<34} {double:9.1f} {100 * double / step_ms:5.1f} %")
    lines.append(f"  {'optimiser (both Adam steps)':<34} {optimiser_ms:9.1f} {100 * optimiser_ms / step_ms:5.1f} %")
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    lines.append("top ops by self CPU time (ms per step): " + ", ".join(
        f"{e.key} {e.self_cpu_time_total / 1000 / steps:.0f}" for e in top))
    return "\n".join(lines)


# ---- the U-GAT-IT worker ----------------------------------------------------------------------------------------

def discriminator_layers(res: int) -> tuple[int, int]:
    """(global, local) discriminator layers for U-GAT-IT below its 256 px: two fewer per halving of the size (7 and
    5 at 256 px), at least 3 (the fewest its Discriminator builds)."""
    halvings = max(0, (256 // res).bit_length() - 1)
    return max(3, 7 - 2 * halvings), max(3, 5 - 2 * halvings)


def prepare_ugatit(clone: Path, folder: Path, res: int, batch: int) -> Path:
    """A patched copy of a UGATIT-pytorch clone in ``folder``: ``next(it)`` for Python 3's iterators, fewer
    discriminator layers below 256 px (:func:`discriminator_layers`), and a dataset of random PNGs."""
    copy = folder / "ugatit"
    shutil.copytree(clone, copy, ignore=shutil.ignore_patterns(".git", "dataset", "assets"))
    source = (copy / "UGATIT.py").read_text()
    source = re.sub(r"(\w+)\.next\(\)", r"next(\1)", source)
    global_layers, local_layers = discriminator_layers(res)
    source, n_global = re.subn(r"n_layers=7\)", f"n_layers={global_layers})", source)
    source, n_local = re.subn(r"n_layers=5\)", f"n_layers={local_layers})", source)
    if n_global != 2 or n_local != 2 or "next(trainA_iter)" not in source:
        raise SystemExit(f"{clone}: UGATIT.py is not the version this benchmark patches (znxlwm/UGATIT-pytorch)")
    (copy / "UGATIT.py").write_text(source)
    for part in ("trainA", "trainB", "testA", "testB"):
        random_images(copy / "dataset" / "bench" / part, 2 * batch, res)
    return copy


def ugatit_trainer(clone: Path, res: int, batch: int, threads: int, folder: Path):
    import contextlib
    from argparse import Namespace

    import torch

    torch.set_num_threads(threads)
    copy = prepare_ugatit(clone, folder, res, batch)
    os.chdir(copy)
    sys.path.insert(0, str(copy))
    from UGATIT import UGATIT  # noqa: the patched copy's module

    args = Namespace(light=True, dataset="bench", iteration=1, batch_size=batch, print_freq=10**9, save_freq=10**9,
                     decay_flag=False, lr=1e-4, weight_decay=1e-4, adv_weight=1, cycle_weight=10, identity_weight=10,
                     cam_weight=1000, ch=64, n_res=4, n_dis=6, img_size=res, img_ch=3, result_dir=str(folder / "out"),
                     device="cpu", benchmark_flag=False, resume=False)
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        gan = UGATIT(args)
        gan.build_model()
    global_layers, local_layers = discriminator_layers(res)
    described = {"light": True, "ch": 64, "n_res": 4, "discriminator_layers": [global_layers, local_layers],
                 "threads": torch.get_num_threads()}

    def step() -> None:
        with contextlib.redirect_stdout(open(os.devnull, "w")):
            gan.train()

    return step, described


def random_images(folder: Path, count: int, size: int) -> None:
    """``count`` PNGs of uniform noise: what a dataset of the workers' config holds (the step never reads it)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def worker(args: argparse.Namespace) -> None:
    """Build one variant, warm it up, then take a step each time the parent writes a line; answer in JSON."""
    folder = Path(tempfile.mkdtemp(prefix="bench_train_"))
    for domain in ("human", "anime"):
        random_images(folder / domain, 2 * args.batch, args.res)
    try:
        if args.kind == "ugatit":
            step, described = ugatit_trainer(Path(args.tree), args.res, args.batch, args.threads, folder)
        else:
            step, described = twingan_trainer(Path(args.tree), args.res, args.max_channels, args.batch, args.threads,
                                              json.loads(args.overrides), folder, args.compiled)
        for _ in range(args.warmup):
            step()
        if args.profile:
            print(json.dumps({"ready": described, "profile": profile_steps(step, args.steps)}), flush=True)
            return
        print(json.dumps({"ready": described}), flush=True)
        for _ in sys.stdin:
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---- the parent -------------------------------------------------------------------------------------------------

def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def spawn_worker(kind: str, tree: Path, res: int, args: argparse.Namespace, overrides: list[str], profile: bool,
                 compiled: bool = False):
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--kind", kind, "--tree", str(tree),
               "--res", str(res), "--max-channels", str(args.max_channels), "--batch", str(args.batch),
               "--threads", str(args.threads), "--warmup", str(args.warmup), "--steps", str(args.steps),
               "--overrides", json.dumps(overrides)] + (["--profile"] if profile else []) + (
                   ["--compiled"] if compiled else [])
    env = {**os.environ, "PYTHONPATH": str(tree) if kind == "twingan" else "", "OMP_NUM_THREADS": str(args.threads)}
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                            cwd=tempfile.gettempdir())


def ready(proc: subprocess.Popen, what: str) -> dict:
    """The worker's first line: what it runs (and its profile), once it is built and warmed up."""
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"the worker for {what} failed to start (its error is above)")
    return json.loads(line)


def variants(args: argparse.Namespace) -> list[tuple[str, str, Path, list[str], bool]]:
    """(label, kind, tree, config overrides, compiled) of every variant to time."""
    common = list(args.set) + ([f"device={args.device}"] if args.device else [])
    out = [("new", "twingan", THIS_TREE, common, False)]
    for spec in args.variant:
        label, _, settings = spec.partition(":")
        out.append((label, "twingan", THIS_TREE, common + [s for s in settings.split(",") if s], False))
    if args.compiled_variant:
        out.append(("compiled", "twingan", THIS_TREE, common, True))
    if args.compare:
        out.append((f"base ({args.compare.name})", "twingan", args.compare, common[len(args.set):], False))
    if args.ugatit:
        out.append(("U-GAT-IT light", "ugatit", args.ugatit, [], False))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--max-channels", type=int, default=64, help="model.max_channels (fmap_base stays 1024)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (taken in turn)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads of every worker (train.cpu_threads)")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides for this tree's variants")
    parser.add_argument("--variant", action="append", default=[], help="LABEL:KEY=VALUE,... another setting of this tree")
    parser.add_argument("--compare", type=Path, help="another twingan checkout timed with its own defaults")
    parser.add_argument("--ugatit", type=Path, help="a clone of UGATIT-pytorch: its light model's training step")
    parser.add_argument("--device", help="the device of every twingan variant (device=...; default: the config's auto)")
    parser.add_argument("--compiled-variant", action="store_true",
                        help="also time this tree with the encoder and generator under torch.compile")
    parser.add_argument("--profile", action="store_true", help="profile this tree's step instead of timing variants")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="twingan", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--res", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="[]", help=argparse.SUPPRESS)
    parser.add_argument("--compiled", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(f"max_channels={args.max_channels} batch={args.batch} threads={args.threads} steps={args.steps} "
          f"warmup={args.warmup}; load average {load()}", flush=True)
    if args.profile:
        for res in args.resolutions:
            common = list(args.set) + ([f"device={args.device}"] if args.device else [])
            proc = spawn_worker("twingan", THIS_TREE, res, args, common, profile=True)
            answer = ready(proc, str(THIS_TREE))
            proc.wait()
            print(f"\n{res} px, {answer['ready']}, load average {load()}\n{answer['profile']}", flush=True)
        return
    print("| res | variant | img/s (median wall) | s/step wall median (min) | CPU s/step median | settings | load |")
    print("|---:|---|---:|---:|---:|---|---|")
    for res in args.resolutions:
        spawned = [(label, spawn_worker(kind, tree, res, args, overrides, False, compiled))
                   for label, kind, tree, overrides, compiled in variants(args)]
        workers = [(label, proc, ready(proc, label)["ready"], []) for label, proc in spawned]
        before = load()
        for _ in range(args.steps):
            for _, proc, _, times in workers:
                proc.stdin.write("step\n")
                proc.stdin.flush()
                times.append(json.loads(proc.stdout.readline()))
        after = load()
        for label, proc, described, times in workers:
            proc.stdin.close()
            proc.wait()
            wall = statistics.median(t["wall"] for t in times)
            cpu = statistics.median(t["cpu"] for t in times)
            fastest = min(t["wall"] for t in times)
            settings = ", ".join(f"{k} {v}" for k, v in described.items())
            print(f"| {res} | {label} | {args.batch / wall:.2f} | {wall:.3f} ({fastest:.3f}) | {cpu:.3f} | {settings} "
                  f"| {before} -> {after} |", flush=True)


if __name__ == "__main__":
    main()
