"""Scores on the synthetic paired test set: translation error, style and hair-colour accuracy.

Every test face exists in both styles with the same parameters, so a
translation can be compared with the true rendering in the other style (and a
cross-domain search checked for finding the face's own twin: see
:mod:`twingan.metrics.retrieval`). Anything with ``translate(x, src, dst)`` and ``embed(x, domain, kind)`` on [-1, 1]
NCHW tensors can be scored: a TwinGAN, an untrained one, or :class:`PixelBaseline`.

Models trained for conditioned translation get extra scores from
:func:`conditioned_scores` (see its docstring), only when they have the parts:

* with a style encoder (``model.style_dim > 0``), reference-guided translation:
  test face i is translated in the style of the other style's picture of face
  j (:func:`reference_partners`, a fixed j != i with another hair colour where
  one exists). ``ref_hair_acc``: the output has face j's hair colour;
  ``ref_pose_l1``: L1 (0..1) against the ground truth, face i drawn in the
  target style with face j's hair and eye colours (pose, expression and the
  rest from the source); ``ref_pose_acc``: fraction of outputs closer (L1) to
  that ground truth than to the reference picture itself (the pose was not
  copied). ``noref_*`` are the same measures of the plain translation (no
  reference): the baseline the reference should beat on hair and L1.
* with a ``hair`` attribute group whose values are synthetic hair colours:
  ``attr_hair_acc``, translating with ``hair=`` another colour than the
  source's (cycling through the group's values) gives that colour.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import torch

from twingan.data.image_io import load_image, resize_square, tensor_to_uint8, uint8_to_tensor
from twingan.data.synthetic import HAIR_COLOUR_NAMES, FaceParams, hair_colour_of, load_test_params, render
from twingan.errors import NonFiniteOutputError
from twingan.metrics.style_classifier import StyleClassifier, style_classifier_for
from twingan.models import EMBEDDING_KINDS

STYLES = ("photo", "anime")


class Translatable(Protocol):
    def translate(self, x: torch.Tensor, src: str, dst: str) -> torch.Tensor: ...

    def embed(self, x: torch.Tensor, domain: str, kind: str = "full") -> torch.Tensor: ...


@dataclass
class PairedTestSet:
    """The paired test faces at one resolution: ``images[style]`` is (N, 3, R, R) in [-1, 1]."""

    images: dict[str, torch.Tensor]
    params: list[FaceParams]
    paths: dict[str, list[Path]]
    root: Path


def load_paired_test_set(root: str | Path, resolution: int, limit: int | None = None) -> PairedTestSet:
    root = Path(root)
    params = load_test_params(root)[:limit]
    images, paths = {}, {}
    for style in STYLES:
        files = [root / "test" / style / f"{i:05d}.png" for i in range(len(params))]
        arrays = [resize_square(load_image(f), resolution) for f in files]
        images[style] = uint8_to_tensor(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))
        paths[style] = files
    return PairedTestSet(images, params, paths, root)


def style_judge(test_set: PairedTestSet) -> StyleClassifier:
    """The independent photo-vs-anime classifier of the test set's dataset at its resolution, with its
    accuracy on the test reals of both styles filled in."""
    judge = style_classifier_for(test_set.root, test_set.images["photo"].shape[-1])
    if judge.test_accuracy is None:
        judge.test_accuracy = 0.5 * sum(judge.share_in_style(test_set.images[s], s) for s in STYLES)
    return judge


class PixelBaseline:
    """The trivial baseline: 'translation' returns the input; the embedding is the raw pixels ('full') or,
    as the compact counterpart of the pooled latent, the image's mean colour ('pooled').

    For the conditioned scores, a reference-guided 'translation' is the reference picture itself (right
    hair, copied pose) and an attribute-guided one is the input unchanged.
    """

    def translate(self, x: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        return x

    def translate_with_reference(self, x: torch.Tensor, reference: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        return reference

    def translate_with_attributes(
        self, x: torch.Tensor, attributes: Sequence[Mapping[str, str]], src: str, dst: str
    ) -> torch.Tensor:
        return x

    def embed(self, x: torch.Tensor, domain: str, kind: str = "full") -> torch.Tensor:
        if kind not in EMBEDDING_KINDS:
            raise ValueError(f"embedding kind must be one of {', '.join(EMBEDDING_KINDS)}, got {kind!r}")
        vectors = x.flatten(1) if kind == "full" else x.mean(dim=(2, 3))
        return torch.nn.functional.normalize(vectors.float(), dim=1)


@torch.no_grad()
def paired_scores(
    system: Translatable,
    test_set: PairedTestSet,
    domains: dict[str, str],
    batch_size: int = 64,
) -> dict[str, float]:
    """Scores in both directions; ``domains`` maps each style ("photo", "anime") to the model's domain name.

    Per direction SRC2DST: ``l1`` against the true rendering, ``style`` (share of translations that
    :func:`style_judge` assigns to DST) and ``hair_acc``; per style: ``recon_l1``, the reconstruction
    error through the model's own domain (0..1 scale, like ``l1``).
    """
    device = _device_of(system)
    judge = style_judge(test_set)
    scores: dict[str, float] = {}
    for style in STYLES:
        x = test_set.images[style]
        recon = torch.cat([
            system.translate(chunk.to(device), domains[style], domains[style]).float().cpu()
            for chunk in x.split(batch_size)
        ]).clamp(-1, 1)
        scores[f"{style}/recon_l1"] = float((recon - x).abs().mean() / 2.0)
    for src, dst in (("photo", "anime"), ("anime", "photo")):
        x = test_set.images[src]
        fake = require_finite(torch.cat([
            system.translate(chunk.to(device), domains[src], domains[dst]).float().cpu()
            for chunk in x.split(batch_size)
        ]), "translations").clamp(-1, 1)
        key = f"{src}2{dst}"
        scores[f"{key}/l1"] = float((fake - test_set.images[dst]).abs().mean() / 2.0)
        scores[f"{key}/style"] = judge.share_in_style(fake, dst)
        pixels = tensor_to_uint8(fake).permute(0, 2, 3, 1).numpy()
        hits = [hair_colour_of(img, dst) == p.hair_colour_index for img, p in zip(pixels, test_set.params)]
        scores[f"{key}/hair_acc"] = float(np.mean(hits))
    return scores


def require_finite(values: torch.Tensor, what: str) -> torch.Tensor:
    """``values``, or NonFiniteOutputError when they hold NaN or infinite values (NaN would score as ties)."""
    if not torch.isfinite(values).all():
        raise NonFiniteOutputError(
            f"the model's {what} hold NaN or infinite values: its weights are unusable (did the training run "
            "diverge?); use another checkpoint"
        )
    return values


def _device_of(system: object) -> torch.device:
    if isinstance(system, torch.nn.Module):
        for p in system.parameters():
            return p.device
    return torch.device("cpu")


# ---- conditioned translation: reference-guided and attribute scores ------------------------------

HAIR_GROUP = "hair"
"""The attribute group :func:`conditioned_scores` checks (when its values are synthetic hair colours)."""


class Conditionable(Protocol):
    def translate(self, x: torch.Tensor, src: str, dst: str) -> torch.Tensor: ...

    def translate_with_reference(
        self, x: torch.Tensor, reference: torch.Tensor, src: str, dst: str
    ) -> torch.Tensor: ...

    def translate_with_attributes(
        self, x: torch.Tensor, attributes: Sequence[Mapping[str, str]], src: str, dst: str
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class ConditioningParts:
    """Which conditioned scores a model can be given: reference-guided ones, and the hair attribute's."""

    reference: bool = False
    hair_values: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.reference or bool(self.hair_values)


def conditioning_parts(model: Any) -> ConditioningParts:
    """The conditioned scores ``model`` (a TwinGAN) supports: ``reference`` with a style encoder;
    ``hair_values`` when its attribute group 'hair' has at least two values, all synthetic hair colours."""
    reference = getattr(model, "style_encoder", None) is not None
    schema = getattr(model, "attribute_schema", None)
    values = tuple(schema.groups.get(HAIR_GROUP, ())) if schema else ()
    usable = len(values) >= 2 and all(v in HAIR_COLOUR_NAMES for v in values)
    return ConditioningParts(reference, values if usable else ())


class ConditionedModel:
    """A TwinGAN seen through :class:`Conditionable`: the reference's style code (taken in the target
    domain) or attribute labels become the generator's condition."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    @property
    def device(self) -> torch.device:
        return _device_of(self.model)

    def translate(self, x: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        return self.model.translate(x, src, dst)

    def translate_with_reference(self, x: torch.Tensor, reference: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        cond = self.model.condition(len(x), style=self.model.style(reference, dst))
        return self.model.translate(x, src, dst, cond)

    def translate_with_attributes(
        self, x: torch.Tensor, attributes: Sequence[Mapping[str, str]], src: str, dst: str
    ) -> torch.Tensor:
        schema = self.model.attribute_schema
        labels = torch.tensor([schema.label(a) for a in attributes], dtype=torch.long, device=x.device)
        return self.model.translate(x, src, dst, self.model.condition(len(x), labels=labels))


def conditioned_view(system: Any) -> Conditionable:
    """A system of :func:`paired_scores` as a :class:`Conditionable` (TwinGANs are wrapped)."""
    if hasattr(system, "translate_with_reference"):
        return system
    return ConditionedModel(system)


def reference_partners(params: Sequence[FaceParams]) -> list[int]:
    """For each test face i, the face j whose picture is its reference: the first of i+1, i+2, ...
    (cyclically) with another hair colour, else (i + 1) % n. Fixed, so every system and run sees the same."""
    n = len(params)
    partners = []
    for i, p in enumerate(params):
        candidates = [(i + k) % n for k in range(1, n)]
        differing = [j for j in candidates if params[j].hair_colour != p.hair_colour]
        partners.append(differing[0] if differing else candidates[0])
    return partners


def reference_target(source: FaceParams, reference: FaceParams) -> FaceParams:
    """The face a reference-guided translation should give: the source with the reference's hair and eye colours."""
    return dataclasses.replace(source, hair_colour=reference.hair_colour, eye_colour=reference.eye_colour)


@functools.lru_cache(maxsize=8)
def _rendered(params: tuple[FaceParams, ...], style: str, size: int, resolution: int) -> torch.Tensor:
    arrays = [resize_square(render(p, style, size), resolution) for p in params]
    return uint8_to_tensor(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))


def render_like_test_set(
    params: Sequence[FaceParams], style: str, test_set: PairedTestSet, resolution: int
) -> torch.Tensor:
    """``params`` drawn in ``style`` at the test set's stored size, then resized to ``resolution`` as the test
    pictures are: (N, 3, R, R) in [-1, 1] (cached: periodic evaluation renders them once)."""
    size = load_image(test_set.paths[style][0]).width
    return _rendered(tuple(params), style, size, resolution)


def _batched(fn: Callable[..., torch.Tensor], device: torch.device, batch_size: int, *tensors: torch.Tensor,
             extra: Sequence[Any] | None = None) -> torch.Tensor:
    outputs = []
    for start in range(0, len(tensors[0]), batch_size):
        chunks = [t[start:start + batch_size].to(device) for t in tensors]
        args = [extra[start:start + batch_size]] if extra is not None else []
        outputs.append(fn(*chunks, *args).float().cpu())
    return torch.cat(outputs).clamp(-1, 1)


def _hair_indices(images: torch.Tensor, style: str) -> np.ndarray:
    pixels = tensor_to_uint8(images).permute(0, 2, 3, 1).numpy()
    return np.array([hair_colour_of(img, style) for img in pixels])


def _per_image_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per image, on the 0..1 scale of ``l1``."""
    return (a - b).abs().flatten(1).mean(dim=1) / 2.0


@torch.no_grad()
def conditioned_scores(
    system: Conditionable,
    test_set: PairedTestSet,
    domains: dict[str, str],
    parts: ConditioningParts,
    batch_size: int = 64,
) -> dict[str, float]:
    """Reference-guided (``parts.reference``) and hair-attribute (``parts.hair_values``) scores, both directions.

    Keys per direction ``SRC2DST/``: ``ref_hair_acc``, ``ref_pose_l1``, ``ref_pose_acc`` and their
    ``noref_*`` counterparts for the plain translation (with a reference, and at least two test faces);
    ``attr_hair_acc`` (with hair values). Definitions in the module docstring. ``system`` is a
    :class:`Conditionable` (:func:`conditioned_view` makes one of a TwinGAN).
    """
    device = getattr(system, "device", torch.device("cpu"))
    params = test_set.params
    scores: dict[str, float] = {}
    for src, dst in (("photo", "anime"), ("anime", "photo")):
        key = f"{src}2{dst}"
        x = test_set.images[src]
        resolution = x.shape[-1]
        if parts.reference and len(params) >= 2:
            partners = reference_partners(params)
            references = test_set.images[dst][partners]
            targets = render_like_test_set(
                [reference_target(p, params[j]) for p, j in zip(params, partners)], dst, test_set, resolution
            )
            wanted_hair = np.array([params[j].hair_colour_index for j in partners])
            guided = _batched(lambda a, r: system.translate_with_reference(a, r, domains[src], domains[dst]),
                              device, batch_size, x, references)
            plain = _batched(lambda a: system.translate(a, domains[src], domains[dst]), device, batch_size, x)
            for prefix, output in (("ref", guided), ("noref", plain)):
                to_target = _per_image_l1(output, targets)
                closer = to_target < _per_image_l1(output, references)
                scores[f"{key}/{prefix}_hair_acc"] = float(np.mean(_hair_indices(output, dst) == wanted_hair))
                scores[f"{key}/{prefix}_pose_l1"] = float(to_target.mean())
                scores[f"{key}/{prefix}_pose_acc"] = float(closer.float().mean())
        if parts.hair_values:
            wanted = []
            for i, p in enumerate(params):
                others = [v for v in parts.hair_values if v != p.hair_colour]
                wanted.append(others[i % len(others)])
            output = _batched(
                lambda a, names: system.translate_with_attributes(
                    a, [{HAIR_GROUP: name} for name in names], domains[src], domains[dst]),
                device, batch_size, x, extra=wanted,
            )
            hits = _hair_indices(output, dst) == np.array([HAIR_COLOUR_NAMES.index(w) for w in wanted])
            scores[f"{key}/attr_hair_acc"] = float(np.mean(hits))
    return scores
