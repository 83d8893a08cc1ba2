"""Domain profiles: how the faces of a domain's pictures are found and cropped.

A profile belongs to a domain, not to its name: ``data.domains.<name>.profile``
in the training config, recorded in every checkpoint and release under
:data:`META_KEY`. The profiles:

* ``photo``: photos of people. MTCNN finds the faces and the 5-point alignment
  crops them (`twingan prep photo`); `translate`, `embed --detect`, the index
  query and the web demo detect and align faces of such pictures.
* ``anime``: anime art, cropped for training with the lbpcascade_animeface
  cascade (`twingan prep anime`, which needs the cascade file).
* ``cat``: cat photos with the CAT dataset's keypoint files (`twingan prep cat`).
* ``none``: pictures that are crops already.

Only ``photo`` pictures are searched for faces at inference time: the anime
cascade is a file the user supplies and cat keypoints come with the dataset,
so pictures of the other profiles are taken as face crops (the centre square),
as they always were.

A domain without a profile (config ``null``, or a checkpoint written before
profiles existed) gets the one its name implied before: ``human`` -> photo,
``anime`` -> anime, ``cat`` -> cat, any other name -> none.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from twingan.errors import ConfigError

PHOTO, ANIME, CAT, NONE = "photo", "anime", "cat", "none"
PROFILES = (PHOTO, ANIME, CAT, NONE)
DETECTING_PROFILES = (PHOTO,)
"""Profiles whose pictures are searched for faces when translating, embedding and searching."""
NAME_PROFILES = {"human": PHOTO, "anime": ANIME, "cat": CAT}
"""The profile a domain name implied before profiles existed; other names: none."""
META_KEY = "domain_profiles"
"""Checkpoint metadata key: domain name -> profile."""


def derive_profile(domain: str) -> str:
    """The profile a domain without one gets from its name (see :data:`NAME_PROFILES`)."""
    return NAME_PROFILES.get(domain, NONE)


def check_profile(value: Any, key: str) -> str | None:
    """``value`` when it is a profile or None (derive); else a one-line ConfigError naming ``key``."""
    if value is None or value in PROFILES:
        return value
    raise ConfigError(f"{key}={value!r} is not a face profile; use one of {', '.join(PROFILES)} or null (from the name)")


def resolve_profiles(declared: Mapping[str, str | None]) -> dict[str, str]:
    """Domain name -> profile, a None (or missing) profile derived from the name."""
    return {name: check_profile(profile, f"profile of domain {name!r}") or derive_profile(name)
            for name, profile in declared.items()}


def checkpoint_profiles(meta: Mapping[str, Any], domains: Iterable[str]) -> dict[str, str]:
    """The profiles of ``domains`` that a checkpoint's metadata records; derived from the names for a checkpoint
    that records none (written before profiles existed)."""
    recorded = meta.get(META_KEY) or {}
    return resolve_profiles({name: recorded.get(name) for name in domains})


def detects_faces(profile: str) -> bool:
    """Whether pictures of this profile are searched for faces at inference time."""
    return profile in DETECTING_PROFILES
