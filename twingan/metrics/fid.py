"""Fréchet Inception Distance between two sets of features.

FID = ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), the Fréchet distance
between two Gaussians fitted to the features. It is biased upward for small
sets (the covariance of 2048-d features needs thousands of samples); compare
FIDs only at equal set sizes, and prefer KID (kid.py) for small test sets.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

SQRTM_EPS = 1e-6
"""Added to both covariance diagonals when the plain product has no usable square root (singular covariances)."""
MAX_IMAGINARY = 1e-3
"""Largest imaginary part of the square root's diagonal accepted as numerical noise."""


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (float64) of features (N, D); N must be at least 2."""
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {feats.shape}")
    if feats.shape[0] < 2:
        raise ValueError(f"FID statistics need at least 2 feature vectors, got {feats.shape[0]}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"mismatched statistics: means {mu1.shape} and {mu2.shape}, covariances {sigma1.shape} and {sigma2.shape}"
        )
    covmean = _sqrtm_of_product(sigma1, sigma2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def _sqrtm_of_product(sigma1: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """Real part of (S1 S2)^(1/2); retried with SQRTM_EPS on the diagonals when the product is near singular."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not _usable(covmean):
        warnings.warn(
            f"FID: the covariance product is singular (too few samples for the feature size?); "
            f"adding {SQRTM_EPS} to the covariance diagonals",
            RuntimeWarning,
            stacklevel=3,
        )
        offset = np.eye(sigma1.shape[0]) * SQRTM_EPS
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if not np.isfinite(covmean).all():
        raise ValueError("FID: the matrix square root of the covariance product is not finite")
    if np.iscomplexobj(covmean):
        largest = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if largest > MAX_IMAGINARY:
            raise ValueError(f"FID: the matrix square root has an imaginary component of {largest:.3g}")
        covmean = covmean.real
    return covmean


def _usable(covmean: np.ndarray) -> bool:
    if not np.isfinite(covmean).all():
        return False
    return not np.iscomplexobj(covmean) or float(np.max(np.abs(np.diagonal(covmean).imag))) <= MAX_IMAGINARY


def fid_from_features(
    features_a: np.ndarray,
    features_b: np.ndarray,
    stats_a: tuple[np.ndarray, np.ndarray] | None = None,
    stats_b: tuple[np.ndarray, np.ndarray] | None = None,
) -> float:
    """FID between two feature sets (N, D) and (M, D); ``stats_*`` are their (mean, covariance) when already known.

    With at least D samples on both sides this is :func:`frechet_distance` on
    the two sets' statistics. With fewer (small test sets: the covariances are
    then singular, so sqrtm is slow and only approximate after the eps fix),
    the trace term is computed exactly from the centred features A and B:
    the eigenvalues of S1 S2 are the squared singular values of
    A B^T / sqrt((N-1)(M-1)), so tr((S1 S2)^(1/2)) is that matrix's nuclear norm.
    """
    mu_a, sigma_a = stats_a if stats_a is not None else feature_statistics(features_a)
    mu_b, sigma_b = stats_b if stats_b is not None else feature_statistics(features_b)
    feats_a, feats_b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f"feature sizes differ: {feats_a.shape[1]} and {feats_b.shape[1]}")
    if min(feats_a.shape[0], feats_b.shape[0]) >= feats_a.shape[1]:
        return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
    centred_a, centred_b = feats_a - mu_a, feats_b - mu_b
    cross = centred_a @ centred_b.T / np.sqrt((feats_a.shape[0] - 1) * (feats_b.shape[0] - 1))
    trace_covmean = float(np.linalg.svd(cross, compute_uv=False).sum())
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_covmean)
