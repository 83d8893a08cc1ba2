"""Statistics a trained translator needs at inference, measured on real images of each domain.

Two kinds, both belonging to one set of weights, so both are measured again
whenever those weights are used apart from training: before sample grids,
evaluations and checkpoints, for the EMA weights as well as the raw ones.

* The latent statistics of every domain: an embedding is the latent standardised
  with its own domain's mean and standard deviation
  (:meth:`twingan.models.TwinGAN.set_latent_statistics`).
* With ``model.norm=batch``, the running statistics of every batch-norm layer.
  During training they follow every forward pass (translations, re-encoded fakes)
  of the raw weights, and the EMA weights would otherwise only copy them; here
  they are recomputed for the weights at hand from the passes inference makes:
  the encoder's domain d on real images of d, the generator's domain d on
  translations into d (reconstructions in a one-domain model) and, with
  generation, its second set on faces drawn from fixed noise.

Measuring reads evenly spaced images of each dataset without augmentation and
draws nothing from any training random stream, so it changes neither the
training nor an exact resume.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import numpy as np
import torch

from twingan.data.image_io import uint8_to_tensor
from twingan.models import DomainBatchNorm2d, TwinGAN

CALIBRATION_IMAGES = 256
"""Images per domain the statistics are measured on."""
CALIBRATION_BATCH = 32
STD_FLOOR = 1e-2
"""A latent unit's standard deviation is at least this fraction of the mean one (a unit that hardly varies
on real images must not turn small differences elsewhere into large ones)."""
NOISE_SEED = 0


def calibration_indices(dataset_size: int, count: int = CALIBRATION_IMAGES) -> list[int]:
    """``count`` evenly spaced indices over a dataset (all of them when it is smaller)."""
    if dataset_size <= count:
        return list(range(dataset_size))
    return [int(i) for i in np.linspace(0, dataset_size - 1, count).round()]


def calibration_images(datasets: Sequence[torch.utils.data.Dataset], resolution: int) -> list[torch.Tensor]:
    """Every domain's calibration images at ``resolution``, float in [-1, 1] on the CPU."""
    images = []
    for dataset in datasets:
        dataset.set_resolution(resolution)
        images.append(uint8_to_tensor(torch.stack([dataset[i] for i in calibration_indices(len(dataset))])))
    return images


@torch.no_grad()
def latent_statistics(model: TwinGAN, images: torch.Tensor, domain: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-element mean and floored standard deviation of ``domain``'s latents of ``images`` ([-1, 1])."""
    device = next(model.parameters()).device
    latents = torch.cat([model.encode(chunk.to(device), domain)[0]
                         for chunk in images.split(CALIBRATION_BATCH)])
    mean = latents.mean(dim=0)
    std = latents.std(dim=0, unbiased=False) if len(latents) > 1 else torch.ones_like(mean)
    floor = STD_FLOOR * std.mean().clamp_min(1e-8)
    return mean, std.clamp_min(floor)


@torch.no_grad()
def calibrate(models: Sequence[TwinGAN], images: Sequence[torch.Tensor]) -> None:
    """Measure the inference statistics of each of ``models`` on ``images[d]`` of every domain d.

    The models are left in the train/eval mode they came in.
    """
    for model in models:
        with _restored_mode(model):
            model.eval()
            recompute_batch_statistics(model, images)
            model.eval()
            for d, x in enumerate(images):
                model.set_latent_statistics(d, *latent_statistics(model, x, d))


def _batch_norms(module: torch.nn.Module) -> list[DomainBatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, DomainBatchNorm2d)]


@torch.no_grad()
def recompute_batch_statistics(model: TwinGAN, images: Sequence[torch.Tensor]) -> None:
    """Replace every batch-norm layer's running statistics with their average over the inference passes
    (see the module docstring); nothing to do for models without batch norm."""
    if not _batch_norms(model):
        return
    device = next(model.parameters()).device
    n = len(images)
    model.eval()
    with _cumulative(model.encoder) as step:
        for d, x in enumerate(images):
            for chunk in x.split(CALIBRATION_BATCH):
                step(d)
                model.encode(chunk.to(device), d)
    with _cumulative(model.generator) as step:
        for d in range(n):
            sources = [o for o in range(n) if o != d] or [d]
            for o in sources:
                for chunk in images[o].split(CALIBRATION_BATCH):
                    latent, skips = model.encode(chunk.to(device), o)
                    step(d)
                    model.decode(latent, skips, d)
            if model.mapping is not None:
                generator = torch.Generator(device).manual_seed(NOISE_SEED)
                for chunk in images[d].split(CALIBRATION_BATCH):
                    z = model.noise(len(chunk), generator, device)
                    step(d, stat_set=1)
                    model.generate(z, d)


@contextlib.contextmanager
def _cumulative(module: torch.nn.Module) -> Iterator:
    """Put ``module`` in train mode with its batch norms averaging, per statistics slot, every batch that
    follows a ``step(domain, stat_set)`` call equally, without synchronising across DDP ranks; restore eval
    mode, the momenta and the synchronisation afterwards."""
    norms = _batch_norms(module)
    saved = [(m.momentum, m.sync) for m in norms]
    seen: dict[tuple[int, int], int] = {}

    def step(domain: int, stat_set: int = 0) -> None:
        count = seen.get((domain, stat_set), 0) + 1
        seen[(domain, stat_set)] = count
        for m in norms:
            m.momentum = 1.0 / count

    for m in norms:
        m.sync = False  # each process measures on its own: calibration may run on one rank only
    module.train()
    try:
        yield step
    finally:
        for m, (momentum, sync) in zip(norms, saved):
            m.momentum, m.sync = momentum, sync
        module.eval()


@contextlib.contextmanager
def _restored_mode(model: torch.nn.Module) -> Iterator[None]:
    modes = {m: m.training for m in model.modules()}
    try:
        yield
    finally:
        for m, training in modes.items():
            m.training = training
