"""Categorical attribute vocabularies and their one-hot conditioning vectors.

A schema is an ordered set of groups, each with its allowed values, e.g.
``{"hair": ("black", "blonde", "blue"), "eyes": ("brown", "green")}``. A label is one
value index per group, -1 where the value is unknown or left unspecified; its
conditioning vector concatenates one one-hot block per group, with an all-zero
block for -1 ("keep what the source has"). Zero vectors therefore mean "no
condition", which is how the generator is trained to leave unnamed groups alone.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch

UNKNOWN = -1


class AttributeSchema:
    """Ordered attribute groups and their values; converts labels to conditioning vectors."""

    def __init__(self, groups: Mapping[str, Sequence[str]]) -> None:
        self.groups: dict[str, tuple[str, ...]] = {}
        for name, values in groups.items():
            values = tuple(str(v) for v in values)
            if not values or len(set(values)) != len(values):
                raise ValueError(f"attribute group {name!r} needs distinct values, got {list(values)}")
            self.groups[str(name)] = values
        self.offsets: list[int] = []
        total = 0
        for values in self.groups.values():
            self.offsets.append(total)
            total += len(values)
        self.dim = total

    def __bool__(self) -> bool:
        return bool(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.groups)

    def value_index(self, group: str, value: str) -> int:
        if group not in self.groups:
            raise ValueError(f"unknown attribute {group!r}; this model knows {list(self.groups)}")
        values = self.groups[group]
        if value not in values:
            raise ValueError(f"attribute {group}={value!r} is not one of {list(values)}")
        return values.index(value)

    def label(self, values: Mapping[str, str]) -> list[int]:
        """{group: value} (a subset of groups) -> one index per group, -1 for groups not named."""
        for group in values:
            if group not in self.groups:
                raise ValueError(f"unknown attribute {group!r}; this model knows {list(self.groups)}")
        return [self.value_index(g, values[g]) if g in values else UNKNOWN for g in self.groups]

    def parse(self, specs: Iterable[str]) -> list[int]:
        """``["hair=blue", "eyes=green"]`` (or comma-joined) -> a label; clear errors for bad text."""
        values: dict[str, str] = {}
        for spec in specs:
            for part in str(spec).split(","):
                part = part.strip()
                if not part:
                    continue
                if "=" not in part:
                    raise ValueError(f"attribute {part!r} must look like NAME=VALUE (e.g. hair=blue)")
                name, value = (s.strip() for s in part.split("=", 1))
                if name in values and values[name] != value:
                    raise ValueError(f"attribute {name!r} given twice ({values[name]!r} and {value!r})")
                values[name] = value
        return self.label(values)

    def label_of(self, attrs: Mapping[str, str] | str | Iterable[str]) -> list[int]:
        """A label from ``{"hair": "blue"}``, ``"hair=blue,eyes=green"`` or ``["hair=blue", ...]``."""
        if isinstance(attrs, Mapping):
            return self.label({str(k): str(v) for k, v in attrs.items()})
        return self.parse([attrs] if isinstance(attrs, str) else list(attrs))

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """(N, groups) integer labels (-1 = none) -> (N, dim) float conditioning vectors."""
        if labels.dim() != 2 or labels.shape[1] != len(self.groups):
            raise ValueError(f"expected labels of shape (N, {len(self.groups)}), got {tuple(labels.shape)}")
        out = torch.zeros(labels.shape[0], self.dim, device=labels.device)
        for g, offset in enumerate(self.offsets):
            column = labels[:, g].long()
            known = column >= 0
            if known.any():
                rows = torch.nonzero(known).squeeze(1)
                out[rows, offset + column[known]] = 1.0
        return out

    def split_logits(self, logits: torch.Tensor) -> list[torch.Tensor]:
        """(N, dim) logits -> one (N, len(values)) block per group."""
        return [logits[:, o : o + len(v)] for o, v in zip(self.offsets, self.groups.values())]

    def to_dict(self) -> dict[str, list[str]]:
        return {name: list(values) for name, values in self.groups.items()}
