"""`twingan summary`: the networks' per-layer parameter table for an architecture."""
from __future__ import annotations

import argparse

from torch import nn

from twingan.errors import ConfigError
from twingan.models import Discriminators, ModelConfig, TwinGAN


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "summary",
        description="Build the TwinGAN networks for an architecture and print a per-layer parameter table.",
    )
    parser.add_argument("--resolution", type=int, default=256, help="final resolution, a power of two >= 4 (default 256)")
    parser.add_argument("--max-channels", type=int, default=256, help="channel cap (default 256, as the original)")
    parser.add_argument("--fmap-base", type=int, default=1024, help="channels = min(fmap_base / 2^stage, cap)")
    default_domains = list(ModelConfig().domains)
    parser.add_argument("--domains", nargs="+", default=default_domains,
                        help=f"domain names (default: {' '.join(default_domains)})")
    parser.add_argument("--totals-only", action="store_true", help="print only the per-network totals")
    parser.set_defaults(func=run)


def parameter_rows(module: nn.Module, prefix: str) -> list[tuple[str, str, int]]:
    """(parameter name, shape, count) for every parameter of ``module``."""
    return [
        (f"{prefix}.{name}", "x".join(str(s) for s in p.shape), p.numel()) for name, p in module.named_parameters()
    ]


def run(args: argparse.Namespace) -> int:
    try:
        cfg = ModelConfig(
            domains=tuple(args.domains),
            resolution=args.resolution,
            max_channels=args.max_channels,
            fmap_base=args.fmap_base,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    model = TwinGAN(cfg)
    discriminators = Discriminators(cfg)
    sections = [
        ("encoder", parameter_rows(model.encoder, "encoder")),
        ("generator", parameter_rows(model.generator, "generator")),
        ("discriminator (each)", parameter_rows(discriminators.nets[0], "discriminator")),
    ]
    channels = ", ".join(f"{r}:{cfg.channels(r)}" for r in cfg.resolutions)
    print(f"TwinGAN at {cfg.resolution}px, domains {list(cfg.domains)}, channels per resolution {{{channels}}}")
    if not args.totals_only:
        width = max(len(name) for _, rows in sections for name, _, _ in rows)
        print(f"{'parameter':<{width}}  {'shape':>16}  {'count':>12}")
        for _, rows in sections:
            for name, shape, count in rows:
                print(f"{name:<{width}}  {shape:>16}  {count:>12,}")
    totals = {title: sum(c for _, _, c in rows) for title, rows in sections}
    for title, total in totals.items():
        print(f"{title + ' total':<28}{total:>14,}")
    translator = totals["encoder"] + totals["generator"]
    print(f"{'translator (encoder+generator)':<28}{translator:>14,}")
    all_params = translator + totals["discriminator (each)"] * cfg.num_domains
    print(f"{f'all, with {cfg.num_domains} discriminators':<28}{all_params:>14,}")
    return 0
