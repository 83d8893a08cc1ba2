"""TwinGAN's losses over N domains: reconstruction, adversarial, semantic consistency, cycle.

For every domain d and every other domain o (each ordered pair):
- reconstruction: L1(x_d, G_d(E_d(x_d)));
- adversarial on translations: D_d judges G_d(E_o(x_o));
- adversarial on reconstructions too, from ``recon_adversarial_from`` px (64 in TwinGAN);
- semantic consistency: L1(E_o(x_o), E_d(G_d(E_o(x_o)))) on the 4x4 latent;
- cycle: L1(x_o, G_o(E_d(G_d(E_o(x_o))))), the true round trip o -> d -> o.

Optional modes, active when the model has the part (see twingan.losses.conditioning):
- generation (mapping network): D_d also judges G_d(M(z)), faces drawn from noise;
- reference guidance (style encoder): translations into d take the style of
  another real face of d; style reconstruction L1(S_d(fake), s) and a diversity
  term -L1(fake(s1), fake(s2)) make the generator use the code; reconstructions
  and the cycle's way back use the image's own style; a quarter of the rows go
  without a reference (zero code) all the way, so plain translation stays trained;
- attributes: the discriminators also classify attributes (AC-GAN); D learns on
  labelled reals, G is asked to show the target attributes (and keep the
  source's where no target is named);
- recolouring (style encoder, ``recolour`` > 0): L1(x_d, G_d(E_d(recolour(x_d)), S_d(x_d))),
  the image restored from a hue-rotated copy of itself and its own style code:
  a label-free signal that the colours of a translation come from the code.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence, Union

import torch
import torch.nn.functional as F

from twingan.losses.conditioning import (
    StepInputs,
    attribute_loss,
    classification_targets,
    draw_inputs,
    generation_condition,
    own_condition,
    own_styles,
    recoloured,
    references,
    styled_rows,
    translation_condition,
)
from twingan.losses.gan import GANObjective
from twingan.models import Discriminators, TwinGAN


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms; the defaults are conf/loss/default.yaml's."""

    reconstruction: float = 10.0
    adversarial: float = 1.0
    adversarial_reconstruction: float = 1.0
    semantic: float = 0.1
    semantic_contrast: float = 1.0
    cycle: float = 10.0
    recon_adversarial_from: int = 64
    generation: float = 1.0
    mode_seeking: float = 0.0
    style_reconstruction: float = 1.0
    style_diversity: float = 0.5
    attribute: float = 1.0
    recolour: float = 0.0


Batch = Union[StepInputs, Sequence[torch.Tensor]]
Rendered = list[list[torch.Tensor]]
"""``rendered[d]``: every image rendered into domain d in a step (translations, reconstructions, generations)."""

_JUDGED_ORDER = ("adv", "adv_recon", "gen")

_WEIGHT_OF = {
    "recon": "reconstruction",
    "adv": "adversarial",
    "adv_recon": "adversarial_reconstruction",
    "semantic": "semantic",
    "contrast": "semantic_contrast",
    "cycle": "cycle",
    "gen": "generation",
    "mode_seeking": "mode_seeking",
    "style": "style_reconstruction",
    "diversity": "style_diversity",
    "attr": "attribute",
    "recolour": "recolour",
}


CONTRAST_TEMPERATURE = 0.1


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


class TranslationLosses:
    """Computes the generator-side and discriminator-side losses of one training step.

    ``batch`` is a :class:`StepInputs` (from :func:`draw_inputs`) or simply the list of
    real batches ``reals[d]`` of every domain at the model's current resolution.
    """

    def __init__(self, objective: GANObjective, weights: LossWeights = LossWeights()) -> None:
        self.objective = objective
        self.weights = weights

    def _recon_adversarial(self, resolution: int) -> bool:
        return resolution >= self.weights.recon_adversarial_from and self.weights.adversarial_reconstruction > 0

    def _generation(self, model: TwinGAN) -> bool:
        return model.mapping is not None and self.weights.generation > 0

    def _attributes(self, model: TwinGAN) -> bool:
        return bool(model.attribute_schema) and self.weights.attribute > 0

    def has_discriminator_terms(self, model: TwinGAN, num_domains: int) -> bool:
        """False when nothing is judged this step (one domain, no generation, below recon_adversarial_from)."""
        return num_domains > 1 or self._generation(model) or self._recon_adversarial(model.resolution)

    @staticmethod
    def _inputs(model: TwinGAN, batch: Batch) -> StepInputs:
        return batch if isinstance(batch, StepInputs) else draw_inputs(model, batch)

    def generator_loss(
        self, model: TwinGAN, discriminators: Discriminators, batch: Batch
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The generator side's total loss and its parts for logging."""
        total, logs, _ = self.generator_step(model, discriminators, batch)
        return total, logs

    def generator_step(
        self, model: TwinGAN, discriminators: Discriminators, batch: Batch
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], Rendered]:
        """:meth:`generator_loss`, plus everything it rendered into each domain for the discriminators
        (detached), so the discriminator step can judge the same images without rendering them again."""
        w = self.weights
        inputs = self._inputs(model, batch)
        reals, n = inputs.reals, inputs.num_domains
        use_attr = self._attributes(model)
        parts: dict[str, list[torch.Tensor]] = {key: [] for key in _WEIGHT_OF}
        judged: dict[str, list[list[torch.Tensor]]] = {key: [[] for _ in range(n)] for key in _JUDGED_ORDER}

        def judge(fake: torch.Tensor, d: int, key: str, targets: torch.Tensor | None) -> None:
            judged[key][d].append(fake.detach())
            if use_attr:
                logits, attr_logits = discriminators.with_attributes(fake, d)
                ce = attribute_loss(model.attribute_schema, attr_logits, targets)
                if ce is not None:
                    parts["attr"].append(ce)
            else:
                logits = discriminators(fake, d)
            parts[key].append(self.objective.generator_loss(logits))

        recon_needed = w.reconstruction > 0 or self._recon_adversarial(model.resolution)
        recolour = model.style_encoder is not None and w.recolour > 0
        if recon_needed or n > 1:
            encodings = [model.encode(x, d) for d, x in enumerate(reals)]
        styles = own_styles(model, reals) if recon_needed or n > 1 or recolour else []
        for d, x in enumerate(reals if recon_needed else []):
            own = own_condition(model, x.shape[0], styles[d], inputs.labels[d], styled_rows(inputs, d))
            recon = model.decode(*encodings[d], d, own)
            parts["recon"].append(F.l1_loss(recon, x))
            if self._recon_adversarial(model.resolution):
                judge(recon, d, "adv_recon", inputs.labels[d])
        for d, x in enumerate(reals if recolour else []):
            own = own_condition(model, x.shape[0], styles[d], inputs.labels[d])
            restored = model.decode(*model.encode(recoloured(inputs, d), d), d, own)
            parts["recolour"].append(F.l1_loss(restored, x))
        conditions = [translation_condition(model, inputs, d) for d in range(n)] if n > 1 else []
        for d in range(n if n > 1 else 0):
            cond, style = conditions[d]
            rows = styled_rows(inputs, d)
            guided = style is not None and bool(rows.any())
            for o in range(n):
                if o == d:
                    continue
                latent_o, skips_o = encodings[o]
                fake = model.decode(latent_o, skips_o, d, cond)
                judge(fake, d, "adv", classification_targets(inputs, o, d))
                if guided and w.style_reconstruction > 0:
                    parts["style"].append(F.l1_loss(model.style(fake[rows], d), style[rows]))
                if guided and w.style_diversity > 0 and not parts["diversity"]:
                    other_style = model.style(references(inputs, d, shift=2), d)
                    targets = inputs.targets[d] if inputs.targets is not None else None
                    other = model.decode(latent_o, skips_o, d, model.condition(fake.shape[0], other_style, targets))
                    parts["diversity"].append(-F.l1_loss(fake[rows], other[rows]))
                if w.semantic > 0 or w.cycle > 0 or w.semantic_contrast > 0:
                    latent_f, skips_f = model.encode(fake, d)
                    parts["semantic"].append(F.l1_loss(latent_f, latent_o))
                    if w.semantic_contrast > 0:
                        parts["contrast"].append(latent_contrast(latent_f, latent_o))
                    if w.cycle > 0:
                        back = own_condition(model, reals[o].shape[0], styles[o], inputs.labels[o], rows)
                        parts["cycle"].append(F.l1_loss(model.decode(latent_f, skips_f, o, back), reals[o]))
        if self._generation(model):
            for d in range(n):
                generated = model.generate(inputs.noise[d], d, generation_condition(model, inputs, d))
                judge(generated, d, "gen", classification_targets(inputs, None, d))
                if w.mode_seeking > 0:
                    parts["mode_seeking"].append(mode_seeking(generated, inputs.noise[d]))
        total = reals[0].new_zeros(())
        logs: dict[str, torch.Tensor] = {}
        for key, values in parts.items():
            if values:
                value = torch.stack(values).mean()
                logs[f"g_{key}"] = value.detach()
                total = total + getattr(w, _WEIGHT_OF[key]) * value
        logs["g_total"] = total.detach()
        rendered = [[fake for key in _JUDGED_ORDER for fake in judged[key][d]] for d in range(n)]
        return total, logs, rendered

    def discriminator_loss(
        self,
        model: TwinGAN,
        discriminators: Discriminators,
        batch: Batch,
        generator: torch.Generator | None = None,
        rendered: Rendered | None = None,
        penalty_scale: float = 1.0,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D loss for every domain: its reals against everything rendered into it.

        Translations into d, reconstructions (from recon_adversarial_from px) and
        generated faces; plus, with attributes, the classification of labelled reals.
        ``rendered``: those images as :meth:`generator_step` returned them for this
        batch; rendered here (without gradients) when None. ``penalty_scale``: see
        :mod:`twingan.losses.gan` (0 on the steps lazy regularisation skips).
        """
        inputs = self._inputs(model, batch)
        reals, n = inputs.reals, inputs.num_domains
        if not self.has_discriminator_terms(model, n):
            raise ValueError("nothing for the discriminators to judge in this configuration")
        fakes = rendered if rendered is not None else self._render_for_discriminators(model, inputs)
        if len(fakes) != n:
            raise ValueError(f"rendered images for {len(fakes)} domains, the batch has {n}")
        losses, logs_all = [], {}
        for d, real in enumerate(reals):
            critic = functools.partial(discriminators, domain=d)
            for fake in fakes[d]:
                loss, logs = self.objective.discriminator_loss(critic, real, fake.detach(), generator, penalty_scale)
                losses.append(loss)
                for key, value in logs.items():
                    logs_all.setdefault(key, []).append(value)
        total = torch.stack(losses).mean()
        out = {key: torch.stack(values).mean() for key, values in logs_all.items()}
        if self._attributes(model):
            ces = []
            for d, real in enumerate(reals):
                _, attr_logits = discriminators.with_attributes(real, d)
                ce = attribute_loss(model.attribute_schema, attr_logits, inputs.labels[d])
                if ce is not None:
                    ces.append(ce)
            if ces:
                ce = torch.stack(ces).mean()
                out["d_attr"] = ce.detach()
                total = total + self.weights.attribute * ce
        out["d_total"] = total.detach()
        return total, out

    @torch.no_grad()
    def _render_for_discriminators(self, model: TwinGAN, inputs: StepInputs) -> Rendered:
        """What :meth:`generator_step` renders into each domain, in the same order, without gradients."""
        reals, n = inputs.reals, inputs.num_domains
        encodings = [model.encode(x, d) for d, x in enumerate(reals)]
        fakes: Rendered = [[] for _ in range(n)]
        for d in range(n if n > 1 else 0):
            cond, _ = translation_condition(model, inputs, d)
            for o in range(n):
                if o != d:
                    fakes[d].append(model.decode(*encodings[o], d, cond))
        if self._recon_adversarial(model.resolution):
            styles = own_styles(model, reals)
            for d in range(n):
                own = own_condition(model, reals[d].shape[0], styles[d], inputs.labels[d], styled_rows(inputs, d))
                fakes[d].append(model.decode(*encodings[d], d, own))
        if self._generation(model):
            for d in range(n):
                fakes[d].append(model.generate(inputs.noise[d], d, generation_condition(model, inputs, d)))
        return fakes
