"""The photo-level Python API: the same avatars, side-by-sides and paste-backs as `twingan translate` writes."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

import twingan
from twingan.cli.main import main
from twingan.data.image_io import load_image
from twingan.errors import ConfigError, ImageLoadError
from twingan.inference.translator import NoFaceError


@pytest.fixture(scope="module")
def translator(tiny_checkpoint):
    return twingan.load(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The astronaut, two faces side by side (one mirrored), and a grey picture without a face, as files."""
    folder = tmp_path_factory.mktemp("photos")
    astronaut = Image.fromarray(data.astronaut())
    small = astronaut.resize((256, 256), Image.Resampling.BOX)
    pair = Image.new("RGB", (512, 256))
    pair.paste(small, (0, 0))
    pair.paste(small.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (256, 0))
    astronaut.save(folder / "astronaut.png")
    pair.save(folder / "pair.png")
    Image.new("RGB", (96, 80), (128, 128, 128)).save(folder / "blank.png")
    return folder


@pytest.fixture(scope="module")
def cli_outputs(tiny_checkpoint, photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_out")
    code = main(["translate", str(tiny_checkpoint), str(photos / "astronaut.png"), str(photos / "pair.png"),
                 str(photos / "blank.png"), "--to", "anime", "--out", str(out), "--paste-back", "--side-by-side",
                 "--no-progress"])
    assert code == 1  # the blank picture has no face
    return out


def pixels(image) -> np.ndarray:
    return np.asarray(image if isinstance(image, Image.Image) else load_image(image))


def test_one_photo_in_three_lines_matches_the_cli(translator, photos, cli_outputs):
    result = translator.translate_photo(photos / "astronaut.png", to="anime")
    assert np.array_equal(pixels(result.avatar), pixels(cli_outputs / "astronaut.png"))
    assert np.array_equal(pixels(result.pasted()), pixels(cli_outputs / "astronaut_pasted.png"))
    assert np.array_equal(pixels(result.side_by_side()), pixels(cli_outputs / "astronaut_side.png"))
    assert result.crops[0].face is not None and result.crops[0].face.score > 0.9
    as_pil = translator.translate_photo(Image.open(photos / "astronaut.png"), to="anime")
    as_array = translator.translate_photo(data.astronaut(), to="anime")
    for other in (as_pil, as_array):
        assert np.array_equal(pixels(other.avatar), pixels(result.avatar))
        assert np.array_equal(pixels(other.pasted()), pixels(result.pasted()))


def test_many_photos_at_once(translator, photos, cli_outputs):
    astronaut, pair, blank = translator.translate_photos(
        [photos / "astronaut.png", str(photos / "pair.png"), load_image(photos / "blank.png")], to="anime",
        batch_size=2,
    )
    assert np.array_equal(pixels(astronaut.avatar), pixels(cli_outputs / "astronaut.png"))
    assert len(pair.translations) == 2
    for k, avatar in enumerate(pair.translations):  # largest face first, as the CLI numbers them
        assert np.array_equal(pixels(avatar), pixels(cli_outputs / f"pair_face{k}.png"))
    assert np.array_equal(pixels(pair.pasted()), pixels(cli_outputs / "pair_pasted.png"))
    assert blank.translations == [] and "no face found" in blank.error
    with pytest.raises(NoFaceError, match="no face found"):
        blank.avatar


def test_no_face_fallbacks_and_errors(translator, photos):
    blank = photos / "blank.png"
    with pytest.raises(NoFaceError, match=r"blank\.png: no face found"):
        translator.translate_photo(blank, to="anime")
    centre = translator.translate_photo(blank, to="anime", fallback="center-crop")
    assert centre.crops[0].face is None
    expected = translator.translate(load_image(blank), to="anime")
    assert np.array_equal(pixels(centre.avatar), pixels(expected))
    crop = translator.translate_photo(blank, to="anime", detect=False)
    assert np.array_equal(pixels(crop.avatar), pixels(expected))
    anime = translator.translate_photo(blank, to="human")  # anime pictures are taken as crops: no detection
    assert np.array_equal(pixels(anime.avatar), pixels(translator.translate(load_image(blank), to="human")))
    with pytest.raises(ImageLoadError, match="file not found"):
        translator.translate_photos([blank, photos / "missing.jpg"], to="anime")
    with pytest.raises(ConfigError, match="a path, a PIL image or a uint8 numpy array"):
        translator.translate_photo(b"bytes", to="anime")
    with pytest.raises(ConfigError, match="without reference guidance"):
        translator.translate_photo(blank, to="anime", reference=blank)
