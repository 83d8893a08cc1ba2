"""TwinGAN's objective over N domains: the generator's terms (twingan.losses.terms) and the discriminators'.

A step's two sides share one way of working: a :class:`StepContext` computes what the
terms need once, the active terms are chosen once, and each side adds up its terms.
The discriminator of domain d judges its reals once and compares them with everything
rendered into d (translations, reconstructions from ``recon_adversarial_from`` px,
faces generated from noise), each fake batch with its own gradient penalty; with
attributes it also learns to classify the labelled reals, from the same pass.
"""
from __future__ import annotations

import functools
from typing import Sequence, Union

import torch

from twingan.losses.conditioning import StepInputs, attribute_loss, draw_inputs
from twingan.losses.context import StepContext, classifies_attributes, judged_renderings
from twingan.losses.d_augment import AugmentedDiscriminators, DiffAugment
from twingan.losses.gan import GANObjective
from twingan.losses.terms import active_terms
from twingan.losses.weights import LossWeights
from twingan.models import Discriminators, TwinGAN

Batch = Union[StepInputs, Sequence[torch.Tensor]]
Rendered = list[list[torch.Tensor]]
"""``rendered[d]``: every image rendered into domain d in a step and judged by D_d (see ``judged_renderings``)."""


def _mean(values: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack(list(values)).mean()


def discriminator_adversarial(
    ctx: StepContext, fakes: Rendered, generator: torch.Generator | None, penalty_scale: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean over every (domain, fake batch) of the objective's loss for D_d, the reals judged once per domain.

    A penalty of the reals alone (``objective.penalty_of_reals``: DRAGAN, R1) is computed once per domain and
    shared by its fake batches, so it weighs as much as one per-pair penalty and costs one double backward.
    """
    objective, losses, logs = ctx.objective, [], {}
    for d, real in enumerate(ctx.inputs.reals):
        critic = functools.partial(ctx.discriminators, domain=d)
        real_logits = ctx.real_judgement(d).logits
        shared_penalty = None
        for fake in fakes[d]:
            fake = fake.detach()
            penalty = None
            if penalty_scale and objective.penalty_of_reals:
                if shared_penalty is None:
                    shared_penalty = _penalty(objective, critic, real, fake, generator)
                penalty = shared_penalty
            elif penalty_scale:
                penalty = _penalty(objective, critic, real, fake, generator)
            loss, parts = objective.discriminator_loss(real_logits, critic(fake), penalty, penalty_scale)
            losses.append(loss)
            for key, value in parts.items():
                logs.setdefault(key, []).append(value)
    return _mean(losses), {key: _mean(values) for key, values in logs.items()}


def _penalty(
    objective: GANObjective, critic, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor | None:
    with torch.profiler.record_function("twingan.gradient_penalty"):
        return objective.penalty(critic, real, fake, generator)


def discriminator_attributes(ctx: StepContext) -> torch.Tensor | None:
    """Mean cross-entropy of the attributes read on the labelled reals; None when no domain has labels."""
    schema, values = ctx.model.attribute_schema, []
    for d, labels in enumerate(ctx.inputs.labels):
        ce = attribute_loss(schema, ctx.real_judgement(d).attributes, labels)
        if ce is not None:
            values.append(ce)
    return _mean(values) if values else None


class TranslationLosses:
    """Computes the generator-side and discriminator-side losses of one training step.

    ``batch`` is a :class:`StepInputs` (from :func:`draw_inputs`) or simply the list of
    real batches ``reals[d]`` of every domain at the model's current resolution.
    ``d_augment``: what every image the discriminators judge goes through, reals and fakes
    alike, on both sides of the step (:mod:`twingan.losses.d_augment`); its draws come from
    the ``generator`` each side is given.
    """

    def __init__(
        self, objective: GANObjective, weights: LossWeights = LossWeights(), d_augment: DiffAugment | None = None
    ) -> None:
        self.objective = objective
        self.weights = weights
        self.d_augment = d_augment if d_augment else None

    def has_discriminator_terms(self, model: TwinGAN, num_domains: int) -> bool:
        """False when nothing is judged this step (one domain, no generation, below recon_adversarial_from)."""
        return any(judged_renderings(self.weights, model, num_domains))

    def _context(
        self, model: TwinGAN, discriminators: Discriminators, batch: Batch, generator: torch.Generator | None = None
    ) -> StepContext:
        inputs = batch if isinstance(batch, StepInputs) else draw_inputs(model, batch)
        critics = discriminators
        if self.d_augment is not None:
            critics = AugmentedDiscriminators(discriminators, self.d_augment, generator)
        return StepContext(model, critics, self.objective, self.weights, inputs)

    def generator_loss(
        self, model: TwinGAN, discriminators: Discriminators, batch: Batch, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The generator side's total loss and its parts for logging."""
        total, logs, _ = self.generator_step(model, discriminators, batch, generator)
        return total, logs

    def generator_step(
        self, model: TwinGAN, discriminators: Discriminators, batch: Batch, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], Rendered]:
        """:meth:`generator_loss`, plus everything it rendered into each domain for the discriminators
        (detached), so the discriminator step can judge the same images without rendering them again.
        ``generator``: the random stream of the discriminator augmentation (when there is one)."""
        ctx = self._context(model, discriminators, batch, generator)
        total = ctx.inputs.reals[0].new_zeros(())
        logs: dict[str, torch.Tensor] = {}
        for term in active_terms(self.weights, model, ctx.num_domains):
            values = term.values(ctx)
            if values:
                value = _mean(values)
                logs[f"g_{term.name}"] = value.detach()
                total = total + getattr(self.weights, term.weight) * value
        logs["g_total"] = total.detach()
        return total, logs, ctx.judged_images()

    def discriminator_loss(
        self,
        model: TwinGAN,
        discriminators: Discriminators,
        batch: Batch,
        generator: torch.Generator | None = None,
        rendered: Rendered | None = None,
        penalty_scale: float = 1.0,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D loss for every domain: its reals against everything rendered into it, and the attributes of its reals.

        ``rendered``: those images as :meth:`generator_step` returned them for this
        batch; rendered here (without gradients) when None. ``penalty_scale``: see
        :mod:`twingan.losses.gan` (0 on the steps lazy regularisation skips).
        """
        ctx = self._context(model, discriminators, batch, generator)
        if not any(ctx.judged):
            raise ValueError("nothing for the discriminators to judge in this configuration")
        fakes = rendered if rendered is not None else ctx.judged_images()
        if len(fakes) != ctx.num_domains:
            raise ValueError(f"rendered images for {len(fakes)} domains, the batch has {ctx.num_domains}")
        total, logs = discriminator_adversarial(ctx, fakes, generator, penalty_scale)
        if classifies_attributes(self.weights, model):
            ce = discriminator_attributes(ctx)
            if ce is not None:
                logs["d_attr"] = ce.detach()
                total = total + self.weights.attribute * ce
        logs["d_total"] = total.detach()
        return total, logs

    def render_for_discriminators(self, model: TwinGAN, discriminators: Discriminators, batch: Batch) -> Rendered:
        """What :meth:`generator_step` renders for the discriminators, in the same order, without gradients."""
        return self._context(model, discriminators, batch).judged_images()
