"""GAN objectives: DRAGAN (TwinGAN's default), WGAN-GP, hinge, non-saturating + R1.

An objective turns logits into losses: the discriminator's loss from the logits of a
real batch and of a fake one, plus the gradient penalty of that pair, and the
generator's adversarial loss from fake logits. It never runs the critic on images
it is given logits for, so a caller judges each real batch once however many fake
batches it is compared with.

The penalty is computed apart (:meth:`GANObjective.penalty`) because it needs the
critic itself: it is defined by the critic's input gradient at points that
``penalty_points`` samples (with an optional ``torch.Generator``), so points and
formula can be checked separately. ``penalty_scale`` multiplies the penalty term:
callers skip the penalty at 0 (no points drawn, no double backward); N applies it N
times as strongly, which is how lazy regularisation (the penalty every N steps, as
StyleGAN2 does for R1) keeps its average strength.
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


def unit_gradient_penalty(critic: Critic, points: torch.Tensor) -> torch.Tensor:
    """E[(||grad critic(points)|| - 1)^2]: DRAGAN's and WGAN-GP's penalty."""
    return (gradient_norms(critic, points) - 1.0).pow(2).mean()


def squared_gradient_penalty(critic: Critic, points: torch.Tensor) -> torch.Tensor:
    """E[||grad critic(points)||^2]: R1's penalty (at the reals)."""
    return gradient_norms(critic, points).pow(2).mean()


class GANObjective(ABC):
    name: str
    penalty_weight: float = 0.0
    """How strongly the gradient penalty counts in the discriminator's loss (0: the objective has none)."""
    penalty_of_reals: bool = False
    """Whether the penalty is a function of the real batch alone (DRAGAN, R1): then a discriminator compared with
    several fake batches in a step pays its penalty once, shared by every pair, not once per fake batch."""

    @abstractmethod
    def critic_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """The discriminator's loss for one (real, fake) pair of logit batches, without the penalty."""

    @abstractmethod
    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """Adversarial loss to minimise for the generator."""

    def penalty(
        self, critic: Critic, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor | None:
        """The gradient penalty of the pair (real, fake) (unweighted); None for objectives without one."""
        return None

    def discriminator_loss(
        self,
        real_logits: torch.Tensor,
        fake_logits: torch.Tensor,
        penalty: torch.Tensor | None = None,
        penalty_scale: float = 1.0,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss to minimise for the discriminator, and its parts for logging; ``penalty`` from :meth:`penalty`."""
        loss = self.critic_loss(real_logits, fake_logits)
        logs = {"d_real": real_logits.mean().detach(), "d_fake": fake_logits.mean().detach()}
        if penalty is not None:
            logs["gp"] = penalty.detach()
            loss = loss + penalty_scale * self.penalty_weight * penalty
        return loss, logs


class NonSaturating(GANObjective):
    """-log D(real) - log(1 - D(fake)) for D, -log D(fake) for G (logits, via softplus)."""

    name = "nonsaturating"

    def critic_loss(self, real_logits, fake_logits):
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def generator_loss(self, fake_logits):
        return F.softplus(-fake_logits).mean()


class Dragan(NonSaturating):
    """Non-saturating loss plus lambda * E[(||grad D(x_hat)|| - 1)^2] around perturbed reals.

    x_hat = x + c * std(x) * u with u ~ U(-1, 1) elementwise and std over the whole batch
    (TwinGAN: c = 0.5, lambda = 0.25).
    """

    name = "dragan"
    penalty_of_reals = True

    def __init__(self, weight: float = 0.25, perturb_scale: float = 0.5) -> None:
        self.penalty_weight = weight
        self.perturb_scale = perturb_scale

    def penalty_points(self, real: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        u = torch.rand(real.shape, generator=generator, device=real.device, dtype=real.dtype) * 2.0 - 1.0
        return real.detach() + self.perturb_scale * real.detach().std() * u

    def penalty(self, critic, real, fake, generator=None):
        return unit_gradient_penalty(critic, self.penalty_points(real, generator))


class WganGp(GANObjective):
    """Wasserstein loss with a gradient penalty on real/fake interpolates, plus PGGAN's drift term."""

    name = "wgan-gp"

    def __init__(self, weight: float = 10.0, drift: float = 0.001) -> None:
        self.penalty_weight = weight
        self.drift = drift

    def penalty_points(
        self, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        eps = torch.rand((real.shape[0], 1, 1, 1), generator=generator, device=real.device, dtype=real.dtype)
        return torch.lerp(fake.detach(), real.detach(), eps)

    def penalty(self, critic, real, fake, generator=None):
        return unit_gradient_penalty(critic, self.penalty_points(real, fake, generator))

    def critic_loss(self, real_logits, fake_logits):
        return fake_logits.mean() - real_logits.mean() + self.drift * real_logits.pow(2).mean()

    def generator_loss(self, fake_logits):
        return -fake_logits.mean()


class Hinge(GANObjective):
    name = "hinge"

    def critic_loss(self, real_logits, fake_logits):
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    def generator_loss(self, fake_logits):
        return -fake_logits.mean()


class NonSaturatingR1(NonSaturating):
    """Non-saturating loss plus (gamma / 2) * E[||grad D(real)||^2] (Mescheder et al. 2018)."""

    name = "ns-r1"
    penalty_of_reals = True

    def __init__(self, gamma: float = 10.0) -> None:
        self.gamma = gamma
        self.penalty_weight = 0.5 * gamma

    def penalty(self, critic, real, fake, generator=None):
        return squared_gradient_penalty(critic, real)


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
