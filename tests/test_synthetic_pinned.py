"""The synthetic renderer's pixels, pinned: a refactoring of the painters must not move a single pixel.

The digests cover faces 0..12 of the test stream of seed 0 (every hair style, mouth, background type, with and
without glasses) in both styles at a small, an odd and a large size. A deliberate change to the drawing bumps
``GENERATOR_VERSION`` and updates these digests; so may an upgrade of Pillow or NumPy that changes resampling.
"""
from __future__ import annotations

import hashlib

import pytest

from twingan.data.synthetic import params_for_index, render

FACES = range(13)
PINNED = {
    ("photo", 16): "76a38ae4db135ae4a72b9213898d8c821617c5c7941cdf20ed05a529a206b6a8",
    ("photo", 40): "ab38af1b9cc432c34a112ce8024e9227d5a90554109521ae3d2dc7dbeef7df62",
    ("photo", 128): "80f5a0848856304b28284ca58c097f2b6c69de98c8895a377362473878f67cff",
    ("anime", 16): "145beca9a0ef0099cd198274487652483e85e9db2455b25e5e09647b65df4d40",
    ("anime", 40): "8ede862ee539cda392d1db58565d59a48de16524e0aea0cf3783e4ddb98afd94",
    ("anime", 128): "b476a12b913de43ca6f95140a9f03c7865d2f3dd344ae15dc94f207a4bd83243",
}


@pytest.mark.parametrize(("style", "size"), sorted(PINNED))
def test_rendered_faces_match_their_pinned_digest(style, size):
    digest = hashlib.sha256()
    for index in FACES:
        digest.update(render(params_for_index(0, "test", index), style, size).tobytes())
    assert digest.hexdigest() == PINNED[(style, size)]
