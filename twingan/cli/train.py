"""`twingan train [OVERRIDES...]`: train with the Hydra config in conf/ and command-line overrides."""
from __future__ import annotations

import argparse
import logging
import signal

from omegaconf import OmegaConf


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        description="Train TwinGAN. Every setting of conf/ can be overridden as key=value, for example "
        "`twingan train experiment=selfie2anime data.domains.human.root=/data/celeba "
        "data.domains.anime.root=/data/getchu train.precision=bf16`. Continue a run with resume=auto. "
        "SIGTERM or Ctrl-C stops after the current step with a checkpoint (exit status 128 + the signal); a "
        "second one aborts at once. One run at a time owns a run folder (its train.lock). "
        "For several GPUs or nodes launch with torchrun: `torchrun --nproc_per_node 4 -m twingan train ...`.",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides key=value (see conf/)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from twingan.training import compose_config
    from twingan.training.trainer import Trainer, prepare_data

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = compose_config(args.overrides)
    if args.print_config:
        print(OmegaConf.to_yaml(cfg))
        return 0
    prepare_data(cfg)
    trainer = Trainer(cfg)
    path = trainer.run()
    if trainer.stopped_by is not None:
        if trainer.dist.is_main:
            print(f"stopped by {signal.Signals(trainer.stopped_by).name}: checkpoint {path}; continue with resume=auto")
        return 128 + trainer.stopped_by
    if trainer.dist.is_main:
        print(f"final checkpoint: {path}")
    return 0
