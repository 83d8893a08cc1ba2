"""Scores of translations of real folders, for any system (a model, the untrained one, copying the input).

Each function adds rows to ``scores`` (system -> metric -> value) for every
(source, target) pair of :attr:`RealSets.pairs`, and rows of the ``floor``
column where real images can take the translations' place:

* :func:`kid_fid_rows`: ``SRC2DST/kid_x100``, ``kid_x100_std`` and ``fid`` of the
  translations of the SRC test folder against the DST reference folder, both at
  the model resolution. KID is U-GAT-IT's protocol (TF-GAN's block estimator,
  blocks of 10, x100, ± its standard error; :func:`~twingan.metrics.kid.kid_blocks`).
  Floor: a same-size draw from the DST training folder in place of the translations.
* :func:`reconstruction_rows`: ``SRC/recon_l1``, mean |x - G_src(E_src(x))| on the 0..1 scale.
* :func:`style_rows`: ``SRC2DST/style``, the share of translations that the independent
  judge (:mod:`twingan.metrics.real_judges`, fitted on the training folders) calls DST.
  Floor: the share of the real DST reference images it calls DST.
* :func:`round_trip_rows`: ``SRC2DST2SRC/recall@1``, the share of SRC test images whose
  cycle SRC -> DST -> SRC has the image itself as nearest neighbour (cosine, Inception
  features) among all the test images.
* :func:`search_rows`: query each SRC test image against a gallery of the DST reference
  images plus the translations of all SRC test images: ``SRC2DST/search@1`` with the
  system's own embedding (a model's latent; raw pixels for copying), ``search_pixels@1`` with
  raw pixels and ``search_inception@1`` with Inception features, the share whose nearest
  gallery entry is their own translation.
* :func:`gender_rows`: see :mod:`twingan.metrics.real_judges`.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from twingan.data.image_io import uint8_to_tensor
from twingan.metrics.fid import fid_from_features
from twingan.metrics.kid import DEFAULT_BLOCK_SIZE, kid_blocks
from twingan.metrics.paired import PixelBaseline, Translatable
from twingan.metrics.real_judges import gender_judge_for, style_judge_for
from twingan.metrics.real_sets import RealSets, embed_all, translate_all
from twingan.metrics.retrieval import twin_recall_at_k

FLOOR = "floor"
"""The column of real images in the translations' place (see the module docstring per metric)."""

Scores = dict[str, dict[str, float]]


def _put(scores: Scores, system: str, metric: str, value: float) -> None:
    scores.setdefault(system, {})[metric] = float(value)


def kid_fid_rows(sets: RealSets, systems: Mapping[str, Translatable], scores: Scores) -> dict[str, dict[str, Any]]:
    """KID x100 ± std and FID per pair and system, and the floor where a training folder of DST is given;
    returns each pair's details (folders, counts, skipped files, estimator)."""
    details: dict[str, dict[str, Any]] = {}
    for src, dst in sets.pairs:
        pair = f"{src}2{dst}"
        source, reference = sets.folder(sets.real[src]), sets.folder(sets.target[dst])
        reference_features = sets.folder_features(sets.target[dst])
        sets.folder_features(sets.real[src])  # from the disk cache: copying the input then costs no Inception run
        compared = {name: sets.features(sets.translations(name, system, src, dst, sets.real[src]))
                    for name, system in systems.items()}
        floor = None
        if dst in sets.train:
            floor = sets.floor_draw(dst, source.count)
            compared[FLOOR] = sets.folder_features(sets.train[dst], floor)
        for name, features in compared.items():
            kid, std = kid_blocks(features, reference_features)
            _put(scores, name, f"{pair}/kid_x100", 100 * kid)
            _put(scores, name, f"{pair}/kid_x100_std", 100 * std)
            _put(scores, name, f"{pair}/fid", fid_from_features(features, reference_features))
        details[pair] = {
            "source": str(sets.real[src]),
            "target": str(sets.target[dst]),
            "n_source": source.count,
            "n_target": reference.count,
            "skipped_source": source.skipped,
            "skipped_target": reference.skipped,
            "floor": None if floor is None else {"folder": str(sets.train[dst]), "n": floor.count},
            "resolution": sets.resolution,
            "kid": f"x100, TF-GAN block estimator (U-GAT-IT), blocks of at most {DEFAULT_BLOCK_SIZE}, "
                   "± standard error",
            "inception": sets.extractor.weights_id,
        }
    return details


@torch.no_grad()
def reconstruction_rows(sets: RealSets, systems: Mapping[str, Translatable], scores: Scores) -> None:
    for src, root in sets.real.items():
        x = sets.folder(root).images
        for name, system in systems.items():
            recon = translate_all(system, x, src, src, sets.batch_size)
            _put(scores, name, f"{src}/recon_l1", (uint8_to_tensor(recon) - uint8_to_tensor(x)).abs().mean() / 2)


def style_rows(sets: RealSets, systems: Mapping[str, Translatable], scores: Scores) -> dict[str, float]:
    """Style shares per pair and system; returns each judge's accuracy on the real reference images of both
    domains (``SRC2DST`` -> accuracy)."""
    accuracies = {}
    for src, dst in sets.pairs:
        judge = style_judge_for(sets, src, dst)
        pair = f"{src}2{dst}"
        for name, system in systems.items():
            fake = uint8_to_tensor(sets.translations(name, system, src, dst, sets.real[src]))
            _put(scores, name, f"{pair}/style", judge.share_in(fake, dst))
        _put(scores, FLOOR, f"{pair}/style", judge.share_in(sets.folder(sets.target[dst]).as_float(), dst))
        accuracies[pair] = judge.test_accuracy(sets)
    return accuracies


@torch.no_grad()
def round_trip_rows(sets: RealSets, systems: Mapping[str, Translatable], scores: Scores) -> None:
    for src, dst in sets.pairs:
        source_features = sets.folder_features(sets.real[src])
        for name, system in systems.items():
            there = sets.translations(name, system, src, dst, sets.real[src])
            back = translate_all(system, there, dst, src, sets.batch_size)
            recall = twin_recall_at_k(sets.features(back), source_features, ks=(1,))[1]
            _put(scores, name, f"{src}2{dst}2{src}/recall@1", recall)


def _own_recall_at_1(queries: np.ndarray, gallery: np.ndarray, own: np.ndarray) -> float:
    """Share of queries whose most cosine-similar gallery row is ``own[i]`` (a tie with another row is a miss)."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(1e-12)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True).clip(1e-12)
    sims = q @ g.T
    mine = sims[np.arange(len(q)), own]
    return float(((sims >= mine[:, None]).sum(axis=1) == 1).mean())


@torch.no_grad()
def search_rows(sets: RealSets, systems: Mapping[str, Translatable], scores: Scores) -> None:
    pixels = PixelBaseline()
    for src, dst in sets.pairs:
        pair = f"{src}2{dst}"
        source, others = sets.folder(sets.real[src]), sets.folder(sets.target[dst])
        own = len(others.images) + np.arange(source.count)
        for name, system in systems.items():
            fakes = sets.translations(name, system, src, dst, sets.real[src])
            gallery_images = torch.cat([others.images, fakes])
            embeddings = {
                "search": (embed_all(system, source.images, src, sets.batch_size),
                           np.concatenate([embed_all(system, others.images, dst, sets.batch_size),
                                           embed_all(system, fakes, dst, sets.batch_size)])),
                "search_pixels": (embed_all(pixels, source.images, src, sets.batch_size),
                                  embed_all(pixels, gallery_images, dst, sets.batch_size)),
                "search_inception": (sets.folder_features(sets.real[src]),
                                     np.concatenate([sets.folder_features(sets.target[dst]), sets.features(fakes)])),
            }
            for kind, (queries, gallery) in embeddings.items():
                _put(scores, name, f"{pair}/{kind}@1", _own_recall_at_1(queries, gallery, own))


@torch.no_grad()
def gender_rows(sets: RealSets, systems: Mapping[str, Translatable], domains: list[str], scores: Scores) -> dict:
    """Per photo domain P of --gender-faces and other domain D: ``P2D2P/gender_kept_men`` and
    ``gender_kept_women``, the share of held-out men (women) whose cycle P -> D -> P the judge still calls a
    man (woman). Floor: the judge on the held-out photos themselves. Returns the split's counts."""
    info = {}
    for photo, root in sets.gender_faces.items():
        judge = gender_judge_for(sets, photo)
        held_out = judge.held_out
        men = judge.labels == 0
        floor = judge.says_female(sets.folder_features(root, held_out))
        for dst in (d for d in domains if d != photo):
            cycle = f"{photo}2{dst}2{photo}"
            for name, system in systems.items():
                there = translate_all(system, held_out.images, photo, dst, sets.batch_size)
                back = translate_all(system, there, dst, photo, sets.batch_size)
                said = judge.says_female(sets.features(back))
                _put(scores, name, f"{cycle}/gender_kept_men", (~said[men]).mean())
                _put(scores, name, f"{cycle}/gender_kept_women", said[~men].mean())
            _put(scores, FLOOR, f"{cycle}/gender_kept_men", (~floor[men]).mean())
            _put(scores, FLOOR, f"{cycle}/gender_kept_women", floor[~men].mean())
        info[photo] = {"folder": str(root), "fitted_on": judge.fitted_on, "held_out_men": int(men.sum()),
                       "held_out_women": int((~men).sum())}
    return info
