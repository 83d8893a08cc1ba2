"""New faces from noise: seeded sample sets and latent walks (models with a mapping network).

Determinism: the noise of ``seed`` is drawn on the CPU from
``torch.Generator().manual_seed(seed)``, one row after the other, and only then
moved to the model's device. Row ``i`` therefore depends on the seed and the
model's ``noise_dim`` only, never on how many images are asked for, the batch
size or the device (one big ``randn(n, d)`` would not do: torch's CPU sampler
fills large tensors in a different order than small ones). Image ``i`` of a seed
is the same face whatever ``n`` and ``batch_size``; "the seed's image" is image 0.

Batched float kernels (BLAS, oneDNN, cuDNN) may round differently for different
batch shapes, so every forward pass gets exactly ``batch_size`` rows (a short
last batch is padded and the padding dropped): with one batch size, image ``i``
is bit-identical whatever ``n``, and a walk's key frames are bit-identical to the
seeds' images. Another batch size or device gives the same faces up to float
rounding (~1e-5, at most one grey level in a few pixels).

Attributes: a model trained with attributes draws each attribute the caller does
not name from the training faces' prior (:meth:`TwinGAN.sample_labels`), so its
unconditioned faces show hair and eye colours as often as the training set does.
Those labels come from a second generator seeded by the seed (its own stream, row
after row), so a seed's noise is the same with or without attributes, and naming
one attribute (``hair=blue``) leaves the others the seed drew.

A latent walk interpolates spherically (slerp) between the noise of consecutive
seeds and linearly between their conditions: its first frame is exactly seed[0]'s
image, its last exactly seed[-1]'s.

Everything runs in eval mode without gradients; a model given in training mode
is put back in training mode afterwards.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Mapping, Sequence, Union

import torch
from PIL import Image

from twingan.data.image_io import tensor_to_pil
from twingan.errors import ConfigError
from twingan.inference.defaults import DEFAULT_BATCH_SIZE
from twingan.inference.translator import check_model_domain, model_attribute_labels
from twingan.models import TwinGAN
from twingan.utils.progress import progress_bar

MAX_STRIP_COLUMNS = 16
"""A walk strip wraps into rows of at most this many frames."""
NO_GENERATION = (
    "this checkpoint was trained without generation (no mapping network); train with experiment=generate_anime "
    "or model.noise_dim>0"
)

Attrs = Union[None, str, Sequence[str], Mapping[str, str]]
LABEL_STREAM = 1 << 62
"""Offset of the attribute labels' generator seed from the noise's (two streams of one seed)."""


def as_model(translator_or_model) -> TwinGAN:
    """A :class:`TwinGAN`, or anything holding one as ``.model`` (a Translator) -> the TwinGAN."""
    model = getattr(translator_or_model, "model", translator_or_model)
    if not isinstance(model, TwinGAN):
        raise ConfigError(f"expected a TwinGAN or a Translator, got {type(translator_or_model).__name__}")
    return model


def check_generation(model: TwinGAN) -> None:
    """ConfigError unless the model has a mapping network (was built with model.noise_dim > 0)."""
    if getattr(model, "mapping", None) is None:
        raise ConfigError(NO_GENERATION)


def attribute_labels(model: TwinGAN, attrs: Attrs, option: str = "attrs") -> list[int] | None:
    """The schema's label of ``attrs`` (None when no attrs are given); errors name ``option``."""
    if attrs is None or (not isinstance(attrs, (str, Mapping)) and len(attrs) == 0):
        return None
    return model_attribute_labels(model, attrs, option)


def seed_noise(model: TwinGAN, seed: int, n: int) -> torch.Tensor:
    """(n, noise_dim) float32 CPU noise of ``seed``: row i is the same for every n >= i + 1."""
    check_generation(model)
    if n < 0:
        raise ConfigError(f"the number of noise vectors must be >= 0, got {n}")
    gen = torch.Generator().manual_seed(int(seed))
    rows = [model.noise(1, generator=gen, device="cpu") for _ in range(n)]
    return torch.cat(rows) if rows else torch.zeros(0, model.cfg.noise_dim)


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation of 1-D vectors (magnitudes interpolated linearly); t=0 -> z0, t=1 -> z1 exactly."""
    if t <= 0.0:
        return z0.clone()
    if t >= 1.0:
        return z1.clone()
    a, b = z0.double(), z1.double()
    na, nb = a.norm(), b.norm()
    ua, ub = a / na.clamp_min(1e-12), b / nb.clamp_min(1e-12)
    omega = torch.arccos((ua * ub).sum().clamp(-1.0, 1.0))
    so = torch.sin(omega)
    if so.abs() < 1e-6:  # (anti)parallel: the great circle is undefined, fall back to a straight line
        out = (1.0 - t) * a + t * b
    else:
        direction = (torch.sin((1.0 - t) * omega) * ua + torch.sin(t * omega) * ub) / so
        out = direction * ((1.0 - t) * na + t * nb)
    return out.to(z0.dtype)


def walk_noise(model: TwinGAN, seeds: Sequence[int], steps: int) -> torch.Tensor:
    """(steps * (len(seeds) - 1) + 1, noise_dim) CPU noise: ``steps`` frames from each seed to the next, then the last."""
    seeds = _walk_seeds(seeds, steps)
    keys = [seed_noise(model, s, 1)[0] for s in seeds]
    frames = []
    for z0, z1 in zip(keys[:-1], keys[1:]):
        frames += [slerp(z0, z1, k / steps) for k in range(steps)]
    frames.append(keys[-1].clone())
    return torch.stack(frames)


def _walk_seeds(seeds: Sequence[int], steps: int) -> list[int]:
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2:
        raise ConfigError(f"a walk needs at least 2 seeds, got {len(seeds)}")
    if steps < 2:
        raise ConfigError(f"a walk needs at least 2 steps between seeds, got {steps}")
    return seeds


def seed_labels(model: TwinGAN, seed: int, n: int, domain: str, attrs: Attrs = None) -> torch.Tensor | None:
    """(n, groups) attribute labels of the seed's ``n`` images: ``attrs`` where named, the rest drawn from
    ``domain``'s prior (row i the same for every n >= i + 1); None for a model without attributes."""
    named = attribute_labels(model, attrs)
    if not model.attribute_schema:
        return None
    labels = model.sample_labels(n, domain, torch.Generator().manual_seed((int(seed) + LABEL_STREAM) % 2**64))
    if named is not None:
        fixed = torch.tensor(named, dtype=torch.long)
        labels = torch.where(fixed >= 0, fixed, labels)
    return labels


def seed_condition(model: TwinGAN, seed: int, n: int, domain: str, attrs: Attrs = None) -> torch.Tensor | None:
    """(n, condition dim) CPU condition of the seed's ``n`` images (see :func:`seed_labels`); None when the
    model takes none. A style encoder's part is zero: faces drawn from noise take no reference."""
    check_model_domain(model, domain)
    return model.condition(n, labels=seed_labels(model, seed, n, domain, attrs), device="cpu")


def walk_condition(model: TwinGAN, seeds: Sequence[int], steps: int, domain: str, attrs: Attrs = None
                   ) -> torch.Tensor | None:
    """The conditions of :func:`walk_noise`'s frames: each seed's, blended linearly to the next seed's."""
    keys = [seed_condition(model, s, 1, domain, attrs) for s in _walk_seeds(seeds, steps)]
    if keys[0] is None:
        return None
    frames = []
    for c0, c1 in zip(keys[:-1], keys[1:]):
        frames += [torch.lerp(c0[0], c1[0], k / steps) for k in range(steps)]
    frames.append(keys[-1][0].clone())
    return torch.stack(frames)


@contextlib.contextmanager
def _eval_mode(model: TwinGAN) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def generate_tensor(
    translator_or_model, z: torch.Tensor, domain: str, cond: torch.Tensor | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False, desc: str = "generating",
) -> torch.Tensor:
    """Noise (N, noise_dim) and condition (N, condition dim) -> float32 (N, 3, R, R) images on the CPU,
    unclamped model output. ``cond``: from :func:`seed_condition` / :func:`walk_condition`; None for a model
    that takes none (for one that does, None is the zero condition: no attribute named, nothing drawn)."""
    model = as_model(translator_or_model)
    check_generation(model)
    check_model_domain(model, domain)
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    if cond is None:
        cond = model.condition(len(z), device="cpu")
    if cond is not None and len(cond) != len(z):
        raise ValueError(f"{len(cond)} conditions for {len(z)} noise vectors")
    device = next(model.parameters()).device
    res = model.resolution
    outputs = []
    with _eval_mode(model), progress_bar(total=len(z), desc=desc, unit="img", disable=not progress) as bar:
        for start in range(0, len(z), batch_size):
            chunk = _padded(z[start : start + batch_size], batch_size).to(device)
            chunk_cond = None if cond is None else _padded(cond[start : start + batch_size], batch_size).to(device)
            rows = min(batch_size, len(z) - start)
            outputs.append(model.generate(chunk, domain, chunk_cond)[:rows].float().cpu())
            bar.update(rows)
    return torch.cat(outputs) if outputs else torch.zeros(0, 3, res, res)


def _padded(rows: torch.Tensor, size: int) -> torch.Tensor:
    """Every pass has ``size`` rows (see the module docstring): repeat the last row."""
    return rows if len(rows) == size else torch.cat([rows, rows[-1:].expand(size - len(rows), -1)])


def generate_images(
    translator_or_model, n: int, domain: str, seed: int, attrs: Attrs = None, batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> list[Image.Image]:
    """``n`` new faces of ``domain`` from the noise of ``seed`` (RGB PIL images at the model resolution).

    ``attrs``: attribute values to condition on, e.g. ``["hair=blue"]`` (models trained with attributes);
    the attributes not named are drawn from the training prior.
    """
    model = as_model(translator_or_model)
    check_generation(model)
    if n < 1:
        raise ConfigError(f"the number of images must be at least 1, got {n}")
    z = seed_noise(model, seed, n)
    cond = seed_condition(model, seed, n, domain, attrs)
    return [tensor_to_pil(t) for t in generate_tensor(model, z, domain, cond, batch_size, progress)]


def latent_walk(
    model, seeds: Sequence[int], steps: int, domain: str, attrs: Attrs = None, batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> list[Image.Image]:
    """Frames of a walk through the noise of ``seeds``: ``steps`` per pair of consecutive seeds, plus the last seed.

    Frame ``k * steps`` is exactly seed k's image (image 0 of :func:`generate_images` with that seed).
    """
    model = as_model(model)
    check_generation(model)
    z = walk_noise(model, seeds, steps)
    cond = walk_condition(model, seeds, steps, domain, attrs)
    return [tensor_to_pil(t) for t in generate_tensor(model, z, domain, cond, batch_size, progress, "walk")]


def image_grid(images: Sequence[Image.Image], cols: int | None = None, pad: int = 2,
               background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Tile equally sized images row by row (``cols`` per row, default about square) with ``pad`` px gaps."""
    if not images:
        raise ValueError("no images to tile")
    cols = max(1, min(cols or math.ceil(math.sqrt(len(images))), len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w + (cols + 1) * pad, rows * h + (rows + 1) * pad), background)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        grid.paste(img.convert("RGB"), (pad + c * (w + pad), pad + r * (h + pad)))
    return grid


def walk_strip(frames: Sequence[Image.Image], cols: int | None = None) -> Image.Image:
    """The frames side by side, wrapped into rows of at most ``cols`` (default 16)."""
    return image_grid(frames, cols or min(len(frames), MAX_STRIP_COLUMNS), pad=0)
