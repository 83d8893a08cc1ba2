"""GAN objectives: DRAGAN (TwinGAN's default), WGAN-GP, hinge, non-saturating + R1.

Each objective gives the discriminator loss for (real, fake) batches, including
its gradient penalty, and the generator's adversarial loss for fake logits.
Penalty points are sampled by ``penalty_points`` (with an optional
``torch.Generator``) separately from the penalty itself, so both can be checked.
``penalty_scale`` multiplies the penalty term: 0 skips it (no points drawn, no
double backward), N applies it N times as strongly, which is how lazy
regularisation (the penalty every N steps, as StyleGAN2 does for R1) keeps its
average strength.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch
import torch.nn.functional as F

Critic = Callable[[torch.Tensor], torch.Tensor]


def gradient_norms(critic: Critic, points: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm of d critic(points).sum() / d points, with a graph for the penalty's backward.

    Autograd is enabled here even inside ``torch.no_grad()``: the penalty is defined by a gradient.
    """
    with torch.enable_grad():
        points = points.detach().requires_grad_(True)
        logits = critic(points)
        (grad,) = torch.autograd.grad(logits.sum(), points, create_graph=True)
        return grad.flatten(1).norm(2, dim=1)


class GANObjective(ABC):
    name: str

    @abstractmethod
    def discriminator_loss(
        self, critic: Critic, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None,
        penalty_scale: float = 1.0,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss to minimise for the discriminator, and its parts for logging (objectives without a
        penalty ignore ``penalty_scale``)."""

    @abstractmethod
    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """Adversarial loss to minimise for the generator."""


class NonSaturating(GANObjective):
    """-log D(real) - log(1 - D(fake)) for D, -log D(fake) for G (logits, via softplus)."""

    name = "nonsaturating"

    def discriminator_loss(self, critic, real, fake, generator=None, penalty_scale=1.0):
        real_logits, fake_logits = critic(real), critic(fake)
        loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        return loss, {"d_real": real_logits.mean().detach(), "d_fake": fake_logits.mean().detach()}

    def generator_loss(self, fake_logits):
        return F.softplus(-fake_logits).mean()


class Dragan(NonSaturating):
    """Non-saturating loss plus lambda * E[(||grad D(x_hat)|| - 1)^2] around perturbed reals.

    x_hat = x + c * std(x) * u with u ~ U(-1, 1) elementwise and std over the whole batch
    (TwinGAN: c = 0.5, lambda = 0.25).
    """

    name = "dragan"

    def __init__(self, weight: float = 0.25, perturb_scale: float = 0.5) -> None:
        self.weight = weight
        self.perturb_scale = perturb_scale

    def penalty_points(self, real: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        u = torch.rand(real.shape, generator=generator, device=real.device, dtype=real.dtype) * 2.0 - 1.0
        return real.detach() + self.perturb_scale * real.detach().std() * u

    def penalty(self, critic: Critic, points: torch.Tensor) -> torch.Tensor:
        return (gradient_norms(critic, points) - 1.0).pow(2).mean()

    def discriminator_loss(self, critic, real, fake, generator=None, penalty_scale=1.0):
        loss, logs = super().discriminator_loss(critic, real, fake)
        if not penalty_scale:
            return loss, logs
        gp = self.penalty(critic, self.penalty_points(real, generator))
        logs["gp"] = gp.detach()
        return loss + penalty_scale * self.weight * gp, logs


class WganGp(GANObjective):
    """Wasserstein loss with a gradient penalty on real/fake interpolates, plus PGGAN's drift term."""

    name = "wgan-gp"

    def __init__(self, weight: float = 10.0, drift: float = 0.001) -> None:
        self.weight = weight
        self.drift = drift

    def penalty_points(
        self, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        eps = torch.rand((real.shape[0], 1, 1, 1), generator=generator, device=real.device, dtype=real.dtype)
        return torch.lerp(fake.detach(), real.detach(), eps)

    def penalty(self, critic: Critic, points: torch.Tensor) -> torch.Tensor:
        return (gradient_norms(critic, points) - 1.0).pow(2).mean()

    def discriminator_loss(self, critic, real, fake, generator=None, penalty_scale=1.0):
        real_logits, fake_logits = critic(real), critic(fake)
        loss = fake_logits.mean() - real_logits.mean() + self.drift * real_logits.pow(2).mean()
        logs = {"d_real": real_logits.mean().detach(), "d_fake": fake_logits.mean().detach()}
        if not penalty_scale:
            return loss, logs
        gp = self.penalty(critic, self.penalty_points(real, fake, generator))
        logs["gp"] = gp.detach()
        return loss + penalty_scale * self.weight * gp, logs

    def generator_loss(self, fake_logits):
        return -fake_logits.mean()


class Hinge(GANObjective):
    name = "hinge"

    def discriminator_loss(self, critic, real, fake, generator=None, penalty_scale=1.0):
        real_logits, fake_logits = critic(real), critic(fake)
        loss = F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
        return loss, {"d_real": real_logits.mean().detach(), "d_fake": fake_logits.mean().detach()}

    def generator_loss(self, fake_logits):
        return -fake_logits.mean()


class NonSaturatingR1(NonSaturating):
    """Non-saturating loss plus (gamma / 2) * E[||grad D(real)||^2] (Mescheder et al. 2018)."""

    name = "ns-r1"

    def __init__(self, gamma: float = 10.0) -> None:
        self.gamma = gamma

    def penalty(self, critic: Critic, points: torch.Tensor) -> torch.Tensor:
        return gradient_norms(critic, points).pow(2).mean()

    def discriminator_loss(self, critic, real, fake, generator=None, penalty_scale=1.0):
        loss, logs = super().discriminator_loss(critic, real, fake)
        if not penalty_scale:
            return loss, logs
        r1 = self.penalty(critic, real)
        logs["gp"] = r1.detach()
        return loss + penalty_scale * 0.5 * self.gamma * r1, logs


OBJECTIVES: dict[str, type[GANObjective]] = {
    cls.name: cls for cls in (Dragan, WganGp, Hinge, NonSaturatingR1, NonSaturating)
}


def build_objective(name: str, **params: float) -> GANObjective:
    """Objective by name: dragan, wgan-gp, hinge, ns-r1 or nonsaturating; params go to its constructor."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown GAN objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    try:
        return OBJECTIVES[name](**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters {params} for GAN objective {name!r}: {exc}") from exc
