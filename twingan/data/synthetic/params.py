"""The parameters of one synthetic face, shared by both drawing styles, and how they are drawn from a seed."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from twingan.data.synthetic.palettes import BACKGROUND_COLOURS, EYE_COLOURS, HAIR_COLOURS, SHIRT_COLOURS, SKIN_TONES

HAIR_STYLES: tuple[str, ...] = ("short", "long", "bangs", "twintails", "ponytail")
MOUTHS: tuple[str, ...] = ("neutral", "smile", "open")
BACKGROUND_TYPES: tuple[str, ...] = ("flat", "gradient", "radial")

YAW_RANGE = (-1.0, 1.0)
ROLL_RANGE_DEG = (-10.0, 10.0)
SCALE_RANGE = (0.9, 1.1)
GLASSES_PROBABILITY = 0.2

_STREAM_IDS = {"train_photo": 0, "train_anime": 1, "test": 2}


@dataclass(frozen=True)
class FaceParams:
    """Everything that defines one synthetic face, shared by both drawing styles.

    Categorical fields hold palette names (keys of the palettes in ``palettes.py``).
    ``yaw`` in [-1, 1] turns the face sideways (features shift left/right);
    ``roll`` is the head tilt in degrees; ``scale`` the head size factor;
    ``seed`` drives small per-image details (hair strand jitter, sensor noise).
    """

    hair_colour: str
    hair_style: str
    eye_colour: str
    skin_tone: str
    mouth: str
    background_colour: str
    background_type: str
    shirt_colour: str
    glasses: bool
    yaw: float
    roll: float
    scale: float
    seed: int

    def __post_init__(self) -> None:
        choices = {
            "hair_colour": HAIR_COLOURS,
            "hair_style": HAIR_STYLES,
            "eye_colour": EYE_COLOURS,
            "skin_tone": SKIN_TONES,
            "mouth": MOUTHS,
            "background_colour": BACKGROUND_COLOURS,
            "background_type": BACKGROUND_TYPES,
            "shirt_colour": SHIRT_COLOURS,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"FaceParams.{name}={value!r} is not one of {sorted(allowed)}")

    @property
    def hair_colour_index(self) -> int:
        """Index of the hair colour in HAIR_COLOURS (the label :func:`hair_colour_of` estimates)."""
        return HAIR_COLOUR_NAMES.index(self.hair_colour)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FaceParams":
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"face parameters lack {missing}")
        return cls(**{n: data[n] for n in names})


HAIR_COLOUR_NAMES: tuple[str, ...] = tuple(HAIR_COLOURS)
EYE_COLOUR_NAMES: tuple[str, ...] = tuple(EYE_COLOURS)
GLASSES_VALUES: tuple[str, ...] = ("no", "yes")

SYNTHETIC_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "hair": HAIR_COLOUR_NAMES,
    "eyes": EYE_COLOUR_NAMES,
    "mouth": MOUTHS,
    "glasses": GLASSES_VALUES,
}
"""The attribute schema of the synthetic faces (``model.attributes``); ``train/*/labels.csv`` use it."""


def attribute_values(params: FaceParams) -> dict[str, str]:
    """The :data:`SYNTHETIC_ATTRIBUTES` value names of one face, e.g. {'hair': 'blue', ..., 'glasses': 'no'}."""
    return {
        "hair": params.hair_colour,
        "eyes": params.eye_colour,
        "mouth": params.mouth,
        "glasses": GLASSES_VALUES[int(params.glasses)],
    }


def sample_params(rng: np.random.Generator) -> FaceParams:
    """Draw one face's parameters from ``rng`` (uniform over every palette and range)."""

    def pick(options: Iterable[str]) -> str:
        options = tuple(options)
        return options[int(rng.integers(len(options)))]

    return FaceParams(
        hair_colour=pick(HAIR_COLOURS),
        hair_style=pick(HAIR_STYLES),
        eye_colour=pick(EYE_COLOURS),
        skin_tone=pick(SKIN_TONES),
        mouth=pick(MOUTHS),
        background_colour=pick(BACKGROUND_COLOURS),
        background_type=pick(BACKGROUND_TYPES),
        shirt_colour=pick(SHIRT_COLOURS),
        glasses=bool(rng.random() < GLASSES_PROBABILITY),
        yaw=round(float(rng.uniform(*YAW_RANGE)), 4),
        roll=round(float(rng.uniform(*ROLL_RANGE_DEG)), 3),
        scale=round(float(rng.uniform(*SCALE_RANGE)), 4),
        seed=int(rng.integers(0, 2**31 - 1)),
    )


def params_for_index(seed: int, stream: str, index: int) -> FaceParams:
    """The parameters of image ``index`` of ``stream`` ('train_photo', 'train_anime' or 'test').

    Each index has its own seed (dataset seed, stream, index), so any image can
    be regenerated alone and the two training streams are independent.
    """
    if stream not in _STREAM_IDS:
        raise ValueError(f"unknown stream {stream!r}; expected one of {sorted(_STREAM_IDS)}")
    return sample_params(np.random.default_rng([seed, _STREAM_IDS[stream], index]))

