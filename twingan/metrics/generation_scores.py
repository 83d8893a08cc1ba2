"""Scores of faces drawn from noise that see mode collapse, computable offline on the synthetic faces.

FID needs Inception weights that are not available everywhere; the synthetic
renderer knows what its faces are made of, so for a model that generates a
domain trained on a synthetic style (``train/<style>``), over the images of the
first :data:`SEEDS` seeds (image 0 of each, as ``twingan generate --seed S`` draws):

* ``gen_hair_tv``, ``gen_eye_tv``: total variation distance between the hair
  (eye) colour distribution of the generated faces and the training set's.
  Hair by the renderer's palette probe (:func:`~twingan.data.synthetic.hair_colour_of`)
  on both; eyes by an independent eye-colour judge (a small CNN fitted on the
  training pictures and their rendering parameters) on the generated faces
  against the training set's true eye colours. 0 = the same distribution.
* ``gen_distinct``: the share of seeds that draw a distinct face: walking the
  seeds in order, a face counts when it is farther (mean absolute difference,
  0..1 scale) from every face counted before it than 0.9 times the smallest
  distance between two different real training faces (no two real faces are
  that close, so real faces all count; half that distance was tried first and
  counted a generator that draws four faces with a little jitter as 93 %
  distinct).
* ``gen_distinct_one_condition`` (models with attributes): the same share over
  the first :data:`ONE_CONDITION_SEEDS` seeds all asked for one condition (each
  group's most common training value). Drawing the conditions from the prior
  makes faces differ by colour alone; this score sees a generator that draws
  one face per condition (which ``gen_distinct`` would count as 93 % distinct).
* ``gen_realism``: the share that an independent realism judge takes for a real
  face of the style. A photo-vs-anime judge alone calls an untrained
  generator's colour clouds "anime", so this one (a small CNN fitted on the
  training pictures) also learnt to refuse what failed generators draw: the
  other style's faces, the style's own faces with their patches shuffled, heavily
  blurred, blended in pairs (ghosts), and smooth random colour fields.
* ``gen_walk_max_step``, ``gen_walk_jump``: over a latent walk through seeds
  0..3 (:data:`WALK_STEPS` frames between consecutive seeds), the largest mean
  absolute difference between neighbouring frames (0..1), and that largest step
  over the walk's mean step: a smooth walk has no frame that jumps (a ratio near 1-2).
* ``gen_attr_hair_acc`` (models with a ``hair`` attribute of synthetic hair
  colours): seed i asked for the i-th colour of the group (cycling) has that colour.

A model trained with attributes draws the attributes nobody names from its training
prior, as ``twingan generate`` does, so the colour distances score the model as
users draw from it; ``gen_attr_hair_acc`` names the hair and leaves the rest drawn.

The judges are fitted once per dataset, style and resolution in a process and
never advance a caller's random streams.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from kornia.filters import gaussian_blur2d

from twingan.data.image_io import IMAGE_EXTENSIONS, tensor_to_uint8
from twingan.data.synthetic import EYE_COLOUR_NAMES, HAIR_COLOUR_NAMES, hair_colour_of, params_for_index
from twingan.errors import DatasetError
from twingan.metrics.small_cnn import SmallCNN, fit_small_cnn, load_pictures, soften
from twingan.models import TwinGAN

SEEDS = 256
ONE_CONDITION_SEEDS = 64
WALK_SEEDS = (0, 1, 2, 3)
WALK_STEPS = 16
REFERENCE_FACES = 256
"""Training faces whose pairwise distances set the 'same face' threshold of ``gen_distinct``."""
SAME_FACE_FRACTION = 0.9
TRAIN_LIMIT = 2000
HAIR_GROUP = "hair"


@dataclass(frozen=True)
class TrainingFaces:
    """A synthetic style's training pictures at one resolution, with their true eye colours."""

    images: torch.Tensor
    eye_colours: np.ndarray


def training_faces(root: str | Path, style: str, resolution: int, limit: int = TRAIN_LIMIT) -> TrainingFaces:
    """Up to ``limit`` training pictures of ``style`` with the eye colours the renderer drew them with."""
    root = Path(root)
    folder = root / "train" / style
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)[:limit]
    manifest = root / "synthetic.json"
    if len(files) < 2 or not manifest.exists():
        raise DatasetError(f"{folder}: generation scores need the synthetic training pictures of the {style!r} "
                           "style and the dataset's synthetic.json (made by `twingan prep synthetic`)")
    seed = int(json.loads(manifest.read_text(encoding="utf-8"))["seed"])
    stream = f"train_{style}"
    eyes = np.array([EYE_COLOUR_NAMES.index(params_for_index(seed, stream, int(f.stem)).eye_colour) for f in files])
    return TrainingFaces(load_pictures(files, resolution), eyes)


@functools.lru_cache(maxsize=4)
def _cached_faces(root: str, style: str, resolution: int) -> TrainingFaces:
    return training_faces(root, style, resolution)


@functools.lru_cache(maxsize=4)
def eye_judge(root: str, style: str, resolution: int) -> SmallCNN:
    """A small CNN that reads the eye colour (index into EYE_COLOUR_NAMES) of ``style`` faces at ``resolution``,
    fitted on the training pictures (flips, slight blur and noise; no colour change: colour is the answer), with
    a head over the whole feature map so that the colour is read where eyes are."""
    faces = _cached_faces(str(Path(root).resolve()), style, resolution)
    targets = torch.from_numpy(faces.eye_colours)
    return fit_small_cnn(faces.images, targets, len(EYE_COLOUR_NAMES), soften, steps=800, spatial=True)


@functools.lru_cache(maxsize=4)
def realism_judge(root: str, style: str, resolution: int) -> SmallCNN:
    """A small CNN whose one logit is positive for a real face of ``style`` (see ``gen_realism`` above)."""
    root = str(Path(root).resolve())
    other = next(s for s in ("photo", "anime") if s != style)
    reals = _cached_faces(root, style, resolution).images
    others = _cached_faces(root, other, resolution).images
    fakes = torch.cat([others, _failures(reals, torch.Generator().manual_seed(0))])
    images = torch.cat([reals, fakes])
    targets = torch.cat([torch.ones(len(reals)), torch.zeros(len(fakes))])
    return fit_small_cnn(images, targets, 1, soften, steps=800, spatial=True)


def _failures(reals: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """What failed generators draw, made from real faces: shuffled patches, heavy blur, ghosts, colour clouds."""
    n, c, r, _ = reals.shape
    quarter = n // 4
    patch = max(r // 4, 1)
    tiles = reals[:quarter].unfold(2, patch, patch).unfold(3, patch, patch)  # (q, c, 4, 4, p, p)
    grid = tiles.shape[2] * tiles.shape[3]
    order = torch.stack([torch.randperm(grid, generator=rng) for _ in range(quarter)])
    flat = tiles.reshape(quarter, c, grid, patch, patch)
    shuffled = torch.stack([flat[i][:, order[i]] for i in range(quarter)])
    side = r // patch
    shuffled = shuffled.reshape(quarter, c, side, side, patch, patch).permute(0, 1, 2, 4, 3, 5).reshape(quarter, c, r, r)
    sigma = 1.5 + 1.5 * torch.rand(quarter, generator=rng)
    blurred = gaussian_blur2d(reals[quarter:2 * quarter], (9, 9), torch.stack([sigma, sigma], dim=1))
    pairs = reals[2 * quarter:3 * quarter]
    ghosts = 0.5 * (pairs + pairs.roll(1, 0))
    coarse = torch.rand(n - 3 * quarter, c, 4, 4, generator=rng) * 2 - 1
    clouds = torch.nn.functional.interpolate(coarse, size=(r, r), mode="bicubic", align_corners=False).clamp(-1, 1)
    return torch.cat([shuffled, blurred, ghosts, clouds])


def eye_colours_of(judge: SmallCNN, images: torch.Tensor) -> np.ndarray:
    return judge.logits(images).argmax(dim=1).numpy()


def hair_colours_of(images: torch.Tensor, style: str) -> np.ndarray:
    pixels = tensor_to_uint8(images).permute(0, 2, 3, 1).numpy()
    return np.array([hair_colour_of(img, style) for img in pixels])


def total_variation(a: np.ndarray, b: np.ndarray, classes: int) -> float:
    """Total variation distance between the empirical distributions of two label arrays."""
    pa = np.bincount(a, minlength=classes) / max(len(a), 1)
    pb = np.bincount(b, minlength=classes) / max(len(b), 1)
    return float(0.5 * np.abs(pa - pb).sum())


def pairwise_l1(images: torch.Tensor) -> torch.Tensor:
    """(N, N) mean absolute differences between images, on the 0..1 scale."""
    flat = images.flatten(1).double()
    return torch.cdist(flat, flat, p=1.0) / flat.shape[1] / 2.0


def distinct_threshold(reals: torch.Tensor) -> float:
    """:data:`SAME_FACE_FRACTION` of the smallest distance between two of the first :data:`REFERENCE_FACES` reals."""
    d = pairwise_l1(reals[:REFERENCE_FACES])
    upper = d[torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)]
    return SAME_FACE_FRACTION * float(upper.min())


def distinct_share(images: torch.Tensor, threshold: float) -> float:
    """Share of images (in order) farther than ``threshold`` from every image counted before them."""
    d = pairwise_l1(images)
    kept: list[int] = []
    for i in range(len(images)):
        if all(d[i, j] > threshold for j in kept):
            kept.append(i)
    return len(kept) / max(len(images), 1)


def generation_scores(model: TwinGAN, root: str | Path, domain: str, style: str, batch_size: int = 64) -> dict[str, float]:
    """The scores of the module docstring for ``model`` drawing ``domain``, trained on the synthetic ``style``."""
    from twingan.inference.generation import generate_tensor, seed_noise, walk_condition, walk_noise

    root = str(Path(root).resolve())
    resolution = model.resolution
    faces = _cached_faces(root, style, resolution)
    z = torch.cat([seed_noise(model, seed, 1) for seed in range(SEEDS)])
    generated = generate_tensor(model, z, domain, _conditions(model, domain), batch_size).clamp(-1, 1)
    judge = eye_judge(root, style, resolution)
    threshold = distinct_threshold(faces.images)
    scores = {
        "gen_hair_tv": total_variation(hair_colours_of(generated, style), hair_colours_of(faces.images, style),
                                       len(HAIR_COLOUR_NAMES)),
        "gen_eye_tv": total_variation(eye_colours_of(judge, generated), faces.eye_colours, len(EYE_COLOUR_NAMES)),
        "gen_distinct": distinct_share(generated, threshold),
        "gen_realism": float((realism_judge(root, style, resolution).logits(generated).squeeze(1) > 0).float().mean()),
    }
    if model.attribute_schema:
        scores["gen_distinct_one_condition"] = distinct_share(
            generate_tensor(model, z[:ONE_CONDITION_SEEDS], domain,
                            _conditions(model, domain, range(ONE_CONDITION_SEEDS), _most_common(model, domain)),
                            batch_size).clamp(-1, 1),
            threshold,
        )
    frames = generate_tensor(model, walk_noise(model, WALK_SEEDS, WALK_STEPS), domain,
                             walk_condition(model, WALK_SEEDS, WALK_STEPS, domain), batch_size)
    steps = (frames[1:] - frames[:-1]).abs().flatten(1).mean(dim=1) / 2.0
    scores["gen_walk_max_step"] = float(steps.max())
    scores["gen_walk_jump"] = float(steps.max() / steps.mean().clamp_min(1e-12))
    hair_values = tuple(model.attribute_schema.groups.get(HAIR_GROUP, ())) if model.attribute_schema else ()
    if len(hair_values) >= 2 and all(v in HAIR_COLOUR_NAMES for v in hair_values):
        hits = 0
        for k, value in enumerate(hair_values):
            seeds = z[k::len(hair_values)]
            if len(seeds):
                cond = _conditions(model, domain, range(k, SEEDS, len(hair_values)), {HAIR_GROUP: value})
                drawn = generate_tensor(model, seeds, domain, cond, batch_size)
                hits += int((hair_colours_of(drawn.clamp(-1, 1), style) == HAIR_COLOUR_NAMES.index(value)).sum())
        scores["gen_attr_hair_acc"] = hits / SEEDS
    return scores


def _most_common(model: TwinGAN, domain: str) -> dict[str, str]:
    """Each attribute group's most common value in ``domain``'s training prior (the first of a tie)."""
    schema = model.attribute_schema
    blocks = schema.split_logits(model.attribute_prior[model.domain_index(domain)][None])
    return {name: values[int(block.argmax())] for (name, values), block in zip(schema.groups.items(), blocks)}


def _conditions(model: TwinGAN, domain: str, seeds: Iterable[int] = range(SEEDS), attrs: dict[str, str] | None = None
                ) -> torch.Tensor | None:
    """The condition of each seed's image as ``twingan generate --seed S`` draws it (attributes from the prior)."""
    from twingan.inference.generation import seed_condition

    rows = [seed_condition(model, seed, 1, domain, attrs) for seed in seeds]
    return None if rows[0] is None else torch.cat(rows)
