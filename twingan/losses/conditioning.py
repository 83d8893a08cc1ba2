"""Per-step inputs of the optional modes: generation noise, references and attribute targets.

Everything random in a training step is drawn here, once, from the trainer's
seeded generator, so the discriminator and generator steps see the same draws
and a resumed run draws exactly what an uninterrupted one would.

- Generation: Gaussian noise per domain (one row per real image).
- Reference guidance: the references of images rendered into domain d are the
  batch's reals of d rolled by one (another face of that domain), a second roll for
  the diversity term. A fraction ``PLAIN_PROBABILITY`` of the rows is rendered
  without a reference (zero code), reconstruction and way back included, so the
  model still translates when no reference is given.
- Recolouring (label-free reference training): each real gets a random hue
  rotation and saturation factor; the recolour loss asks the generator to restore
  the original from the recoloured image's encoding and the ORIGINAL's style code,
  so colours must come from the code, not from the source's skip features.
- Reference and attributes together: a group the targets leave at -1 must show the
  REFERENCE's label on a reference-guided row (the attribute classifier teaches
  the style code what the reference looks like), the source's on a plain row.
- Attributes: the targets of images rendered into d are the labels of d's batch
  rolled by one (realistic combinations), each group kept with probability
  ``keep_probability`` and otherwise -1: "leave this attribute as the source has it".
  Faces drawn from noise take the same targets with rows paired (row 2k+1 repeats
  row 2k's), so the mode-seeking term, which compares rows 2k and 2k+1, compares
  two noises under one condition: two different conditions would already draw two
  different faces and leave each condition free to collapse to one face.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from kornia.enhance import adjust_hue, adjust_saturation

from twingan.models import TwinGAN
from twingan.models.attributes import AttributeSchema

KEEP_PROBABILITY = 0.5
PLAIN_PROBABILITY = 0.25
SATURATION_RANGE = (0.5, 1.5)


@dataclass
class StepInputs:
    """One training step's data: ``reals[d]`` (B, 3, R, R), ``labels[d]`` (B, groups) or None, and the draws.

    ``styled[d]`` (B,) bool: which rows rendered into d take a reference (None without a style encoder).
    ``recolour[d]`` (B, 2): hue rotation (radians) and saturation factor per real (None without one).
    """

    reals: list[torch.Tensor]
    labels: list[torch.Tensor | None]
    noise: list[torch.Tensor] | None = None
    targets: list[torch.Tensor | None] | None = None
    styled: list[torch.Tensor] | None = None
    recolour: list[torch.Tensor] | None = None

    @property
    def num_domains(self) -> int:
        return len(self.reals)

    def generation_targets(self, domain: int) -> torch.Tensor | None:
        """The attribute targets of faces drawn from noise for ``domain``: its targets, rows paired (2k+1 = 2k)."""
        target = self.targets[domain] if self.targets is not None else None
        if target is None:
            return None
        return target[torch.arange(target.shape[0], device=target.device) // 2 * 2]


def draw_inputs(
    model: TwinGAN,
    reals: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor | None] | None = None,
    generator: torch.Generator | None = None,
    keep_probability: float = KEEP_PROBABILITY,
    plain_probability: float = PLAIN_PROBABILITY,
) -> StepInputs:
    """Bundle a step's batches with its random draws (noise, attribute targets, reference-guided rows)."""
    reals = list(reals)
    labels = list(labels) if labels is not None else [None] * len(reals)
    if len(labels) != len(reals):
        raise ValueError(f"{len(labels)} label batches for {len(reals)} domains")
    device = reals[0].device
    noise = None
    if model.mapping is not None:
        noise = [torch.randn(x.shape[0], model.cfg.noise_dim, generator=generator, device=device) for x in reals]
    targets = None
    if model.attribute_schema:
        targets = []
        for lab in labels:
            if lab is None:
                targets.append(None)
                continue
            lab = lab.to(device)
            keep = torch.rand(lab.shape, generator=generator, device=device) < keep_probability
            targets.append(torch.where(keep, lab.roll(1, 0), torch.full_like(lab, -1)))
    styled = recolour = None
    if model.style_encoder is not None:
        styled = [torch.rand(x.shape[0], generator=generator, device=device) >= plain_probability for x in reals]
        low, high = SATURATION_RANGE
        recolour = []
        for x in reals:
            u = torch.rand(x.shape[0], 2, generator=generator, device=device)
            recolour.append(torch.stack([(2 * u[:, 0] - 1) * math.pi, low + (high - low) * u[:, 1]], dim=1))
    return StepInputs(reals, labels, noise, targets, styled, recolour)


def recoloured(inputs: StepInputs, domain: int) -> torch.Tensor:
    """``domain``'s reals with their drawn hue rotation and saturation factor (still in [-1, 1])."""
    if inputs.recolour is None:
        raise ValueError("no recolouring was drawn for this step (the model has no style encoder)")
    x = inputs.reals[domain]
    hue, saturation = inputs.recolour[domain].to(x.dtype).unbind(1)
    rgb = x.float().add(1).div(2).clamp(0, 1)
    rgb = adjust_saturation(adjust_hue(rgb, hue.float()), saturation.float())
    return rgb.mul(2).sub(1).to(x.dtype)


def references(inputs: StepInputs, domain: int, shift: int = 1) -> torch.Tensor:
    """Reference images for renderings into ``domain``: its own reals, rolled."""
    return inputs.reals[domain].roll(shift, 0)


def styled_rows(inputs: StepInputs, domain: int) -> torch.Tensor | None:
    """(B,) bool: the rows rendered into ``domain`` that take a reference; None without a style encoder."""
    return inputs.styled[domain] if inputs.styled is not None else None


def _masked(style: torch.Tensor | None, rows: torch.Tensor | None) -> torch.Tensor | None:
    """``style`` with the rows outside ``rows`` set to a zero code (all kept when ``rows`` is None)."""
    if style is None or rows is None:
        return style
    return style * rows.unsqueeze(1).to(style.dtype)


def translation_condition(model: TwinGAN, inputs: StepInputs, domain: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(condition, style code) for images translated INTO ``domain`` (None, None when unconditioned).

    The code is zero on the rows that are rendered without a reference (see :func:`styled_rows`).
    """
    n = inputs.reals[domain].shape[0]
    style = model.style(references(inputs, domain), domain) if model.style_encoder is not None else None
    style = _masked(style, styled_rows(inputs, domain))
    targets = inputs.targets[domain] if inputs.targets is not None else None
    return model.condition(n, style=style, labels=targets), style


def own_condition(
    model: TwinGAN, n: int, style: torch.Tensor | None, labels: torch.Tensor | None, rows: torch.Tensor | None = None
) -> torch.Tensor | None:
    """The condition that describes ``n`` images themselves: their own style code and their own labels (for
    reconstructions, the recolouring and the cycle's way back). ``rows``: which rows keep their code (the
    others a zero code); None: all.
    """
    return model.condition(n, style=_masked(style, rows), labels=labels if model.attribute_schema else None)


def generation_condition(model: TwinGAN, inputs: StepInputs, domain: int) -> torch.Tensor | None:
    """Generated faces are conditioned on the attribute targets only (no reference), rows paired."""
    return model.condition(inputs.reals[domain].shape[0], labels=inputs.generation_targets(domain))


def classification_targets(
    inputs: StepInputs, source: int | None, domain: int
) -> torch.Tensor | None:
    """What the attribute classifier should read on an image rendered into ``domain``.

    A named target group must show its target; a group left at -1 must show the
    reference's label on a reference-guided row and keep the source's on a plain one
    (unknown when that image has no labels). ``source`` None: generated (its paired targets only).
    """
    if inputs.targets is None:
        return None
    if source is None:
        return inputs.generation_targets(domain)
    target = inputs.targets[domain]
    if target is None:
        return target
    unknown = torch.full_like(target, -1)
    own = inputs.labels[source].to(target.device) if inputs.labels[source] is not None else unknown
    rows = styled_rows(inputs, domain)
    if rows is not None:
        reference = inputs.labels[domain]
        reference = reference.roll(1, 0).to(target.device) if reference is not None else unknown
        own = torch.where(rows.to(target.device).unsqueeze(1), reference, own)
    return torch.where(target >= 0, target, own)


def attribute_loss(schema: AttributeSchema, logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
    """Mean cross-entropy over attribute groups, on the rows whose label is known; None if none is."""
    if labels is None:
        return None
    losses = []
    for g, block in enumerate(schema.split_logits(logits.float())):
        column = labels[:, g].to(logits.device)
        known = column >= 0
        if known.any():
            losses.append(F.cross_entropy(block[known], column[known]))
    return torch.stack(losses).mean() if losses else None
