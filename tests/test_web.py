"""The web demo: its handlers called directly, then the real page in headless Chromium.

The handler tests compare what the page would show with the same numbers
computed another way (the translator on the face crop, numpy brute-force
cosine search over the gallery). The browser test starts `twingan serve` on a
free loopback port, uploads skimage's astronaut, waits for the avatar and the
search results, checks the error messages, and checks that the page asked
nothing of any host but the server.
"""
from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from twingan.checkpoint import file_sha256
from twingan.cli.main import main
from twingan.cli.serve import _is_loopback
from twingan.data.image_io import iter_image_files, load_image
from twingan.errors import ConfigError
from twingan.faces import FaceDetector
from twingan.inference import Translator
from twingan.search import EmbeddingMeta, EmbeddingMismatchError, Index
from twingan.web import WebDemo, WebInputError, WebLimits, decode_upload

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost"}
BROWSER_K = 3


def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut(), "RGB")


def png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def translator(tiny_checkpoint) -> Translator:
    return Translator.load(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def gallery(synthetic_root, translator) -> tuple[list[str], np.ndarray]:
    """The synthetic anime faces (paths relative to the dataset root) and their embeddings."""
    files = list(iter_image_files(synthetic_root / "train" / "anime")) + list(
        iter_image_files(synthetic_root / "test" / "anime")
    )
    vectors = translator.embed([load_image(f) for f in files], domain="anime", kind="full")
    return [f.relative_to(synthetic_root).as_posix() for f in files], vectors


@pytest.fixture(scope="module")
def index_file(tiny_checkpoint, translator, gallery, tmp_path_factory) -> Path:
    paths, vectors = gallery
    meta = EmbeddingMeta(file_sha256(tiny_checkpoint), "full", translator.embedding_dim("full"))
    path = tmp_path_factory.mktemp("web_index") / "anime.twgidx"
    Index.build(vectors, paths, meta, domain="anime", kind="flat", device="cpu").save(path)
    return path


@pytest.fixture(scope="module")
def demo(translator, index_file, synthetic_root):
    web = WebDemo(translator, Index.load(index_file, device="cpu"), detector=FaceDetector(device="cpu"),
                  gallery_root=synthetic_root)
    yield web
    web.close()


# ------------------------------------------------------------------ uploads


def test_decode_upload_returns_the_exact_pixels_and_leaves_no_file(tmp_path):
    photo = astronaut()
    decoded = decode_upload(png_bytes(photo), tmp_path, WebLimits())
    assert decoded.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(photo))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"hello, this is a text file called photo.png", "not an image"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\nshowpage\n", "not an image"),
        (png_bytes(Image.new("RGB", (32, 32)))[:60], "truncated or corrupt"),
        (b"", "empty"),
    ],
    ids=["text", "eps", "truncated-png", "empty"],
)
def test_decode_upload_refuses_what_is_not_a_supported_image(tmp_path, payload, reason):
    with pytest.raises(WebInputError, match=reason):
        decode_upload(payload, tmp_path, WebLimits())
    assert list(tmp_path.iterdir()) == []


def test_eps_is_refused_although_pillow_would_open_it(tmp_path):
    """EPS decoding runs Ghostscript: the upload check must stop it even though Pillow recognises the file."""
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\nshowpage\n"
    assert Image.open(io.BytesIO(eps)).format == "EPS"
    with pytest.raises(WebInputError, match="supported format"):
        decode_upload(eps, tmp_path, WebLimits())


def test_decode_upload_size_limits(tmp_path):
    small = png_bytes(Image.new("RGB", (20, 20), (10, 20, 30)))
    with pytest.raises(WebInputError, match="too large.*limit is"):
        decode_upload(small, tmp_path, WebLimits(max_upload_bytes=len(small) - 1))
    with pytest.raises(WebInputError, match="too large: 20x20"):
        decode_upload(small, tmp_path, WebLimits(max_pixels=399))
    assert decode_upload(small, tmp_path, WebLimits(max_upload_bytes=len(small), max_pixels=400)).size == (20, 20)
    with pytest.raises(WebInputError, match="too small"):
        decode_upload(small, tmp_path, WebLimits(min_side=21))


def test_limits_must_be_positive():
    with pytest.raises(ConfigError, match="queue_size"):
        WebLimits(queue_size=0)


# ------------------------------------------------------------------ translate


def test_translate_a_photo_matches_the_translator_on_the_detected_face(demo, translator):
    photo = astronaut()
    out = demo.translate(png_bytes(photo), "human", "anime")
    res = translator.resolution
    assert len(out.faces) == len(out.avatars) == 1
    assert out.faces[0].size == out.avatars[0].size == (res, res)
    expected = translator.translate(out.faces[0], to="anime", src="human")
    np.testing.assert_array_equal(np.asarray(out.avatars[0]), np.asarray(expected))
    side = np.asarray(out.side_by_side)
    assert side.shape == (res, 2 * res, 3)
    np.testing.assert_array_equal(side[:, :res], np.asarray(out.faces[0]))
    np.testing.assert_array_equal(side[:, res:], np.asarray(out.avatars[0]))
    pasted, original = np.asarray(out.pasted), np.asarray(photo)
    assert pasted.shape == original.shape
    np.testing.assert_array_equal(pasted[-100:, -100:], original[-100:, -100:])  # far from the face: untouched
    assert np.abs(pasted.astype(int) - original.astype(int)).mean() > 0.5  # the face itself was replaced
    assert "1 face found" in out.message


def test_translate_without_a_face_says_so_and_without_detection_uses_the_centre(demo, translator):
    gray = Image.new("RGB", (96, 64), (128, 128, 128))
    with pytest.raises(WebInputError, match="No face found in the 96x64 picture"):
        demo.translate(png_bytes(gray), "human", "anime")
    out = demo.translate(png_bytes(gray), "human", "anime", detect=False)
    assert out.pasted is None and len(out.avatars) == 1
    expected = translator.translate(gray, to="anime", src="human")
    np.testing.assert_array_equal(np.asarray(out.avatars[0]), np.asarray(expected))


def test_translate_checks_domains_and_missing_upload(demo):
    with pytest.raises(WebInputError, match="No picture yet"):
        demo.translate(None, "human", "anime")
    with pytest.raises(ConfigError, match="'cat' is not a domain"):
        demo.translate(png_bytes(astronaut()), "human", "cat")


def test_the_page_says_what_the_model_was_trained_on(demo):
    line = demo.training_line()
    assert "synthetic faces only" in line and "no meaningful avatar for a real photo" in line


def test_examples_are_built_in_and_translate(demo, translator):
    examples = demo.examples()
    assert [(e.src, e.to, e.detect) for e in examples] == [
        ("human", "anime", True), ("human", "anime", False), ("human", "anime", False), ("anime", "human", False)
    ]
    assert examples[0].path.name == "astronaut.jpg" and examples[0].path.is_file()
    astronaut_example = demo.translate(examples[0].path.read_bytes(), "human", "anime")
    assert "1 face found" in astronaut_example.message
    for example in examples[1:]:
        assert example.path.is_relative_to(demo.workdir)  # drawn into the server's scratch folder
        out = demo.translate(example.path.read_bytes(), example.src, example.to, detect=example.detect)
        expected = translator.translate(load_image(example.path), to=example.to, src=example.src)
        np.testing.assert_array_equal(np.asarray(out.avatars[0]), np.asarray(expected))


def test_side_by_side_is_enlarged_for_the_page():
    pytest.importorskip("gradio", reason="the web demo needs the [web] extra")
    from twingan.web.app import SIDE_BY_SIDE_WIDTH, enlarged

    strip = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 64, 3), dtype=np.uint8))
    big = enlarged(strip)
    assert big.size == (64 * 20, 32 * 20) and big.width >= SIDE_BY_SIDE_WIDTH
    np.testing.assert_array_equal(np.asarray(big)[::20, ::20], np.asarray(strip))  # whole pixels, sharp


def test_default_domains_and_description(demo, tiny_checkpoint):
    assert demo.default_domains() == ("human", "anime")
    line = demo.describe()
    assert tiny_checkpoint.name in line and "human, anime" in line and "16x16 px" in line
    assert "28 faces (anime 28)" in line


# ------------------------------------------------------------------ search


def test_search_equals_numpy_brute_force(demo, translator, gallery, synthetic_root):
    paths, vectors = gallery
    out = demo.search(png_bytes(astronaut()), "human", "anime", 5)
    query = translator.embed(out.query_face, domain="human", kind="full")[0]
    scores = vectors @ query
    order = np.argsort(-scores, kind="stable")[:5]
    assert [hit.rank for hit in out.hits] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([hit.score for hit in out.hits], scores[order], atol=1e-5)
    assert [hit.path for hit in out.hits] == [paths[i] for i in order]
    for hit in out.hits:
        assert hit.found and hit.domain == "anime"
        np.testing.assert_array_equal(np.asarray(hit.image), np.asarray(load_image(synthetic_root / hit.path)))
        assert hit.caption == f"#{hit.rank} · {hit.score:.3f} · {hit.path}"


def test_search_rejects_bad_requests(demo, translator):
    photo = png_bytes(astronaut())
    with pytest.raises(WebInputError, match="between 1 and 24"):
        demo.search(photo, "human", "anime", 25)
    with pytest.raises(WebInputError, match="no 'human' faces"):
        demo.search(photo, "human", "human", 3)
    without_index = WebDemo(translator)
    try:
        with pytest.raises(WebInputError, match="without an index"):
            without_index.search(photo, "human", "anime", 3)
    finally:
        without_index.close()


def test_unreadable_gallery_file_shows_a_gray_tile(translator, index_file, tmp_path):
    demo = WebDemo(translator, Index.load(index_file, device="cpu"), gallery_root=tmp_path)  # files are not there
    try:
        out = demo.search(png_bytes(astronaut()), "human", "anime", 2, detect=False)
    finally:
        demo.close()
    assert len(out.hits) == 2
    assert not any(hit.found for hit in out.hits)
    assert all("(file unreadable)" in hit.caption for hit in out.hits)
    assert np.asarray(out.hits[0].image).max() == np.asarray(out.hits[0].image).min() == 128


def test_index_of_another_checkpoint_is_refused(translator, gallery, tmp_path):
    paths, vectors = gallery
    other = EmbeddingMeta("0" * 64, "full", vectors.shape[1])
    index = Index.build(vectors, paths, other, domain="anime", kind="flat", device="cpu")
    with pytest.raises(EmbeddingMismatchError, match="checkpoint_sha256"):
        WebDemo(translator, index)


# ------------------------------------------------------------------ the Gradio page (no browser)


def test_upload_field_reads_only_files_in_the_upload_folder(tmp_path, monkeypatch):
    gr = pytest.importorskip("gradio", reason="the web demo needs the [web] extra")
    from gradio.data_classes import ImageData

    from twingan.web.app import UploadField

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    field = UploadField(max_bytes=10)
    inside, outside = uploads / "a.png", tmp_path / "secret.txt"
    inside.write_bytes(b"0123456789abcdef")
    outside.write_bytes(b"secret")
    assert field.preprocess(ImageData(path=str(inside))) == b"0123456789a"  # max_bytes + 1: "too large" later
    for path in (outside, uploads / ".." / "secret.txt"):
        with pytest.raises(gr.Error, match="not uploaded to this server"):
            field.preprocess(ImageData(path=str(path)))
    encoded = "data:image/png;base64," + base64.b64encode(b"12345").decode()
    assert field.preprocess(ImageData(url=encoded)) == b"12345"
    with pytest.raises(gr.Error, match="too large"):
        field.preprocess(ImageData(url="data:image/png;base64," + base64.b64encode(b"x" * 40).decode()))
    assert field.preprocess(None) is None


def test_page_layout_queue_and_upload_field(demo, monkeypatch, tmp_path):
    pytest.importorskip("gradio", reason="the web demo needs the [web] extra")
    from twingan.web.app import build_app

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # build_app points it into the demo's folder; restored
    page = build_app(demo)
    assert os.environ["GRADIO_TEMP_DIR"] == str(demo.workdir / "gradio")
    config = page.get_config_file()
    by_id = {c["props"].get("elem_id"): c for c in config["components"] if c["props"].get("elem_id")}
    for name in ("translate-input", "search-input"):
        assert by_id[name]["type"] == "image"  # drawn by the page as a gr.Image
        assert by_id[name]["props"]["sources"] == ["upload", "webcam", "clipboard"]
    assert by_id["search-k"]["props"]["maximum"] == demo.limits.max_k
    assert page._queue.max_size == demo.limits.queue_size
    assert page._queue.default_concurrency_limit == demo.limits.concurrency
    assert config["analytics_enabled"] is False


# ------------------------------------------------------------------ CLI


def test_serve_cli_errors(tiny_checkpoint, capsys):
    assert main(["serve", str(tiny_checkpoint), "--port", "0"]) == 1
    assert "--port must be between 1 and 65535" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "loopback" in capsys.readouterr().out


def test_loopback_detection():
    assert _is_loopback("127.0.0.1") and _is_loopback("localhost") and _is_loopback("::1")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.168.1.2") and not _is_loopback("example.org")


# ------------------------------------------------------------------ the page in Chromium


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A `twingan serve` subprocess; ``stop()`` sends SIGTERM and returns the exit status."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path, url: str, scratch: Path) -> None:
        self.url, self.scratch, self.log_path = url, scratch, log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def server(tiny_checkpoint, index_file, synthetic_root, tmp_path):
    """`twingan serve` on a free loopback port (1 MB upload limit), its temporary files under ``scratch``."""
    port = free_port()
    scratch = tmp_path / "server-tmp"
    scratch.mkdir()
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, TMPDIR=str(scratch), PYTHONPATH=python_path)
    command = [sys.executable, "-m", "twingan", "serve", str(tiny_checkpoint), "--index", str(index_file),
               "--gallery-root", str(synthetic_root), "--port", str(port), "--device", "cpu", "--max-upload-mb", "1"]
    handle = Server(command, env, tmp_path / "serve.log", f"http://127.0.0.1:{port}/", scratch)
    try:
        _wait_until_up(handle)
        yield handle
    finally:
        handle.stop()


def _wait_until_up(server: Server, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"twingan serve exited with {server.proc.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(server.url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    pytest.fail(f"twingan serve did not answer within {timeout:.0f} s:\n{server.log()}")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed (apt-get install chromium; .ci/run does)")
def test_page_in_chromium(server, demo, tmp_path):
    from playwright.sync_api import sync_playwright

    photo_file = tmp_path / "astronaut.png"
    astronaut().save(photo_file)
    not_an_image = tmp_path / "holiday.png"
    not_an_image.write_bytes(b"this is text, whatever the name says")
    too_large = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)).save(too_large)
    assert too_large.stat().st_size > 2**20 > photo_file.stat().st_size
    expected = demo.translate(photo_file.read_bytes(), "human", "anime")
    expected_hits = demo.search(photo_file.read_bytes(), "human", "anime", BROWSER_K).hits

    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.on("request", lambda request: requested.append(request.url))
            page.goto(server.url)
            assert "domains human, anime" in page.inner_text("#model-info")
            assert "no meaningful avatar for a real photo" in page.inner_text("#trained-on")

            page.set_input_files("#translate-input input[type=file]", str(photo_file))
            page.click("#translate-button")
            page.wait_for_selector("#avatars img")
            assert "1 face found and translated" in page.inner_text("#translate-status")
            avatar_src = page.get_attribute("#avatars img", "src")
            served = Image.open(io.BytesIO(page.request.get(avatar_src).body())).convert("RGB")
            diff = np.abs(np.asarray(served, dtype=int) - np.asarray(expected.avatars[0], dtype=int))
            assert diff.max() <= 2  # the same model on the same crop (threading may move a value by a level)
            assert page.locator("#side-by-side img").count() == 1 and page.locator("#pasted img").count() == 1
            strip = page.locator("#side-by-side img").bounding_box()
            assert strip["width"] >= 0.9 * page.locator("#side-by-side").bounding_box()["width"]  # not a thumbnail

            page.reload()  # a built-in example, no photo of one's own: a drawn face, taken as a crop
            page.get_by_role("button", name="a synthetic photo face").first.click()
            page.wait_for_selector("#translate-input img")
            page.click("#translate-button")
            page.wait_for_function("document.querySelector('#translate-status').innerText.includes('Done')")
            assert "taken as a face crop" in page.inner_text("#translate-status")
            example = demo.examples()[1]
            expected_example = demo.translate(example.path.read_bytes(), "human", "anime", detect=False)
            avatar_src = page.get_attribute("#avatars img", "src")
            served = Image.open(io.BytesIO(page.request.get(avatar_src).body())).convert("RGB")
            diff = np.abs(np.asarray(served, dtype=int) - np.asarray(expected_example.avatars[0], dtype=int))
            assert diff.max() <= 2

            page.reload()
            page.set_input_files("#translate-input input[type=file]", str(not_an_image))
            page.click("#translate-button")
            page.wait_for_function("document.querySelector('#translate-status').innerText.includes('Error')")
            assert "could not be used as an image: not an image" in page.inner_text("#translate-status")

            page.set_input_files("#translate-input input[type=file]", str(too_large))
            page.get_by_text("exceed the maximum allowed size").wait_for()

            page.get_by_role("tab", name="Search").click()
            page.fill("#search-k input[type=number]", str(BROWSER_K))
            page.press("#search-k input[type=number]", "Enter")
            page.set_input_files("#search-input input[type=file]", str(photo_file))
            page.click("#search-button")
            page.wait_for_function("document.querySelector('#search-status').innerText.includes('Done')")
            items = page.locator("#search-results .gallery-item")
            assert items.count() == BROWSER_K
            captions = [items.nth(i).inner_text().strip() for i in range(BROWSER_K)]
            assert captions == [hit.caption.strip() for hit in expected_hits]
        finally:
            browser.close()

    assert server.stop() == 0, server.log()
    assert list(server.scratch.glob("twingan-web-*")) == []  # uploads and Gradio's cache went with the server
    hosts = {urlparse(u).hostname for u in requested if urlparse(u).scheme in ("http", "https", "ws", "wss")}
    assert hosts <= LOOPBACK_HOSTS, f"the page asked hosts other than the server: {hosts - LOOPBACK_HOSTS}"
    assert any("/gradio_api/upload" in u for u in requested)

