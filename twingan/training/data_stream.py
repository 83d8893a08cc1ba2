"""Deterministic, resumable batches for every domain.

Each domain is read in an endless sequence of epochs, each a fresh random
permutation seeded by (seed, domain, epoch). A single counter, ``position``
(samples drawn per domain over all ranks), says where the run is; it is what a
checkpoint stores, so a resumed run reads exactly the batches it would have
read. Rank r of W takes samples [position + r*B, position + (r+1)*B) of each step.

Every step is a :class:`StepBatch`; with per-domain label matrices
(:func:`twingan.data.labels.label_matrix`) it also carries the labels of the
images actually loaded: a bad file is replaced by the next readable one, and
its label row follows it.
"""
from __future__ import annotations

import functools
import signal
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from twingan.data.datasets import ImageDomainDataset


class EpochPermutations:
    """Index order of one domain: a permutation per epoch from a seeded generator."""

    def __init__(self, size: int, seed: int, domain: int) -> None:
        self.size = size
        self.seed = seed
        self.domain = domain

    @functools.lru_cache(maxsize=16)
    def permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.domain * 7_919 + epoch) % (2**63))
        return torch.randperm(self.size, generator=g)

    def index(self, position: int) -> int:
        epoch, offset = divmod(position, self.size)
        return int(self.permutation(epoch)[offset])


class StepBatch(NamedTuple):
    """One step's batches: ``images[d]`` uint8 (B, 3, R, R), ``labels[d]`` int64 (B, G), or None for a domain
    without labels (every domain, when the stream has no label matrices)."""

    images: list[torch.Tensor]
    labels: list[Optional[torch.Tensor]]


def _check_labels(
    datasets: Sequence[ImageDomainDataset], labels: Sequence[Optional[np.ndarray]]
) -> list[Optional[np.ndarray]]:
    if len(labels) != len(datasets):
        raise ValueError(f"got {len(labels)} label matrices for {len(datasets)} domains (use None for a domain without labels)")
    checked: list[Optional[np.ndarray]] = []
    for d, (ds, matrix) in enumerate(zip(datasets, labels)):
        if matrix is None:
            checked.append(None)
            continue
        matrix = np.asarray(matrix)
        if matrix.ndim != 2 or matrix.shape[0] != len(ds) or not np.issubdtype(matrix.dtype, np.integer):
            raise ValueError(
                f"labels of domain {d} must be an integer array of shape ({len(ds)}, groups), "
                f"got {matrix.dtype} {matrix.shape}"
            )
        checked.append(np.ascontiguousarray(matrix, dtype=np.int64))
    return checked


class StepBatches(Dataset):
    """Item k = the :class:`StepBatch` of every domain for the k-th step after ``start``.

    With ``labels`` (one (N_d, G) integer matrix per domain, or None) its
    ``labels[d]`` holds the rows of the images actually loaded (None for a
    domain without a matrix); without, every ``labels[d]`` is None.
    """

    def __init__(
        self,
        datasets: Sequence[ImageDomainDataset],
        orders: Sequence[EpochPermutations],
        start: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        labels: Optional[Sequence[Optional[np.ndarray]]] = None,
    ) -> None:
        self.datasets = datasets
        self.orders = orders
        self.start = start
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.labels = [None] * len(datasets) if labels is None else _check_labels(datasets, labels)

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> StepBatch:
        first = self.start + step * self.batch_size * self.world_size + self.rank * self.batch_size
        images: list[torch.Tensor] = []
        labels: list[Optional[torch.Tensor]] = []
        for ds, order, matrix in zip(self.datasets, self.orders, self.labels):
            loaded = [ds.load_with_index(order.index(first + j)) for j in range(self.batch_size)]
            images.append(torch.stack([item for item, _ in loaded]))
            if matrix is None:
                labels.append(None)
            else:
                rows = np.array([index for _, index in loaded], dtype=np.int64)
                labels.append(torch.from_numpy(matrix[rows]))
        return StepBatch(images, labels)


def batch_iterator(
    datasets: Sequence[ImageDomainDataset],
    orders: Sequence[EpochPermutations],
    start: int,
    batch_size: int,
    resolution: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    labels: Optional[Sequence[Optional[np.ndarray]]] = None,
) -> Iterator[StepBatch]:
    """Endless per-step :class:`StepBatch` items from sample ``start`` on, loaded by ``num_workers`` processes.

    With ``labels`` (one integer matrix (len(dataset), G) per domain, or None
    for a domain without labels) ``labels[d]`` is a LongTensor (B, G) aligned
    with ``images[d]``, bad-file substitutions included, or None.
    """
    for ds in datasets:
        ds.set_resolution(resolution)
    steps = StepBatches(datasets, orders, start, batch_size, rank, world_size, labels=labels)
    loader = DataLoader(
        steps,
        batch_size=None,
        sampler=range(len(steps)),
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(0),
        worker_init_fn=_leave_stop_signals_to_the_trainer if num_workers > 0 else None,
    )
    return iter(loader)


def _leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    """Loader workers ignore SIGTERM and SIGINT (a scheduler or Ctrl-C sends them to the whole process group):
    the training process stops after its step, and its loader then ends the workers."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
