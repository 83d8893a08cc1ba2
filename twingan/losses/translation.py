"""TwinGAN's losses over N domains: reconstruction, adversarial, semantic consistency, cycle.

For every domain d and every other domain o (each ordered pair):
- reconstruction: L1(x_d, G_d(E_d(x_d)));
- adversarial on translations: D_d judges G_d(E_o(x_o));
- adversarial on reconstructions too, from ``recon_adversarial_from`` px (64 in TwinGAN);
- semantic consistency: L1(E_o(x_o), E_d(G_d(E_o(x_o)))) on the 4x4 latent;
- cycle: L1(x_o, G_o(E_d(G_d(E_o(x_o))))), the true round trip o -> d -> o.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from twingan.losses.gan import GANObjective
from twingan.models import Discriminators, TwinGAN


@dataclass(frozen=True)
class LossWeights:
    reconstruction: float = 1.0
    adversarial: float = 1.0
    adversarial_reconstruction: float = 1.0
    semantic: float = 0.1
    cycle: float = 0.5
    recon_adversarial_from: int = 64


class TranslationLosses:
    """Computes the generator-side and discriminator-side losses of one training step."""

    def __init__(self, objective: GANObjective, weights: LossWeights = LossWeights()) -> None:
        self.objective = objective
        self.weights = weights

    def _recon_adversarial(self, resolution: int) -> bool:
        return resolution >= self.weights.recon_adversarial_from and self.weights.adversarial_reconstruction > 0

    def generator_loss(
        self, model: TwinGAN, discriminators: Discriminators, reals: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``reals[d]`` is a batch of domain d at the model's current resolution."""
        w = self.weights
        n = len(reals)
        encodings = [model.encode(x, d) for d, x in enumerate(reals)]
        parts: dict[str, list[torch.Tensor]] = {"recon": [], "adv": [], "adv_recon": [], "semantic": [], "cycle": []}
        for d, x in enumerate(reals):
            recon = model.decode(*encodings[d], d)
            parts["recon"].append(F.l1_loss(recon, x))
            if self._recon_adversarial(model.resolution):
                parts["adv_recon"].append(self.objective.generator_loss(discriminators(recon, d)))
        for o in range(n):
            latent_o, skips_o = encodings[o]
            for d in range(n):
                if d == o:
                    continue
                fake = model.decode(latent_o, skips_o, d)
                parts["adv"].append(self.objective.generator_loss(discriminators(fake, d)))
                if w.semantic > 0 or w.cycle > 0:
                    latent_f, skips_f = model.encode(fake, d)
                    parts["semantic"].append(F.l1_loss(latent_f, latent_o))
                    if w.cycle > 0:
                        parts["cycle"].append(F.l1_loss(model.decode(latent_f, skips_f, o), reals[o]))
        weights = {
            "recon": w.reconstruction,
            "adv": w.adversarial,
            "adv_recon": w.adversarial_reconstruction,
            "semantic": w.semantic,
            "cycle": w.cycle,
        }
        total = reals[0].new_zeros(())
        logs: dict[str, torch.Tensor] = {}
        for key, values in parts.items():
            if values:
                value = torch.stack(values).mean()
                logs[f"g_{key}"] = value.detach()
                total = total + weights[key] * value
        logs["g_total"] = total.detach()
        return total, logs

    def discriminator_loss(
        self,
        model: TwinGAN,
        discriminators: Discriminators,
        reals: Sequence[torch.Tensor],
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D loss for every domain: its reals against translations into it (and its reconstructions)."""
        n = len(reals)
        with torch.no_grad():
            encodings = [model.encode(x, d) for d, x in enumerate(reals)]
            fakes: list[list[torch.Tensor]] = [[] for _ in range(n)]
            for o in range(n):
                for d in range(n):
                    if d != o:
                        fakes[d].append(model.decode(*encodings[o], d))
            if self._recon_adversarial(model.resolution):
                for d in range(n):
                    fakes[d].append(model.decode(*encodings[d], d))
        losses, logs_all = [], {}
        for d, real in enumerate(reals):
            critic = functools.partial(discriminators, domain=d)
            for fake in fakes[d]:
                loss, logs = self.objective.discriminator_loss(critic, real, fake.detach(), generator)
                losses.append(loss)
                for key, value in logs.items():
                    logs_all.setdefault(key, []).append(value)
        total = torch.stack(losses).mean()
        out = {key: torch.stack(values).mean() for key, values in logs_all.items()}
        out["d_total"] = total.detach()
        return total, out
