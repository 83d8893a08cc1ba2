"""Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel.

k(x, y) = (x . y / d + 1)^3, d the feature size. Unlike FID, the estimator is
unbiased, so KID of two samples of one distribution averages 0 at any sample
size: that is why it is the metric to trust for small test sets. As in the
KID paper (and StyleGAN / clean-fid) it is averaged over random subsets of
size min(1000, n), and the spread over subsets is reported too
(:func:`kernel_inception_distance`).

:func:`kid_blocks` is the estimator of TF-GAN's
``kernel_classifier_distance_and_std_from_activations``, which U-GAT-IT's
authors ran with ``max_block_size=10`` for the KID x100 ± std of its table:
both sets are cut into the same number of consecutive blocks (at most
``max_block_size`` rows), the unbiased MMD^2 is taken per block pair, and the
result is the mean over blocks with its standard error. Unlike the subsets of
a 100-image test set (each then the whole set, so no spread), it gives a
spread; the rows are shuffled with a fixed seed first, as TF-GAN assumes.
"""
from __future__ import annotations

import numpy as np

DEFAULT_SUBSETS = 100
DEFAULT_SUBSET_SIZE = 1000
DEFAULT_BLOCK_SIZE = 10
"""U-GAT-IT's ``max_block_size`` (taki0112/GAN_Metrics-Tensorflow)."""


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(x . y / d + 1)^3 for every pair of rows of x (N, d) and y (M, d)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between samples x (m, d) and y (n, d): same-set pairs exclude i == j."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {m} and {n}")
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def kid_subset_values(
    features_a: np.ndarray,
    features_b: np.ndarray,
    num_subsets: int = DEFAULT_SUBSETS,
    subset_size: int = DEFAULT_SUBSET_SIZE,
    seed: int = 0,
) -> np.ndarray:
    """Unbiased MMD^2 on ``num_subsets`` random subsets (without replacement) of size min(subset_size, n_a, n_b)."""
    features_a, features_b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if features_a.ndim != 2 or features_b.ndim != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"features must be (N, D) with equal D, got {features_a.shape} and {features_b.shape}")
    if num_subsets < 1 or subset_size < 2:
        raise ValueError(f"need num_subsets >= 1 and subset_size >= 2, got {num_subsets} and {subset_size}")
    size = min(subset_size, features_a.shape[0], features_b.shape[0])
    if size == features_a.shape[0] == features_b.shape[0]:
        # Every "subset" is then the whole of both sets and the estimate is permutation invariant.
        return np.full(num_subsets, mmd2_unbiased(features_a, features_b))
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets, dtype=np.float64)
    for i in range(num_subsets):
        a = features_a[rng.choice(features_a.shape[0], size, replace=False)]
        b = features_b[rng.choice(features_b.shape[0], size, replace=False)]
        values[i] = mmd2_unbiased(a, b)
    return values


def kernel_inception_distance(
    features_a: np.ndarray,
    features_b: np.ndarray,
    num_subsets: int = DEFAULT_SUBSETS,
    subset_size: int = DEFAULT_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float]:
    """KID as (mean, std) over subsets; deterministic for a given seed."""
    values = kid_subset_values(features_a, features_b, num_subsets, subset_size, seed)
    return float(values.mean()), float(values.std())


def kid_blocks(
    features_a: np.ndarray,
    features_b: np.ndarray,
    max_block_size: int = DEFAULT_BLOCK_SIZE,
    seed: int | None = 0,
) -> tuple[float, float]:
    """KID as (mean over blocks, standard error of that mean), TF-GAN's block estimator.

    ``n_blocks = ceil(max(n_a, n_b) / max_block_size)``; each set is split into that many consecutive blocks
    whose sizes differ by at most one (the larger ones last). Rows are permuted with ``seed`` first (None:
    kept in order). The standard error is NaN with one block. ValueError when a block of the smaller set
    would hold fewer than 2 rows (sets of very different sizes: use :func:`kernel_inception_distance`).
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be (N, D) with equal D, got {a.shape} and {b.shape}")
    if max_block_size < 2:
        raise ValueError(f"max_block_size must be at least 2, got {max_block_size}")
    n_blocks = -(-max(len(a), len(b)) // max_block_size)
    if min(len(a), len(b)) < 2 * n_blocks:
        raise ValueError(
            f"KID blocks: {len(a)} and {len(b)} rows make {n_blocks} blocks of at most {max_block_size}, "
            "and the smaller set cannot give each block 2 rows; compare sets of similar sizes or use the "
            "subset estimator"
        )
    if seed is not None:
        rng = np.random.default_rng(seed)
        a, b = a[rng.permutation(len(a))], b[rng.permutation(len(b))]
    estimates = np.array([
        mmd2_unbiased(block_a, block_b)
        for block_a, block_b in zip(_blocks(a, n_blocks), _blocks(b, n_blocks))
    ])
    mean = float(estimates.mean())
    if n_blocks < 2:
        return mean, float("nan")
    return mean, float(np.sqrt(estimates.var(ddof=1) / n_blocks))


def _blocks(rows: np.ndarray, n_blocks: int) -> list[np.ndarray]:
    small = len(rows) // n_blocks
    larger = len(rows) - small * n_blocks
    sizes = [small] * (n_blocks - larger) + [small + 1] * larger
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [rows[start:end] for start, end in zip(bounds[:-1], bounds[1:])]
