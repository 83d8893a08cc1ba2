"""Per-step inputs of the optional modes: generation noise, references and attribute targets.

Everything random in a training step is drawn here, once, from the trainer's
seeded generator, so the discriminator and generator steps see the same draws
and a resumed run draws exactly what an uninterrupted one would.

- Generation: Gaussian noise per domain (one row per real image).
- Reference guidance: the references of images rendered into domain d are the
  batch's reals of d rolled by one (another face of that domain), a second roll for
  the diversity term.
- Attributes: the targets of images rendered into d are the labels of d's batch
  rolled by one (realistic combinations), each group kept with probability
  ``keep_probability`` and otherwise -1: "leave this attribute as the source has it".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from twingan.models import TwinGAN
from twingan.models.attributes import AttributeSchema

KEEP_PROBABILITY = 0.5


@dataclass
class StepInputs:
    """One training step's data: ``reals[d]`` (B, 3, R, R), ``labels[d]`` (B, groups) or None, and the draws."""

    reals: list[torch.Tensor]
    labels: list[torch.Tensor | None]
    noise: list[torch.Tensor] | None = None
    targets: list[torch.Tensor | None] | None = None

    @property
    def num_domains(self) -> int:
        return len(self.reals)


def draw_inputs(
    model: TwinGAN,
    reals: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor | None] | None = None,
    generator: torch.Generator | None = None,
    keep_probability: float = KEEP_PROBABILITY,
) -> StepInputs:
    """Bundle a step's batches with its random draws (noise, attribute targets)."""
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
    return StepInputs(reals, labels, noise, targets)


def references(inputs: StepInputs, domain: int, shift: int = 1) -> torch.Tensor:
    """Reference images for renderings into ``domain``: its own reals, rolled."""
    return inputs.reals[domain].roll(shift, 0)


def translation_condition(model: TwinGAN, inputs: StepInputs, domain: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(condition, style code) for images translated INTO ``domain`` (None, None when unconditioned)."""
    n = inputs.reals[domain].shape[0]
    style = model.style(references(inputs, domain), domain) if model.style_encoder is not None else None
    targets = inputs.targets[domain] if inputs.targets is not None else None
    return model.condition(n, style=style, labels=targets), style


def own_condition(model: TwinGAN, x: torch.Tensor, domain: int, labels: torch.Tensor | None) -> torch.Tensor | None:
    """The condition that describes ``x`` itself: its own style and its own labels (for reconstructions)."""
    style = model.style(x, domain) if model.style_encoder is not None else None
    return model.condition(x.shape[0], style=style, labels=labels if model.attribute_schema else None)


def generation_condition(model: TwinGAN, inputs: StepInputs, domain: int) -> torch.Tensor | None:
    """Generated faces are conditioned on the attribute targets only (no reference)."""
    targets = inputs.targets[domain] if inputs.targets is not None else None
    return model.condition(inputs.reals[domain].shape[0], labels=targets)


def classification_targets(
    inputs: StepInputs, source: int | None, domain: int
) -> torch.Tensor | None:
    """What the attribute classifier should read on an image rendered into ``domain``.

    A named target group must show its target; a group left at -1 must keep the
    source's label (unknown when the source has none). ``source`` None: generated.
    """
    if inputs.targets is None:
        return None
    target = inputs.targets[domain]
    if target is None:
        return None
    if source is None or inputs.labels[source] is None:
        return target
    return torch.where(target >= 0, target, inputs.labels[source].to(target.device))


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
