"""One training step's shared computations, each done at most once, when a loss term first asks for it.

Every term of the objective reads from a :class:`StepContext`: the domains' encodings
and own style codes, the conditions of the translations into each domain, every
image rendered in the step, its re-encoding, and the discriminators' judgement of
each rendering and of each domain's reals (the real/fake logit together with the
attribute logits of the same pass). So a translation that the adversarial, style,
latent and cycle terms all use is rendered once, and a real batch is judged once
however many renderings it is compared with.

What the discriminators judge is decided by :func:`judged_renderings`, from the
weights and the model, for both sides of the step.
"""
from __future__ import annotations

from typing import Callable, Literal, NamedTuple, TypeVar

import torch

from twingan.losses.conditioning import (
    StepInputs,
    classification_targets,
    generation_condition,
    own_condition,
    references,
    styled_rows,
    translation_condition,
)
from twingan.losses.gan import GANObjective
from twingan.losses.weights import LossWeights
from twingan.models import Discriminators, TwinGAN

Kind = Literal["translation", "reconstruction", "generation"]
Encoding = tuple[torch.Tensor, dict[int, torch.Tensor]]
T = TypeVar("T")


class Rendering(NamedTuple):
    """One batch rendered into ``domain``: translated from ``source``, reconstructed, or generated from noise."""

    kind: Kind
    domain: int
    source: int | None = None


class Judgement(NamedTuple):
    """A discriminator's verdict on a batch: real/fake logits (N, 1), attribute logits (None without attributes)."""

    logits: torch.Tensor
    attributes: torch.Tensor | None


def translations(num_domains: int) -> list[Rendering]:
    """Every translation of a step, target domain by target domain, each from every other domain."""
    return [Rendering("translation", d, o) for d in range(num_domains) for o in range(num_domains) if o != d]


def judges_reconstructions(weights: LossWeights, model: TwinGAN) -> bool:
    """Reconstructions are judged from ``recon_adversarial_from`` px on (64 in TwinGAN)."""
    return model.resolution >= weights.recon_adversarial_from and weights.adversarial_reconstruction > 0


def generates(weights: LossWeights, model: TwinGAN) -> bool:
    """Faces drawn from noise are rendered and judged when the model has a mapping network."""
    return model.mapping is not None and weights.generation > 0


def classifies_attributes(weights: LossWeights, model: TwinGAN) -> bool:
    return bool(model.attribute_schema) and weights.attribute > 0


def judged_renderings(weights: LossWeights, model: TwinGAN, num_domains: int) -> list[list[Rendering]]:
    """``[d]``: what domain d's discriminator judges, in order: translations into d, its reconstruction
    (from recon_adversarial_from px), its generated faces (with a mapping network)."""
    judged: list[list[Rendering]] = [[] for _ in range(num_domains)]
    for rendering in translations(num_domains):
        judged[rendering.domain].append(rendering)
    for d in range(num_domains):
        if judges_reconstructions(weights, model):
            judged[d].append(Rendering("reconstruction", d))
        if generates(weights, model):
            judged[d].append(Rendering("generation", d))
    return judged


class StepContext:
    """The model, discriminators and inputs of one step, and what the loss terms compute from them, memoised.

    Built afresh for every step (and for each side of it): nothing here outlives the step.
    """

    def __init__(
        self,
        model: TwinGAN,
        discriminators: Discriminators,
        objective: GANObjective,
        weights: LossWeights,
        inputs: StepInputs,
    ) -> None:
        self.model = model
        self.discriminators = discriminators
        self.objective = objective
        self.weights = weights
        self.inputs = inputs
        self.with_attributes = classifies_attributes(weights, model)
        self.judged = judged_renderings(weights, model, inputs.num_domains)
        self._memo: dict[tuple, object] = {}

    def _once(self, key: tuple, compute: Callable[[], T]) -> T:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]  # type: ignore[return-value]

    @property
    def num_domains(self) -> int:
        return self.inputs.num_domains

    # ---- the reals ---------------------------------------------------------------------------

    def encoding(self, domain: int) -> Encoding:
        """(latent, skips) of ``domain``'s reals."""
        return self._once(("encoding", domain), lambda: self.model.encode(self.inputs.reals[domain], domain))

    def own_style(self, domain: int) -> torch.Tensor | None:
        """The style codes of ``domain``'s reals themselves (None without a style encoder)."""
        if self.model.style_encoder is None:
            return None
        return self._once(("own_style", domain), lambda: self.model.style(self.inputs.reals[domain], domain))

    def own_condition(self, domain: int, rows: torch.Tensor | None = None) -> torch.Tensor | None:
        """The condition describing ``domain``'s reals: own style code (zero outside ``rows``), own labels."""
        reals = self.inputs.reals[domain]
        return own_condition(self.model, reals.shape[0], self.own_style(domain), self.inputs.labels[domain], rows)

    def real_judgement(self, domain: int) -> Judgement:
        """``domain``'s discriminator on its reals, once per step."""
        return self._once(("real_judgement", domain), lambda: self._judge(self.inputs.reals[domain], domain))

    # ---- translations into a domain ----------------------------------------------------------

    def translation_condition(self, domain: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(condition, reference style code) of the translations into ``domain``."""
        return self._once(("translation_condition", domain), lambda: translation_condition(self.model, self.inputs, domain))

    def guided_rows(self, domain: int) -> torch.Tensor | None:
        """The rows translated into ``domain`` with a reference; None when there are none (or no style encoder)."""
        def compute() -> torch.Tensor | None:
            rows = styled_rows(self.inputs, domain)
            return rows if rows is not None and bool(rows.any()) else None

        return self._once(("guided_rows", domain), compute)

    def second_reference_condition(self, domain: int) -> torch.Tensor | None:
        """The condition of translations into ``domain`` styled by another reference (all rows guided)."""
        def compute() -> torch.Tensor | None:
            style = self.model.style(references(self.inputs, domain, shift=2), domain)
            targets = self.inputs.targets[domain] if self.inputs.targets is not None else None
            return self.model.condition(self.inputs.reals[domain].shape[0], style, targets)

        return self._once(("second_reference_condition", domain), compute)

    # ---- renderings --------------------------------------------------------------------------

    def render(self, rendering: Rendering) -> torch.Tensor:
        """The images of ``rendering``, with gradients unless rendered under ``torch.no_grad``."""
        return self._once(("render", rendering), lambda: self._render(rendering))

    def _render(self, rendering: Rendering) -> torch.Tensor:
        model, d = self.model, rendering.domain
        if rendering.kind == "translation":
            return model.decode(*self.encoding(rendering.source), d, self.translation_condition(d)[0])
        if rendering.kind == "reconstruction":
            return model.decode(*self.encoding(d), d, self.own_condition(d, styled_rows(self.inputs, d)))
        return model.generate(self.inputs.noise[d], d, generation_condition(model, self.inputs, d))

    def encoding_of(self, rendering: Rendering) -> Encoding:
        """(latent, skips) of a rendering, encoded in the domain it was rendered into."""
        return self._once(
            ("encoding_of", rendering), lambda: self.model.encode(self.render(rendering), rendering.domain)
        )

    def judgement(self, rendering: Rendering) -> Judgement:
        """The discriminator of the rendering's domain on it (through to the generator)."""
        return self._once(("judgement", rendering), lambda: self._judge(self.render(rendering), rendering.domain))

    def attribute_targets(self, rendering: Rendering) -> torch.Tensor | None:
        """What the attribute classifier should read on a rendering (see ``classification_targets``)."""
        if rendering.kind == "reconstruction":
            return self.inputs.labels[rendering.domain]
        return classification_targets(self.inputs, rendering.source, rendering.domain)

    @torch.no_grad()
    def judged_images(self) -> list[list[torch.Tensor]]:
        """``[d]``: the images domain d's discriminator judges (see :func:`judged_renderings`), detached."""
        return [[self.render(r).detach() for r in per_domain] for per_domain in self.judged]

    def _judge(self, images: torch.Tensor, domain: int) -> Judgement:
        if self.with_attributes:
            return Judgement(*self.discriminators.with_attributes(images, domain))
        return Judgement(self.discriminators(images, domain), None)
