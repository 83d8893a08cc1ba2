"""Independent judges for the real-image scores: style (which domain does a picture look like?) and gender.

Neither judge has seen anything a model made, and neither is a model's discriminator.

* The style judge of a domain pair is a :class:`~twingan.metrics.small_cnn.SmallCNN`
  with three classes, fitted on the pair's training folders at the model resolution:
  the two domains and ``neither``, pictures that are no face of either domain
  (uniform noise, smooth random blobs, the training pictures with their pixels
  shuffled, and the training pictures half drowned in noise). A translation counts
  as in the target style only when the judge prefers the target domain to both the
  source and ``neither``, so copying the input fails and so does noise. Fitted from
  a fixed seed; its weights are cached beside the Inception features, keyed by the
  content of both training folders, the resolution and :data:`STYLE_JUDGE_VERSION`.
* The gender judge is an L2-regularised logistic regression on the Inception
  features (at the model resolution) of UTKFace faces, labelled by their names
  (``utk_AGE_GENDER_RACE_*``: gender 0 male, 1 female). A fixed held-out part, the
  files whose name's sha1 is 0 mod :data:`HELD_OUT_MODULUS` (about 400 of 2,000),
  is never fitted on: those faces go through the round trip.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from twingan.errors import ConfigError, DatasetError
from twingan.metrics.feature_cache import default_cache_dir, folder_content_hash
from twingan.metrics.folder_features import list_folder_images
from twingan.metrics.real_sets import FolderImages, RealSets, load_folder
from twingan.metrics.small_cnn import SmallCNN, fit_small_cnn
from twingan.metrics.style_classifier import style_augment
from twingan.utils.atomic import atomic_path

STYLE_JUDGE_VERSION = 1
"""Bumped when the style judge's data, classes or fitting change: part of its cache key."""
STYLE_STEPS = 800
STYLE_LIMIT = 2000
"""Training pictures per domain the style judge is fitted on at most (evenly spread over the sorted files)."""
NEITHER = 2
HELD_OUT_MODULUS = 5
UTK_NAME = re.compile(r"^utk_(?P<age>\d+)_(?P<gender>[01])_(?P<race>\d)_")


def _spread(files: list[Path], limit: int) -> list[Path]:
    if len(files) <= limit:
        return files
    return [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]


def neither_pictures(reals: torch.Tensor, count: int, seed: int = 0) -> torch.Tensor:
    """``count`` pictures in [-1, 1] that are no face of either domain, made from ``reals`` (N, 3, R, R) with
    their own generator: uniform noise, smooth random blobs, pixel-shuffled reals, reals half drowned in noise."""
    rng = torch.Generator().manual_seed(seed)
    n, _, size, _ = reals.shape
    out = torch.empty(count, 3, size, size)
    for i in range(count):
        kind = i % 4
        if kind == 0:
            out[i] = torch.rand(3, size, size, generator=rng) * 2 - 1
        elif kind == 1:
            coarse = max(2, int(size / (2 + 10 * float(torch.rand(1, generator=rng)))))
            blobs = torch.randn(1, 3, coarse, coarse, generator=rng)
            blobs = torch.nn.functional.interpolate(blobs, size=(size, size), mode="bicubic", align_corners=False)
            out[i] = (blobs[0] / blobs.abs().amax().clamp_min(1e-6)).clamp(-1, 1)
        else:
            real = reals[int(torch.randint(n, (1,), generator=rng))]
            if kind == 2:
                order = torch.randperm(size * size, generator=rng)
                out[i] = real.flatten(1)[:, order].view(3, size, size)
            else:
                out[i] = (0.5 * real + 0.5 * (torch.rand(3, size, size, generator=rng) * 2 - 1)).clamp(-1, 1)
    return out


@dataclass
class StyleJudge:
    """Which of (domain_a, domain_b, neither) a picture in [-1, 1] at ``resolution`` looks like."""

    net: SmallCNN
    domains: tuple[str, str]
    resolution: int

    @torch.no_grad()
    def classes(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != self.resolution or images.shape[-2] != self.resolution:
            raise ValueError(f"the style judge was fitted at {self.resolution} px; got {tuple(images.shape[-2:])}")
        return self.net.logits(images).argmax(dim=1)

    def share_in(self, images: torch.Tensor, domain: str) -> float:
        """Fraction of ``images`` the judge assigns to ``domain`` (over the other domain and ``neither``)."""
        return float((self.classes(images) == self.domains.index(domain)).float().mean())

    def test_accuracy(self, sets: RealSets) -> float:
        """Mean over both domains of the share of their real test pictures (--real, else --target) it gets right."""
        shares = []
        for domain in self.domains:
            root = sets.real.get(domain) or sets.target.get(domain)
            if root is not None:
                shares.append(self.share_in(sets.folder(root).as_float(), domain))
        return float(np.mean(shares)) if shares else float("nan")


def fit_style_judge(folder_a: Path, folder_b: Path, domains: tuple[str, str], resolution: int, *,
                    steps: int = STYLE_STEPS, limit: int = STYLE_LIMIT, seed: int = 0) -> StyleJudge:
    """Fit the three-class judge on up to ``limit`` training pictures per domain and as many ``neither``
    pictures as half of them; deterministic, and the caller's random streams are untouched."""
    reals = [load_folder(folder, resolution, _spread(list_folder_images(folder), limit)).as_float()
             for folder in (folder_a, folder_b)]
    both = torch.cat(reals)
    junk = neither_pictures(both, len(both) // 2, seed)
    images = torch.cat([both, junk])
    labels = torch.cat([torch.zeros(len(reals[0])), torch.ones(len(reals[1])), torch.full((len(junk),), NEITHER)])
    net = fit_small_cnn(images, labels.long(), 3, style_augment, steps=steps, seed=seed)
    return StyleJudge(net, domains, resolution)


def style_judge_for(sets: RealSets, src: str, dst: str) -> StyleJudge:
    """The style judge of domains {src, dst} (one for both directions) fitted on their --train folders, from
    the cache when fitted before."""
    missing = [d for d in (src, dst) if d not in sets.train]
    if missing:
        raise ConfigError(f"the style judge is fitted on training reals of both domains: add --train "
                          f"{missing[0]}=DIR")
    domains = tuple(sorted((src, dst)))
    key = hashlib.sha256(
        f"style-judge-v{STYLE_JUDGE_VERSION}|{folder_content_hash(sets.train[domains[0]])}|"
        f"{folder_content_hash(sets.train[domains[1]])}|{sets.resolution}|{STYLE_STEPS}|{STYLE_LIMIT}".encode()
    ).hexdigest()
    entry = (sets.cache_dir or default_cache_dir()) / f"style-judge-{key}.safetensors"
    net = SmallCNN(3)
    if entry.is_file():
        net.load_state_dict(load_file(str(entry)))
        return StyleJudge(net.eval().requires_grad_(False), domains, sets.resolution)
    judge = fit_style_judge(sets.train[domains[0]], sets.train[domains[1]], domains, sets.resolution)
    entry.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(entry) as tmp:
        save_file({k: v.contiguous() for k, v in judge.net.state_dict().items()}, str(tmp))
    return judge


def utk_gender(path: Path) -> int:
    """0 (male) or 1 (female) from a UTKFace name; ConfigError for a name that does not carry the label."""
    match = UTK_NAME.match(path.name)
    if match is None:
        raise ConfigError(f"{path}: not a UTKFace file name (utk_AGE_GENDER_RACE_*.jpg); --gender-faces needs "
                          "faces labelled that way")
    return int(match["gender"])


def is_held_out(path: Path) -> bool:
    """The fixed held-out part of the gender faces: sha1 of the file name is 0 mod :data:`HELD_OUT_MODULUS`."""
    return int(hashlib.sha1(path.name.encode()).hexdigest(), 16) % HELD_OUT_MODULUS == 0


@dataclass
class GenderJudge:
    """Logistic regression on standardised Inception features: P(female)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    held_out: FolderImages
    labels: np.ndarray
    fitted_on: int

    def says_female(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.weights + self.bias > 0


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = 1e-2, steps: int = 200):
    """(mean, scale, weights, bias) of an L2-regularised logistic regression, by L-BFGS in float64."""
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    x = torch.from_numpy((features - mean) / scale)
    y = torch.from_numpy(labels.astype(np.float64))
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * (w @ w) / 2
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return mean, scale, w.detach().numpy(), float(b.detach())


def gender_judge_for(sets: RealSets, domain: str) -> GenderJudge:
    """Fit the gender judge on the faces of --gender-faces DOMAIN outside the held-out part."""
    root = Path(sets.gender_faces[domain])
    files = list_folder_images(root)
    labels = {path: utk_gender(path) for path in files}
    fit_files = [p for p in files if not is_held_out(p)]
    held_files = [p for p in files if is_held_out(p)]
    if len({labels[p] for p in fit_files}) < 2 or len({labels[p] for p in held_files}) < 2:
        raise DatasetError(f"{root}: the gender judge needs men and women both among the {len(fit_files)} faces "
                           f"it is fitted on and the {len(held_files)} held out")
    fit = load_folder(root, sets.resolution, fit_files)
    held_out = load_folder(root, sets.resolution, held_files)
    y = np.array([labels[p] for p in fit.files])
    mean, scale, weights, bias = fit_logistic(sets.folder_features(root, fit), y)
    held_labels = np.array([labels[p] for p in held_out.files])
    if math.isnan(bias):
        raise DatasetError(f"{root}: the gender judge did not converge")
    return GenderJudge(mean, scale, weights, bias, held_out, held_labels, fit.count)
