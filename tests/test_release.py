"""Release files: only what inference needs, the same translations bit for bit, loadable everywhere, by URL too."""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

import twingan
from twingan.checkpoint import load_tensors, read_meta
from twingan.cli.main import main
from twingan.data.image_io import iter_image_files, load_image
from twingan.errors import CheckpointError, ConfigError
from twingan.inference import Translator
from twingan.inference.release import card_path
from twingan.metrics.evaluate import evaluate_checkpoint, format_table

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def release(tiny_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release") / "tiny.safetensors"
    assert main(["export", str(tiny_checkpoint), "--format", "release", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def photos(synthetic_root) -> list:
    return [load_image(f) for f in sorted(iter_image_files(synthetic_root / "test" / "photo"))]


def header(path: Path) -> str:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()["twingan"]


def test_release_holds_only_the_ema_translator(release, tiny_checkpoint, synthetic_root):
    ema = load_tensors(tiny_checkpoint, prefix="ema.")
    with safe_open(str(release), framework="pt") as f:
        names = set(f.keys())
    assert names == {f"ema.{k}" for k in ema}  # no model., disc., optim. or rng. tensors
    released = load_tensors(release, prefix="ema.")
    assert {"latent_mean", "latent_std"} <= set(released)  # the embedding's calibrated statistics travel too
    for name, tensor in ema.items():
        assert released[name].dtype == tensor.dtype and torch.equal(released[name], tensor), name
    meta = read_meta(release)
    training = read_meta(tiny_checkpoint)
    assert meta["kind"] == "release" and meta["format_version"] == 2
    assert meta["model_config"] == training["model_config"]
    assert not {"config", "optimizers", "rng", "scalers", "data"} & set(meta)
    text = header(release)
    for local in (str(synthetic_root), str(Path(tiny_checkpoint).parent), str(Path(tiny_checkpoint).parents[1])):
        assert local not in text, f"the release names a local path: {local}"
    assert meta["training"]["synthetic_only"] and meta["training"]["style_domains"] == {"photo": "human",
                                                                                       "anime": "anime"}
    assert release.stat().st_size < 0.5 * Path(tiny_checkpoint).stat().st_size


def test_release_translates_and_embeds_bit_for_bit(release, tiny_checkpoint, photos):
    trained, released = Translator.load(tiny_checkpoint, device="cpu"), twingan.load(release, device="cpu")
    for to, src in (("anime", "human"), ("human", "anime")):
        x = trained.preprocess(photos)
        assert torch.equal(released.translate_tensor(x, to, src), trained.translate_tensor(x, to, src))
    for a, b in zip(released.translate(photos, to="anime"), trained.translate(photos, to="anime")):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.array_equal(released.embed(photos, "human"), trained.embed(photos, "human"))
    with pytest.raises(CheckpointError, match="holds only the EMA translator"):
        twingan.load(release, device="cpu", weights="model")


def test_card_and_scores_match_twingan_eval(release, tiny_checkpoint, synthetic_root, tmp_path, capsys):
    card = card_path(release).read_text()
    expected = evaluate_checkpoint(tiny_checkpoint, baselines=True, device="cpu")["scores"]
    assert read_meta(release)["scores"] == expected
    assert "human (photo), anime (anime)" in card and "16x16 px" in card and "synthetic faces only" in card
    assert format_table(expected) in card
    # `twingan eval` of the release (it carries no data path: the test set is named) gives the same scores.
    out = tmp_path / "eval.json"
    assert main(["eval", str(release), "--synthetic", str(synthetic_root), "--baselines", "--json", str(out),
                 "--device", "cpu", "--quiet"]) == 0
    assert json.loads(out.read_text())["scores"] == expected
    assert main(["eval", str(release), "--device", "cpu", "--quiet"]) == 1
    assert "--synthetic ROOT" in capsys.readouterr().err


def test_export_release_cli_reports_the_size_and_refuses_direction_options(tiny_checkpoint, tmp_path, capsys):
    checkpoint = tmp_path / "run.safetensors"
    shutil.copy(tiny_checkpoint, checkpoint)
    assert main(["export", str(checkpoint), "--format", "release", "--no-eval"]) == 0
    text = capsys.readouterr().out
    release = tmp_path / "run.release.safetensors"  # the default name, beside the checkpoint
    assert f"wrote {release}" in text and "the training checkpoint is" in text and "% of it" in text
    assert "unscored (scoring switched off by --no-eval; see the card)" in text
    assert "Not scored when the release was made (scoring switched off by --no-eval)" in card_path(release).read_text()
    assert read_meta(release)["scores"] is None
    assert main(["export", str(checkpoint), "--format", "release", "--to", "anime"]) == 1
    assert "a release holds every one" in capsys.readouterr().err
    assert main(["export", str(release), "--format", "release", "--out", str(tmp_path / "again.safetensors")]) == 1
    assert "is a release file already" in capsys.readouterr().err
    assert main(["export", str(checkpoint), "--format", "pt2"]) == 1
    assert "--to" in capsys.readouterr().err


def test_commands_accept_a_release(release, synthetic_root, tmp_path, capsys):
    gallery = synthetic_root / "test" / "anime"
    store, index = tmp_path / "anime.emb", tmp_path / "anime.twgidx"
    assert main(["embed", str(release), str(gallery), "--domain", "anime", "--out", str(store), "--device", "cpu",
                 "--no-progress"]) == 0
    assert main(["index", "build", str(store), "--out", str(index), "--kind", "flat"]) == 0
    query = sorted(gallery.glob("*.png"))[0]
    capsys.readouterr()
    assert main(["index", "query", str(index), str(query), "--checkpoint", str(release), "--domain", "anime",
                 "--k", "1", "--device", "cpu"]) == 0
    assert query.name in capsys.readouterr().out  # a gallery face is its own nearest neighbour
    out = tmp_path / "out"
    assert main(["translate", str(release), str(synthetic_root / "test" / "photo"), "--to", "anime", "--out",
                 str(out), "--no-detect", "--no-progress"]) == 0
    assert len(list(out.glob("*.png"))) == 4


def test_a_release_and_its_training_checkpoint_share_indexes(release, tiny_checkpoint, synthetic_root, tmp_path,
                                                               capsys):
    """The release embeds exactly as its checkpoint does, so an index built with one is searched with the other,
    by `twingan index query` and by the web demo (`twingan serve --index`)."""
    from twingan.search import Index
    from twingan.web.handlers import WebDemo

    gallery = synthetic_root / "test" / "anime"
    query = sorted(gallery.glob("*.png"))[0]
    for embedder, searcher in ((tiny_checkpoint, release), (release, tiny_checkpoint)):
        store, index = tmp_path / f"{embedder.stem}.emb", tmp_path / f"{embedder.stem}.twgidx"
        assert main(["embed", str(embedder), str(gallery), "--domain", "anime", "--out", str(store), "--device",
                     "cpu", "--no-progress"]) == 0
        assert main(["index", "build", str(store), "--out", str(index), "--kind", "flat"]) == 0
        capsys.readouterr()
        assert main(["index", "query", str(index), str(query), "--checkpoint", str(searcher), "--domain", "anime",
                     "--k", "1", "--device", "cpu"]) == 0
        assert query.name in capsys.readouterr().out
        WebDemo(Translator.load(searcher, device="cpu"), Index.load(index, device="cpu")).close()


def test_torch_hub_loads_a_release(release, photos):
    hub = torch.hub.load(str(REPO_ROOT), "twingan", source="local", pretrained=str(release))
    direct = twingan.load(release, device="cpu")
    assert np.array_equal(np.asarray(hub.translate(photos[0], to="anime")),
                          np.asarray(direct.translate(photos[0], to="anime")))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test's output stays readable
        pass


@pytest.fixture
def file_server(tmp_path):
    """An HTTP server on a free loopback port serving ``tmp_path / "served"``; yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_is_downloaded_once_and_checked(release, photos, file_server, tmp_path, monkeypatch):
    served, base = file_server
    digest = hashlib.sha256(release.read_bytes()).hexdigest()
    shutil.copy(release, served / f"tiny-{digest[:10]}.safetensors")
    shutil.copy(release, served / "tiny.safetensors")
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    cache = tmp_path / "hub" / "checkpoints"

    by_name = torch.hub.load(str(REPO_ROOT), "twingan", source="local",
                             pretrained=f"{base}/tiny-{digest[:10]}.safetensors")
    assert by_name.path == cache / f"tiny-{digest[:10]}.safetensors"
    expected = twingan.load(release, device="cpu").translate(photos[0], to="anime")
    assert np.array_equal(np.asarray(by_name.translate(photos[0], to="anime")), np.asarray(expected))
    by_hash = twingan.load(f"{base}/tiny.safetensors", device="cpu", sha256=digest)
    assert by_hash.path == cache / "tiny.safetensors"
    (served / "tiny.safetensors").unlink()  # a second load uses the cached file
    assert twingan.load(f"{base}/tiny.safetensors", device="cpu", sha256=digest).path == by_hash.path

    shutil.copy(release, served / "other.safetensors")
    with pytest.raises(CheckpointError, match="does not match its sha256"):
        twingan.load(f"{base}/other.safetensors", device="cpu", sha256="0" * 64)
    assert not (cache / "other.safetensors").exists() and not list(cache.glob("*.partial"))
    with pytest.raises(ConfigError, match="give the file's sha256"):
        twingan.load(f"{base}/other.safetensors", device="cpu")


def test_a_url_without_a_network_fails_clearly(tmp_path, monkeypatch):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match="download failed .*download the file elsewhere and pass its path"):
        twingan.load(f"http://127.0.0.1:{port}/model.safetensors", device="cpu", sha256="ab" * 32)


class _SlowServer:
    """A loopback HTTP server whose answer can be slow: ``mode`` 'silent' accepts and never answers, 'trickle'
    sends one byte every 0.1 s, 'big' sends ``size`` bytes (announced or not)."""

    def __init__(self, mode: str, size: int = 1000, announce: bool = True) -> None:
        self.mode, self.size, self.announce = mode, size, announce
        self.sent = 0
        self.stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/model.safetensors"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(4096)
            if self.mode == "silent":
                self.stop.wait(60)
                return
            length = f"Content-Length: {self.size}\r\n" if self.announce else ""
            conn.sendall(f"HTTP/1.1 200 OK\r\n{length}Connection: close\r\n\r\n".encode())
            try:
                while self.sent < self.size and not self.stop.is_set():
                    block = 1 if self.mode == "trickle" else min(65536, self.size - self.sent)
                    conn.sendall(b"x" * block)
                    self.sent += block
                    if self.mode == "trickle":
                        time.sleep(0.1)
            except OSError:  # the client gave up
                pass

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def load_in_thread(*args, **kwargs):
    """twingan.load in a thread: (finished within 30 s, what it raised)."""
    outcome = {}

    def target():
        try:
            twingan.load(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the test looks at what was raised
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(30)
    return not thread.is_alive(), outcome.get("error")


@pytest.mark.parametrize(("mode", "reason"), [("silent", "no answer within 1 s"),
                                              ("trickle", "the server sends too slowly")])
def test_a_download_from_a_server_that_never_answers_or_trickles_gives_up(tmp_path, monkeypatch, mode, reason):
    from twingan.inference import download

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(download, "TIMEOUT_S", 1.0)
    monkeypatch.setattr(download, "PROGRESS_WINDOW_S", 1.0)
    server = _SlowServer(mode)
    try:
        finished, error = load_in_thread(server.url, device="cpu", sha256="ab" * 32)
    finally:
        server.close()
    assert finished, "the download hung"
    assert isinstance(error, CheckpointError) and reason in str(error), error
    assert list((tmp_path / "hub" / "checkpoints").iterdir()) == []


@pytest.mark.parametrize("announce", [True, False], ids=["announced", "unannounced"])
def test_a_download_larger_than_its_bound_is_refused_early(tmp_path, monkeypatch, announce):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    server = _SlowServer("big", size=64_000_000, announce=announce)
    try:
        finished, error = load_in_thread(server.url, device="cpu", sha256="ab" * 32, max_download_bytes=200_000)
    finally:
        server.close()
    assert finished and isinstance(error, CheckpointError), error
    reason = "announces 64000000 bytes, more than the bound of 200000" if announce else \
        "larger than the bound of 200000 bytes"
    assert reason in str(error)
    assert server.sent < 32_000_000  # it stopped reading long before the end (socket buffers took the rest)
    assert list((tmp_path / "hub" / "checkpoints").iterdir()) == []


def test_a_killed_downloads_leftovers_are_removed_by_the_next_download(release, file_server, tmp_path, monkeypatch):
    """A SIGTERM mid-download leaves the temporary file (no cleanup runs); so did torch.hub's .partial files of
    earlier versions. The next download into the cache removes both."""
    served, base = file_server
    shutil.copy(release, served / "tiny.safetensors")
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    ours = cache / f".tw.{int(dead.stdout)}.k1ll3d.tmp.safetensors"
    legacy = cache / "other.safetensors.0123456789abcdef0123456789abcdef.partial"
    for leftover in (ours, legacy):
        leftover.write_bytes(b"half a download")
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    digest = hashlib.sha256(release.read_bytes()).hexdigest()
    assert twingan.load(f"{base}/tiny.safetensors", device="cpu", sha256=digest).path == cache / "tiny.safetensors"
    assert sorted(p.name for p in cache.iterdir()) == ["tiny.safetensors"]


def test_training_summary_of_real_data_names_no_path():
    from twingan.inference.release import describe_training, training_summary

    meta = {"kind": "training", "progress": {"images_seen": 12000, "resolution": 256}, "config": {
        "name": "selfie2anime", "seed": 3,
        "data": {"synthetic": None, "domains": {
            "human": {"kind": "celeba", "root": "/data/celeba", "split": "train"},
            "anime": {"kind": "getchu", "root": "/home/me/anime", "split": "all"}}}}}
    summary = training_summary(meta)
    assert summary["style_domains"] is None and not summary["synthetic_only"]
    assert "/data" not in json.dumps(summary) and "/home" not in json.dumps(summary)
    line = describe_training(summary)
    assert line == "Trained for 12,000 images on human: a celeba dataset, train split; anime: a getchu dataset, all split."
