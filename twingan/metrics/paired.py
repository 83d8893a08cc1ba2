"""Scores on the synthetic paired test set: translation error, hair-colour accuracy, retrieval recall@k.

Every test face exists in both styles with the same parameters, so a
translation can be compared with the true rendering in the other style, and
a cross-domain search can be checked for finding the face's own twin
(``recall@k`` with the full embedding, ``pooled_recall@k`` with the compact one).
Anything with ``translate(x, src, dst)`` and ``embed(x, domain, kind)`` on [-1, 1]
NCHW tensors can be scored: a TwinGAN, an untrained one, or :class:`PixelBaseline`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch

from twingan.data.datasets import resize_square
from twingan.data.image_io import load_image, tensor_to_uint8, uint8_to_tensor
from twingan.data.synthetic import FaceParams, hair_colour_of, load_test_params

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


def load_paired_test_set(root: str | Path, resolution: int, limit: int | None = None) -> PairedTestSet:
    root = Path(root)
    params = load_test_params(root)[:limit]
    images, paths = {}, {}
    for style in STYLES:
        files = [root / "test" / style / f"{i:05d}.png" for i in range(len(params))]
        arrays = [resize_square(load_image(f), resolution) for f in files]
        images[style] = uint8_to_tensor(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))
        paths[style] = files
    return PairedTestSet(images, params, paths)


class PixelBaseline:
    """The trivial baseline: 'translation' returns the input; the embedding is the raw pixels ('full') or,
    as the compact counterpart of the pooled latent, the image's mean colour ('pooled')."""

    def translate(self, x: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        return x

    def embed(self, x: torch.Tensor, domain: str, kind: str = "full") -> torch.Tensor:
        if kind not in ("full", "pooled"):
            raise ValueError(f"embedding kind must be 'full' or 'pooled', got {kind!r}")
        vectors = x.flatten(1) if kind == "full" else x.mean(dim=(2, 3))
        return torch.nn.functional.normalize(vectors.float(), dim=1)


def recall_at_k(queries: np.ndarray, gallery: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Fraction of queries i whose own pair (gallery row i) is among the k most cosine-similar gallery rows."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(1e-12)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True).clip(1e-12)
    sims = q @ g.T
    own = np.diag(sims)
    rank = (sims > own[:, None]).sum(axis=1)
    return {k: float((rank < k).mean()) for k in ks}


@torch.no_grad()
def paired_scores(
    system: Translatable,
    test_set: PairedTestSet,
    domains: dict[str, str],
    batch_size: int = 64,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Scores in both directions; ``domains`` maps each style ("photo", "anime") to the model's domain name."""
    device = _device_of(system)
    scores: dict[str, float] = {}
    outputs: dict[str, torch.Tensor] = {}
    embeddings: dict[str, np.ndarray] = {}
    for src, dst in (("photo", "anime"), ("anime", "photo")):
        x = test_set.images[src]
        fakes, embeds = [], []
        for start in range(0, len(x), batch_size):
            chunk = x[start:start + batch_size].to(device)
            fakes.append(system.translate(chunk, domains[src], domains[dst]).float().cpu())
            embeds.append(system.embed(chunk, domains[src]).float().cpu())
        fake = torch.cat(fakes).clamp(-1, 1)
        outputs[f"{src}2{dst}"] = fake
        embeddings[src] = torch.cat(embeds).numpy()
        key = f"{src}2{dst}"
        scores[f"{key}/l1"] = float((fake - test_set.images[dst]).abs().mean() / 2.0)
        pixels = tensor_to_uint8(fake).permute(0, 2, 3, 1).numpy()
        hits = [hair_colour_of(img, dst) == p.hair_colour_index for img, p in zip(pixels, test_set.params)]
        scores[f"{key}/hair_acc"] = float(np.mean(hits))
    for src, dst in (("photo", "anime"), ("anime", "photo")):
        for k, value in recall_at_k(embeddings[src], embeddings[dst], ks).items():
            scores[f"{src}2{dst}/recall@{k}"] = value
    from twingan.search.retrieval_quality import embedding_recall

    scores.update(embedding_recall(system, test_set, domains, kinds=("pooled",), ks=ks, batch_size=batch_size))
    return scores


def _device_of(system: object) -> torch.device:
    if isinstance(system, torch.nn.Module):
        for p in system.parameters():
            return p.device
    return torch.device("cpu")
