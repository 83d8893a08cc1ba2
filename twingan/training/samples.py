"""The sample grid a run writes: fixed images of every domain and what the model makes of them."""
from __future__ import annotations

from typing import Sequence

import torch
from torchvision.utils import make_grid

from twingan.data.datasets import ImageDomainDataset
from twingan.data.image_io import upscale_for_viewing
from twingan.models import TwinGAN


@torch.no_grad()
def fixed_sample_grid(
    model: TwinGAN, datasets: Sequence[ImageDomainDataset], per_domain: int, device: torch.device, seed: int
) -> torch.Tensor:
    """The first ``per_domain`` images of every domain: source, reconstruction, translation to each other domain
    and back.

    With a style encoder also the translation taking its style from other faces of the target domain (the rolled
    fixed images); with a mapping network one row of faces generated from fixed noise (``seed``) per domain.
    """
    n = per_domain
    fixed = []
    for ds in datasets:
        ds.set_resolution(model.resolution)
        x = torch.stack([ds[i % len(ds)] for i in range(n)]).to(device)
        fixed.append(x.float().div(127.5).sub(1.0))
    rows = []
    for o, x in enumerate(fixed):
        rows += [x, model.reconstruct(x, o)]
        for d in range(len(fixed)):
            if d != o:
                fake = model.translate(x, o, d)
                rows += [fake, model.translate(fake, d, o)]
                if model.style_encoder is not None:
                    style = model.style(fixed[d].roll(1, 0), d)
                    rows.append(model.translate(x, o, d, model.condition(n, style=style)))
    if model.mapping is not None:
        z = torch.randn(n, model.cfg.noise_dim, generator=torch.Generator().manual_seed(seed)).to(device)
        rows += [model.generate(z, d) for d in range(len(fixed))]
    return sample_grid(rows, n)


def sample_grid(rows: list[torch.Tensor], per_row: int) -> torch.Tensor:
    """Stack rows of images (each (n, 3, R, R)) into one image tensor in [-1, 1], small tiles upscaled for viewing."""
    tiles = upscale_for_viewing(torch.cat(rows).float().cpu().clamp(-1, 1))
    return make_grid(tiles, nrow=per_row, padding=2, pad_value=1.0)
