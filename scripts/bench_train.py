"""Training throughput per resolution: images/s of a full TwinGAN step (G step + D step), and where the time goes.

    python scripts/bench_train.py --resolutions 8 16 32 64 --max-channels 64 --batch 16 --steps 5
    python scripts/bench_train.py --device cuda --precision bf16 --resolutions 64 128 256 --max-channels 256

The step does what twingan.training.trainer.Trainer._train_step does, on random uint8 batches of two
domains: augmentation, the generator step (whose renderings the discriminator step then judges), the
discriminator step with the GAN penalty on every ``--penalty-every``-th step, both Adam updates; not data
loading (see scripts/bench_loader.py for that). Losses have the default weights (conf/loss/default.yaml).
"""
from __future__ import annotations

import argparse
import time

import torch

from twingan.data.augment import Augment
from twingan.losses import LossWeights, TranslationLosses, build_objective
from twingan.models import Discriminators, ModelConfig, TwinGAN


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(res: int, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    cfg = ModelConfig(domains=("human", "anime"), resolution=res, max_channels=args.max_channels, norm=args.norm)
    model, discs = TwinGAN(cfg).to(device), Discriminators(cfg).to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
        discs.to(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.99))
    opt_d = torch.optim.Adam(discs.parameters(), lr=1e-4, betas=(0.5, 0.99))
    losses = TranslationLosses(build_objective(args.objective), LossWeights())
    augment = Augment(res)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    batches = [torch.randint(0, 256, (args.batch, 3, res, res), dtype=torch.uint8) for _ in range(2)]
    timings = {"augment": 0.0, "d_step": 0.0, "g_step": 0.0}
    count = {"steps": 0}

    def autocast():
        return torch.autocast(device.type, dtype=dtype) if dtype else torch.autocast(device.type, enabled=False)

    def step(record: bool) -> None:
        t0 = time.perf_counter()
        reals = [augment(b.to(device)) for b in batches]
        if args.channels_last:
            reals = [r.contiguous(memory_format=torch.channels_last) for r in reals]
        sync(device)
        t1 = time.perf_counter()
        discs.requires_grad_(False)
        with autocast():
            g_loss, _, rendered = losses.generator_step(model, discs, reals)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        discs.requires_grad_(True)
        sync(device)
        t2 = time.perf_counter()
        scale = float(args.penalty_every) if count["steps"] % args.penalty_every == 0 else 0.0
        count["steps"] += 1
        with autocast():
            d_loss, _ = losses.discriminator_loss(model, discs, reals, rendered=rendered, penalty_scale=scale)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        sync(device)
        t3 = time.perf_counter()
        if record:
            timings["augment"] += t1 - t0
            timings["g_step"] += t2 - t1
            timings["d_step"] += t3 - t2

    for _ in range(args.warmup):
        step(False)
    for _ in range(args.steps):
        step(True)
    total = sum(timings.values())
    out = {k: v / args.steps for k, v in timings.items()}
    out["images_per_s"] = args.batch * args.steps / total
    out["s_per_step"] = total / args.steps
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--max-channels", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--objective", default="dragan")
    parser.add_argument("--penalty-every", type=int, default=1, help="the GAN penalty every N steps (loss.penalty_every)")
    parser.add_argument("--norm", default="affine", help="model.norm: affine | layer | batch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device={device} precision={args.precision} max_channels={args.max_channels} batch={args.batch} "
          f"objective={args.objective} penalty_every={args.penalty_every} norm={args.norm} threads={torch.get_num_threads()} channels_last={args.channels_last}")
    print(f"{'res':>5} {'img/s':>8} {'s/step':>8} {'augment':>8} {'D step':>8} {'G step':>8}")
    for res in args.resolutions:
        r = bench(res, args, device)
        print(f"{res:>5} {r['images_per_s']:>8.1f} {r['s_per_step']:>8.3f} {r['augment']:>8.3f} "
              f"{r['d_step']:>8.3f} {r['g_step']:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
