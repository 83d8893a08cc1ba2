"""Deterministic, resumable batches for every domain.

Each domain is read in an endless sequence of epochs, each a fresh random
permutation seeded by (seed, domain, epoch). A single counter, ``position``
(samples drawn per domain over all ranks), says where the run is; it is what a
checkpoint stores, so a resumed run reads exactly the batches it would have
read. Rank r of W takes samples [position + r*B, position + (r+1)*B) of each step.
"""
from __future__ import annotations

import functools
from typing import Iterator, Sequence

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


class StepBatches(Dataset):
    """Item k = the uint8 batches of every domain for the k-th step after ``start``."""

    def __init__(
        self,
        datasets: Sequence[ImageDomainDataset],
        orders: Sequence[EpochPermutations],
        start: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.datasets = datasets
        self.orders = orders
        self.start = start
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> list[torch.Tensor]:
        first = self.start + step * self.batch_size * self.world_size + self.rank * self.batch_size
        return [
            torch.stack([ds[order.index(first + j)] for j in range(self.batch_size)])
            for ds, order in zip(self.datasets, self.orders)
        ]


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
) -> Iterator[list[torch.Tensor]]:
    """Endless per-step batches from sample ``start`` on, loaded by ``num_workers`` processes."""
    for ds in datasets:
        ds.set_resolution(resolution)
    steps = StepBatches(datasets, orders, start, batch_size, rank, world_size)
    loader = DataLoader(
        steps,
        batch_size=None,
        sampler=range(len(steps)),
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(0),
    )
    return iter(loader)
