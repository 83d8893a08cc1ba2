"""The terms of the generator's objective, one function each, and which of them a step computes.

Each term maps a :class:`~twingan.losses.context.StepContext` to its values, one per
batch it concerns (a domain, an ordered pair of domains, a rendering); the objective
logs their mean as ``g_<name>`` and adds it times the term's weight. A term is active
when its weight is positive and the model has what it needs (:func:`active_terms`),
decided once per step, before anything is computed.

For every domain d and every other domain o (each ordered pair):
- ``recon``: L1(x_d, G_d(E_d(x_d)));
- ``adv``: D_d judges the translation G_d(E_o(x_o));
- ``adv_recon``: D_d judges the reconstruction too, from ``recon_adversarial_from`` px (64 in TwinGAN);
- ``semantic``: latent consistency L1(E_o(x_o), E_d(G_d(E_o(x_o)))) on the 4x4 latent;
- ``contrast``: the translation's latent must identify its source's among the batch (InfoNCE);
- ``cycle``: L1(x_o, G_o(E_d(G_d(E_o(x_o))))), the true round trip o -> d -> o.

Optional modes, active when the model has the part (see twingan.losses.conditioning):
- ``gen`` (mapping network): D_d also judges G_d(M(z)), faces drawn from noise;
  ``mode_seeking``: two noises must draw two different faces (MSGAN);
- reference guidance (style encoder): translations into d take the style of another
  real face of d; ``style`` L1(S_d(fake), s) and ``diversity`` -L1(fake(s1), fake(s2))
  make the generator use the code; reconstructions and the cycle's way back use the
  image's own style; a quarter of the rows go without a reference (zero code) all the
  way, so plain translation stays trained;
- ``attr`` (attributes): the discriminators also classify attributes (AC-GAN); G is
  asked to show the target attributes on everything judged (and keep the source's
  where no target is named);
- ``recolour`` (style encoder): L1(x_d, G_d(E_d(recolour(x_d)), S_d(x_d))), the image
  restored from a hue-rotated copy of itself and its own style code: a label-free
  signal that the colours of a translation come from the code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from twingan.losses.conditioning import attribute_loss, recoloured, styled_rows
from twingan.losses.context import (
    Rendering,
    StepContext,
    classifies_attributes,
    generates,
    judges_reconstructions,
    translations,
)
from twingan.losses.weights import LossWeights
from twingan.models import TwinGAN

CONTRAST_TEMPERATURE = 0.1

Values = list[torch.Tensor]


def mode_seeking(images: torch.Tensor, noise: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mode-seeking term of MSGAN (Mao et al. 2019) over the batch's consecutive pairs.

    The ratio of the images' mean absolute difference to their noises' grows when two
    noises draw two different faces; its inverse is minimised, so noise that a collapsed
    generator maps to one face costs more the closer the faces are.
    """
    half = images.shape[0] // 2
    if half == 0:
        return images.new_zeros(())
    a, b = images[: 2 * half : 2], images[1 : 2 * half : 2]
    za, zb = noise[: 2 * half : 2], noise[1 : 2 * half : 2]
    ratio = (a - b).abs().flatten(1).mean(1) / (za - zb).abs().mean(1).clamp_min(eps)
    return 1.0 / (ratio.mean() + eps)


def latent_contrast(latents: torch.Tensor, sources: torch.Tensor, temperature: float = CONTRAST_TEMPERATURE) -> torch.Tensor:
    """InfoNCE between translations' latents and their sources' latents over the batch, both ways.

    Each set is centred on its batch mean (the embedding compares latents standardised per domain), then
    row i of one set must be most cosine-similar to row i of the other: the latent of a translation has to
    identify its source among the batch, which is what cross-domain search asks of the shared latent.
    """
    a = F.normalize((latents - latents.mean(dim=0, keepdim=True)).flatten(1).float(), dim=1)
    b = F.normalize((sources - sources.mean(dim=0, keepdim=True)).flatten(1).float(), dim=1)
    logits = a @ b.T / temperature
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def _judged(ctx: StepContext, kind: str) -> list[Rendering]:
    return [r for per_domain in ctx.judged for r in per_domain if r.kind == kind]


def _adversarial(ctx: StepContext, kind: str) -> Values:
    return [ctx.objective.generator_loss(ctx.judgement(r).logits) for r in _judged(ctx, kind)]


def reconstruction(ctx: StepContext) -> Values:
    return [F.l1_loss(ctx.render(Rendering("reconstruction", d)), x) for d, x in enumerate(ctx.inputs.reals)]


def translation_adversarial(ctx: StepContext) -> Values:
    return _adversarial(ctx, "translation")


def reconstruction_adversarial(ctx: StepContext) -> Values:
    return _adversarial(ctx, "reconstruction")


def generation_adversarial(ctx: StepContext) -> Values:
    return _adversarial(ctx, "generation")


def latent_consistency(ctx: StepContext) -> Values:
    return [F.l1_loss(ctx.encoding_of(r)[0], ctx.encoding(r.source)[0]) for r in translations(ctx.num_domains)]


def latent_identification(ctx: StepContext) -> Values:
    return [latent_contrast(ctx.encoding_of(r)[0], ctx.encoding(r.source)[0]) for r in translations(ctx.num_domains)]


def cycle(ctx: StepContext) -> Values:
    """The way back takes the source's own style, on the rows that took a reference on the way out."""
    values = []
    for r in translations(ctx.num_domains):
        back = ctx.own_condition(r.source, styled_rows(ctx.inputs, r.domain))
        returned = ctx.model.decode(*ctx.encoding_of(r), r.source, back)
        values.append(F.l1_loss(returned, ctx.inputs.reals[r.source]))
    return values


def style_reconstruction(ctx: StepContext) -> Values:
    values = []
    for r in translations(ctx.num_domains):
        rows = ctx.guided_rows(r.domain)
        if rows is not None:
            style = ctx.translation_condition(r.domain)[1]
            values.append(F.l1_loss(ctx.model.style(ctx.render(r)[rows], r.domain), style[rows]))
    return values


def diversity(ctx: StepContext) -> Values:
    """Every guided translation against the same source styled by a second reference (subtracted)."""
    values = []
    for r in translations(ctx.num_domains):
        rows = ctx.guided_rows(r.domain)
        if rows is not None:
            other = ctx.model.decode(*ctx.encoding(r.source), r.domain, ctx.second_reference_condition(r.domain))
            values.append(-F.l1_loss(ctx.render(r)[rows], other[rows]))
    return values


def mode_seeking_values(ctx: StepContext) -> Values:
    return [mode_seeking(ctx.render(Rendering("generation", d)), ctx.inputs.noise[d]) for d in range(ctx.num_domains)]


def attributes(ctx: StepContext) -> Values:
    """Cross-entropy of the attributes read on everything judged, where a target is known."""
    values = []
    for per_domain in ctx.judged:
        for r in per_domain:
            ce = attribute_loss(ctx.model.attribute_schema, ctx.judgement(r).attributes, ctx.attribute_targets(r))
            if ce is not None:
                values.append(ce)
    return values


def recolour(ctx: StepContext) -> Values:
    values = []
    for d, x in enumerate(ctx.inputs.reals):
        restored = ctx.model.decode(*ctx.model.encode(recoloured(ctx.inputs, d), d), d, ctx.own_condition(d))
        values.append(F.l1_loss(restored, x))
    return values


Applies = Callable[[LossWeights, TwinGAN, int], bool]
"""Whether a term applies to a step, from (weights, model, number of domains), before its weight is looked at."""


@dataclass(frozen=True)
class Term:
    """A term of the generator's objective: logged as ``g_<name>``, weighted by ``weights.<weight>``."""

    name: str
    weight: str
    values: Callable[[StepContext], Values]
    applies: Applies

    def active(self, weights: LossWeights, model: TwinGAN, num_domains: int) -> bool:
        return getattr(weights, self.weight) > 0 and self.applies(weights, model, num_domains)


TERMS: tuple[Term, ...] = (
    Term("recon", "reconstruction", reconstruction, lambda w, model, n: True),
    Term("adv", "adversarial", translation_adversarial, lambda w, model, n: n > 1),
    Term("adv_recon", "adversarial_reconstruction", reconstruction_adversarial,
         lambda w, model, n: judges_reconstructions(w, model)),
    Term("semantic", "semantic", latent_consistency, lambda w, model, n: n > 1),
    Term("contrast", "semantic_contrast", latent_identification, lambda w, model, n: n > 1),
    Term("cycle", "cycle", cycle, lambda w, model, n: n > 1),
    Term("gen", "generation", generation_adversarial, lambda w, model, n: generates(w, model)),
    Term("mode_seeking", "mode_seeking", mode_seeking_values, lambda w, model, n: generates(w, model)),
    Term("style", "style_reconstruction", style_reconstruction,
         lambda w, model, n: n > 1 and model.style_encoder is not None),
    Term("diversity", "style_diversity", diversity, lambda w, model, n: n > 1 and model.style_encoder is not None),
    Term("attr", "attribute", attributes, lambda w, model, n: classifies_attributes(w, model)),
    Term("recolour", "recolour", recolour, lambda w, model, n: model.style_encoder is not None),
)
"""Every term, in the order the total adds them."""


def active_terms(weights: LossWeights, model: TwinGAN, num_domains: int) -> tuple[Term, ...]:
    """The terms a step with this model, these weights and this many domains computes."""
    return tuple(term for term in TERMS if term.active(weights, model, num_domains))
