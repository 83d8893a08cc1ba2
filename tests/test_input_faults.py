"""Inputs under abuse: symbolic link loops, empty folders, unreadable and oddly named files, AVIF, decompression
bombs at the web upload, a translate run killed between the renames of one input's outputs."""
from __future__ import annotations

import errno
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from twingan.cli.main import main
from twingan.data.image_io import ACCEPTED_FORMATS, IMAGE_EXTENSIONS, load_image
from twingan.errors import ImageLoadError
from twingan.search.embeddings_store import EmbeddingStore
from twingan.web import WebInputError, WebLimits, decode_upload


def picture(seed: int, size: int = 24) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def folder_with_link_loops(root: Path) -> Path:
    """Two good pictures, a link to itself and two links to each other."""
    root.mkdir()
    picture(0).save(root / "a.png")
    picture(1).save(root / "z.png")
    (root / "self.png").symlink_to("self.png")
    (root / "ping.png").symlink_to("pong.png")
    (root / "pong.png").symlink_to("ping.png")
    return root


def translate_cli(checkpoint: Path, *inputs, out: Path, extra=()) -> int:
    return main(["translate", str(checkpoint), *map(str, inputs), "--to", "anime", "--out", str(out),
                 "--no-detect", "--no-progress", *extra])


def embed_cli(checkpoint: Path, *inputs, out: Path, extra=()) -> int:
    return main(["embed", str(checkpoint), *map(str, inputs), "--domain", "human", "--out", str(out),
                 "--device", "cpu", "--no-progress", *extra])


def test_a_symlink_loop_is_one_line_and_the_rest_is_translated(tiny_checkpoint, tmp_path, capsys):
    src = folder_with_link_loops(tmp_path / "in")
    out = tmp_path / "out"
    assert translate_cli(tiny_checkpoint, src, out=out) == 1
    captured = capsys.readouterr()
    assert "2 translated, 3 failed" in captured.out
    loops = [line for line in captured.err.splitlines() if "symbolic link loop" in line]
    assert sorted(line.split(":")[0] for line in loops) == [str(src / n) for n in ("ping.png", "pong.png", "self.png")]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "z.png"]


def test_a_symlink_loop_is_one_line_and_the_rest_is_embedded(tiny_checkpoint, tmp_path, capsys):
    src = folder_with_link_loops(tmp_path / "in")
    out = tmp_path / "store"
    assert embed_cli(tiny_checkpoint, src, out=out) == 1
    captured = capsys.readouterr()
    assert "2 embedded, 3 failed" in captured.out
    assert sum("symbolic link loop" in line for line in captured.err.splitlines()) == 3
    assert len(EmbeddingStore.open(out)) == 2


@pytest.mark.parametrize("command", [translate_cli, embed_cli])
def test_an_empty_folder_says_so_and_fails(tiny_checkpoint, tmp_path, capsys, command):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no pictures here")
    assert command(tiny_checkpoint, empty, out=tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert f"{empty}: no images found in this folder" in err and ".avif" in err


def test_a_file_that_cannot_be_read_is_not_called_corrupt(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    picture(2).save(path)

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(ImageLoadError, match="permission denied") as caught:
        load_image(path)
    assert "corrupt" not in str(caught.value)


def test_odd_file_names_are_printed_quoted_on_one_line(tiny_checkpoint, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    picture(3).save(src / "good.png")
    odd = src / "evil\n\x1b[2Jname.png"
    odd.write_bytes(b"not a picture")
    assert translate_cli(tiny_checkpoint, src, out=tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err
    [line] = [line for line in err.splitlines() if "evil" in line]
    assert line.startswith(repr(str(odd))) and "not an image" in line


def avif_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    picture(seed, 32).save(buffer, format="AVIF", quality=90)
    return buffer.getvalue()


@pytest.mark.skipif("AVIF" not in ACCEPTED_FORMATS, reason="this Pillow build has no AVIF decoder")
def test_avif_is_accepted_by_every_entry_point(tiny_checkpoint, tmp_path, capsys):
    assert ".avif" in IMAGE_EXTENSIONS
    src = tmp_path / "in"
    src.mkdir()
    (src / "face.avif").write_bytes(avif_bytes(4))
    assert translate_cli(tiny_checkpoint, src, out=tmp_path / "out") == 0
    assert (tmp_path / "out" / "face.png").exists()
    assert embed_cli(tiny_checkpoint, src, out=tmp_path / "store") == 0
    assert len(EmbeddingStore.open(tmp_path / "store")) == 1
    work = tmp_path / "uploads"
    work.mkdir()
    assert decode_upload(avif_bytes(5), work, WebLimits()).size == (32, 32)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels (1-bit gray) and holds none: a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + end


def test_a_decompression_bomb_upload_gets_the_refusal_of_the_cli(tmp_path):
    bomb = png_header_only(40_000, 40_000)
    file = tmp_path / "bomb.png"
    file.write_bytes(bomb)
    with pytest.raises(ImageLoadError) as cli:
        load_image(file, max_pixels=WebLimits().max_pixels)  # the CLI, given the web's --max-pixels
    work = tmp_path / "uploads"
    work.mkdir()
    with pytest.raises(WebInputError) as web:
        decode_upload(bomb, work, WebLimits())
    assert "too large" in cli.value.reason and cli.value.reason in str(web.value)
    assert list(work.iterdir()) == []


KILL_AT_FIRST_PUBLISH = """
import os, signal, sys
from pathlib import Path
out = Path(sys.argv[1]).resolve()
real_replace = os.replace
def replace(src, dst):
    real_replace(src, dst)
    if Path(dst).resolve().parent == out:
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from twingan.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def test_a_translate_killed_between_two_renames_is_redone_and_leaves_no_temporary(tiny_checkpoint, tmp_path,
                                                                                    capsys):
    src = tmp_path / "in"
    src.mkdir()
    picture(6).save(src / "a.png")
    out = tmp_path / "out"
    args = ["translate", str(tiny_checkpoint), str(src), "--to", "anime", "--out", str(out), "--no-detect",
            "--side-by-side", "--no-progress"]
    killed = subprocess.run([sys.executable, "-c", KILL_AT_FIRST_PUBLISH, str(out), *args], capture_output=True,
                            text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr[-2000:]
    published = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    assert published == ["a_side.png"]  # the main output comes last: its absence says the input is not done
    assert [p for p in out.iterdir() if p.name.startswith(".")], "the kill left the main output's temporary file"
    assert main(args) == 0
    assert "1 translated" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a_side.png"]


def test_an_embed_write_that_fails_leaves_no_orphan_paths_file(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    picture(7).save(src / "a.png")
    out = tmp_path / "store"
    real_save = np.save

    def disk_full(fh, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", disk_full)
    assert embed_cli(tiny_checkpoint, src, out=out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on the device" in err[0] and "shard_000000" in err[0], err
    assert sorted(p.name for p in out.iterdir()) == ["meta.json"]
    monkeypatch.setattr(np, "save", real_save)
    (out / "shard_000000.paths.json").write_text(json.dumps(["/gone.png"]))  # as an earlier version left it
    assert embed_cli(tiny_checkpoint, src, out=out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "shard_000000.npy", "shard_000000.paths.json"]
    assert len(EmbeddingStore.open(out)) == 1


def test_embed_detect_without_a_face_suggests_an_option_embed_has(tiny_checkpoint, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(src / "blank.png")
    assert embed_cli(tiny_checkpoint, src, out=tmp_path / "store", extra=["--detect"]) == 1
    [line] = [line for line in capsys.readouterr().err.splitlines() if "blank.png" in line]
    assert "no face found" in line and "without --detect" in line
    assert "--no-detect" not in line and "--fallback" not in line


def test_the_web_scratch_folder_is_pruned_to_its_bound_oldest_first(tiny_checkpoint, tmp_path):
    import os
    import time

    from twingan.inference import Translator
    from twingan.web import WebDemo
    from twingan.web.handlers import prune_folder

    folder = tmp_path / "scratch"
    (folder / "sub").mkdir(parents=True)
    for i in range(5):
        file = folder / "sub" / f"upload{i}"
        file.write_bytes(b"x" * 1000)
        os.utime(file, (1000 + i, 1000 + i))
    assert prune_folder(folder, 2500) == 3000
    assert sorted(p.name for p in (folder / "sub").iterdir()) == ["upload3", "upload4"]

    demo = WebDemo(Translator.load(tiny_checkpoint, device="cpu"),
                   limits=WebLimits(max_stored_bytes=50_000, prune_every_s=0.05))
    try:
        uploads = demo.workdir / "gradio" / "abc"
        uploads.mkdir(parents=True)
        for i in range(30):  # a crowd: 30 uploads of 10 kB
            (uploads / f"photo{i}.png").write_bytes(b"x" * 10_000)
        deadline = time.monotonic() + 10
        while sum(p.stat().st_size for p in uploads.iterdir()) > 50_000:
            assert time.monotonic() < deadline, "the scratch folder was not pruned"
            time.sleep(0.05)
    finally:
        demo.close()
    assert not demo.workdir.exists()


INDEX_SAVE_WITH_A_FULL_DISK = """
import resource, signal, sys
import numpy as np
from twingan.errors import TwinGANError
from twingan.search import EmbeddingMeta, Index
vectors = np.random.default_rng(0).standard_normal((2000, 64)).astype(np.float32)
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
index = Index.build(vectors, [f"p{i}.png" for i in range(2000)], EmbeddingMeta("0" * 64, "full", 64),
                    kind="flat", domain="anime", device="cpu")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
try:
    index.save(sys.argv[1])
except TwinGANError as exc:
    sys.exit(str(exc))
"""


def test_an_index_write_that_fails_is_one_line_and_leaves_nothing(tmp_path):
    done = subprocess.run([sys.executable, "-c", INDEX_SAVE_WITH_A_FULL_DISK, str(tmp_path / "g.index")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == f"cannot write {tmp_path / 'g.index'}: file too large for this file system or " \
                                  "the process's file size limit"
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- round three: decoders, pixel limits, long names

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\nshowpage\n"


@pytest.fixture
def fake_ghostscript(tmp_path, monkeypatch):
    """A `gs` first on PATH that records each run and fails (as a crafted PostScript file can make it); Pillow's
    EPS plugin looks for it afresh."""
    from PIL import EpsImagePlugin

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    runs = tmp_path / "gs-runs.txt"
    (bin_dir / "gs").write_text(f"#!/bin/sh\necho \"$@\" >> {runs}\nexit 3\n")
    (bin_dir / "gs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    return runs


def test_postscript_named_png_never_reaches_ghostscript_at_any_entry_point(tiny_checkpoint, tmp_path, capsys,
                                                                           fake_ghostscript):
    import twingan

    photos = tmp_path / "photos"
    photos.mkdir()
    picture(0).save(photos / "a.png")
    (photos / "selfie.png").write_bytes(EPS)
    with pytest.raises(ImageLoadError, match="selfie.png: not an image of a supported format \\(JPEG, PNG"):
        load_image(photos / "selfie.png")
    assert translate_cli(tiny_checkpoint, photos, out=tmp_path / "out") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "selfie.png" in line] == [
        f"{photos / 'selfie.png'}: not an image of a supported format ({', '.join(ACCEPTED_FORMATS)})"]
    assert (tmp_path / "out" / "a.png").is_file()
    assert embed_cli(tiny_checkpoint, photos, out=tmp_path / "store") == 1
    assert "1 embedded, 1 failed" in capsys.readouterr().out
    assert main(["prep", "check", str(photos)]) == 1
    assert "not an image of a supported format" in capsys.readouterr().out
    with pytest.raises(ImageLoadError, match="not an image of a supported format"):
        twingan.load(tiny_checkpoint, device="cpu").translate_photo(photos / "selfie.png", to="anime")
    (tmp_path / "web").mkdir()
    with pytest.raises(WebInputError, match="not an image of a supported format"):
        decode_upload(EPS, tmp_path / "web", WebLimits())
    assert not fake_ghostscript.exists(), "Ghostscript was run"


def test_any_error_a_decoder_raises_stays_with_its_file(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    """A decoder failing in a way Pillow does not wrap (here a struct.error from the PNG plugin on one file)
    is that file's one-line failure; the batch goes on."""
    from PIL import PngImagePlugin

    photos = tmp_path / "photos"
    photos.mkdir()
    for name, seed in (("a.png", 0), ("b.png", 1), ("c.png", 2)):
        picture(seed).save(photos / name)
    original = PngImagePlugin.PngImageFile.load

    def load(self):
        if Path(self.filename).name == "b.png":
            raise struct.error("unpack requires a buffer of 8 bytes")
        return original(self)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", load)
    assert translate_cli(tiny_checkpoint, photos, out=tmp_path / "out") == 1
    captured = capsys.readouterr()
    assert f"{photos / 'b.png'}: cannot be decoded (error: unpack requires a buffer of 8 bytes)" in captured.err
    assert "2 translated, 1 failed" in captured.out


def test_max_pixels_above_pillows_own_limit_is_the_limit(tmp_path, monkeypatch):
    """--max-pixels 200000000 refused a 100 MP picture because Pillow's own limit (89 MP) won. The same at a
    small scale: Pillow's limit at 1000 pixels, a 40x40 picture, max_pixels 5000."""
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)
    path = tmp_path / "big.png"
    picture(0, size=40).save(path)
    assert load_image(path, max_pixels=5000).size == (40, 40)
    assert PILImage.MAX_IMAGE_PIXELS == 1000  # what was set outside twingan comes back
    with pytest.raises(ImageLoadError, match="1600 pixels exceeds the limit of 1500"):
        load_image(path, max_pixels=1500)


def test_an_input_name_near_the_file_system_limit_is_translated(tiny_checkpoint, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    name = "x" * 235 + ".jpg"
    assert len(name.encode()) == 239
    picture(0).save(photos / name)
    assert translate_cli(tiny_checkpoint, photos, out=tmp_path / "out") == 0
    assert "1 translated, 0 failed" in capsys.readouterr().out
    assert (tmp_path / "out" / ("x" * 235 + ".png")).is_file()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x" * 235 + ".png"]


def test_an_out_folder_holding_the_inputs_translates_them_or_says_why_not(tiny_checkpoint, tmp_path, capsys,
                                                                         monkeypatch):
    """`translate photos --out .` from the folder holding photos/ printed "0 translated, 0 failed"."""
    monkeypatch.chdir(tmp_path)
    Path("photos").mkdir()
    picture(0).save("photos/a.png")
    picture(1).save("photos/b.jpg")
    assert translate_cli(tiny_checkpoint, "photos", out=Path(".")) == 0
    assert "2 translated, 0 failed" in capsys.readouterr().out
    assert Path("a.png").is_file() and Path("b.png").is_file()
    assert translate_cli(tiny_checkpoint, "photos", out=Path("photos")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["twingan translate: error: --out photos is the input folder photos itself: the translations "
                   "would be mixed with the photos (and could replace them); choose another folder, e.g. "
                   "photos/translated"]
    assert translate_cli(tiny_checkpoint, "a.png", out=Path("."), extra=["--overwrite"]) == 1
    captured = capsys.readouterr()
    assert "a.png: its translation a.png would be written over an input; choose an --out folder apart from the " \
           "inputs" in captured.err
    assert "0 translated, 1 failed" in captured.out
    Path("photos/anime").mkdir()
    assert translate_cli(tiny_checkpoint, "photos", out=Path("photos/anime")) == 0  # earlier outputs are no inputs
    assert translate_cli(tiny_checkpoint, "photos", out=Path("photos/anime"), extra=["--overwrite"]) == 0
    assert sorted(p.name for p in Path("photos/anime").iterdir()) == ["a.png", "b.png"]
