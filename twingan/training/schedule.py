"""The progressive-growing schedule: which resolution, fade-in alpha and batch size at each image count."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from twingan.errors import ConfigError


@dataclass(frozen=True)
class Phase:
    resolution: int
    kind: str  # "fade" or "stable"
    start: int  # images seen when the phase starts
    length: int  # images in the phase
    batch_size: int

    @property
    def end(self) -> int:
        return self.start + self.length


class ProgressiveSchedule:
    """Phases from ``start_resolution`` to ``final_resolution``.

    The first resolution is trained stable only; every later one has a fade-in
    phase (alpha ramps linearly from 0 to 1 over ``fade_images``) then a stable
    phase. Images are counted per domain over all ranks.
    """

    def __init__(
        self,
        start_resolution: int,
        final_resolution: int,
        fade_images: int,
        stable_images: int,
        batch_size: Mapping[int, int],
        final_stable_images: int | None = None,
        world_size: int = 1,
    ) -> None:
        for name, res in (("start_resolution", start_resolution), ("final_resolution", final_resolution)):
            if res < 4 or res & (res - 1):
                raise ConfigError(f"train.schedule.{name} must be a power of two >= 4, got {res}")
        if final_resolution < start_resolution:
            raise ConfigError(
                f"train.schedule.final_resolution ({final_resolution}) is below start_resolution ({start_resolution})"
            )
        if fade_images < 0 or stable_images <= 0:
            raise ConfigError("train.schedule.fade_images must be >= 0 and stable_images > 0")
        sizes = {int(k): int(v) for k, v in batch_size.items()}
        self.phases: list[Phase] = []
        start = 0
        res = start_resolution
        while res <= final_resolution:
            if res not in sizes or sizes[res] < 1:
                raise ConfigError(f"train.schedule.batch_size has no positive entry for resolution {res}")
            step = sizes[res] * world_size
            if res > start_resolution and fade_images > 0:
                self.phases.append(Phase(res, "fade", start, _round_up(fade_images, step), sizes[res]))
                start = self.phases[-1].end
            length = final_stable_images if (res == final_resolution and final_stable_images) else stable_images
            self.phases.append(Phase(res, "stable", start, _round_up(length, step), sizes[res]))
            start = self.phases[-1].end
            res *= 2
        self.world_size = world_size

    @property
    def total_images(self) -> int:
        return self.phases[-1].end

    def phase_at(self, images_seen: int) -> Phase:
        for phase in self.phases:
            if images_seen < phase.end:
                return phase
        return self.phases[-1]

    def alpha_at(self, images_seen: int) -> float:
        phase = self.phase_at(images_seen)
        if phase.kind != "fade":
            return 1.0
        return min(1.0, max(0.0, (images_seen - phase.start) / phase.length))

    def describe(self) -> list[str]:
        return [f"{p.resolution:>4}px {p.kind:<6} {p.length:>9} images, batch {p.batch_size}" for p in self.phases]


def _round_up(n: int, multiple: int) -> int:
    """Phases hold whole steps, so a step never straddles two phases."""
    return max(multiple, -(-n // multiple) * multiple)
