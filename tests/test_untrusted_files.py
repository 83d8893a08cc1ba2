"""Files that cannot be trusted: crafted checkpoints, edited headers and index footers, malformed metadata of
every file twingan reads. Each is refused in one line, before it costs memory, and nothing is silently converted."""
from __future__ import annotations

import errno
import hashlib
import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save

from twingan.checkpoint import load_tensors, load_translator, read_meta, save_checkpoint, weights_sha256
from twingan.cli.main import main
from twingan.errors import CheckpointError
from twingan.search import EmbeddingMeta, Index
from twingan.search.embeddings_store import EmbeddingStore
from twingan.search.index_file import IndexFileError

# ---------------------------------------------------------------- helpers: files rewritten as an attacker would


def raw_header(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def rewrite_header(src: Path, dst: Path, text: str, *, digest: str = "recompute") -> Path:
    """``src`` with its twingan JSON replaced by ``text``. ``digest``: 'recompute' (a crafted file, consistent
    with itself), 'keep' (an edit that left the old digest) or 'drop' (a header without one)."""
    tensors, metadata = raw_header(src)
    old = metadata.get("twingan_sha256")
    metadata["twingan"] = text
    if digest == "recompute":
        metadata["twingan_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    elif digest == "keep" and old is not None:
        metadata["twingan_sha256"] = old
    else:
        metadata.pop("twingan_sha256", None)
    dst.write_bytes(save(tensors, metadata=metadata))
    return dst


def edited(src: Path, dst: Path, edit, *, digest: str = "recompute") -> Path:
    header = json.loads(raw_header(src)[1]["twingan"])
    edit(header)
    return rewrite_header(src, dst, json.dumps(header), digest=digest)


def translate_one_line(checkpoint: Path, photo: Path, tmp_path: Path, capsys) -> str:
    """Run `twingan translate` on ``checkpoint``: it must fail with one line (no traceback); returns the line."""
    assert main(["translate", str(checkpoint), str(photo), "--to", "anime", "--out", str(tmp_path / "out"),
                 "--no-detect", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("twingan translate: error: "), err
    return err[0]


@pytest.fixture(scope="module")
def photo(synthetic_root) -> Path:
    return sorted((synthetic_root / "test" / "photo").glob("*.png"))[0]


@pytest.fixture(scope="module")
def fresh_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint as this version writes it (with the header's digest)."""
    path = tmp_path_factory.mktemp("fresh") / "tiny.safetensors"
    meta = {k: v for k, v in read_meta(tiny_checkpoint).items()
            if k not in ("format", "format_version", "tensor_sha256")}
    return save_checkpoint(path, load_tensors(tiny_checkpoint), meta)


# ---------------------------------------------------------------- memory before any check


@pytest.fixture
def no_real_layer(monkeypatch):
    """Fail as soon as a parameter is allocated anywhere but on the meta device (a layer of the real model)."""
    original = torch.nn.Parameter.__new__

    def watched(cls, data=None, requires_grad=True):
        param = original(cls, data, requires_grad)
        if param.device.type != "meta":
            raise AssertionError(f"a real layer ({tuple(param.shape)}) was built before the checkpoint was checked")
        return param

    monkeypatch.setattr(torch.nn.Parameter, "__new__", staticmethod(watched))


@pytest.mark.parametrize("change", [
    {"max_channels": 1024, "fmap_base": 2**20},
    {"max_channels": 2048, "fmap_base": 2**30},
    {"max_channels": 4096},
    {"mapping_layers": 100_000, "noise_dim": 8},
], ids=["wide", "fmap-2^30", "4096-channels", "1e5-mapping-layers"])
def test_a_crafted_architecture_is_refused_before_any_layer_is_built(fresh_checkpoint, tmp_path, change,
                                                                     no_real_layer):
    crafted = edited(fresh_checkpoint, tmp_path / "crafted.safetensors",
                     lambda h: h["model_config"].update(change))
    with pytest.raises(CheckpointError, match="do not match the stored architecture|beyond the sane bound"):
        load_translator(crafted)


@pytest.mark.parametrize("dtype", [torch.bool, torch.int8, torch.float64, torch.float16])
def test_a_tensor_of_a_dtype_twingan_never_writes_is_refused(fresh_checkpoint, tmp_path, dtype):
    tensors = load_tensors(fresh_checkpoint)
    name = next(k for k in sorted(tensors) if k.startswith("ema.") and tensors[k].dim() == 4)
    tensors[name] = tensors[name].to(dtype)
    meta = {k: v for k, v in read_meta(fresh_checkpoint).items()
            if k not in ("format", "format_version", "tensor_sha256")}
    odd = save_checkpoint(tmp_path / "odd.safetensors", tensors, meta)
    for load in (load_translator, load_tensors):
        with pytest.raises(CheckpointError, match=f"tensor '{name}' is stored as .*; twingan writes F32 there"):
            load(odd)


# ---------------------------------------------------------------- malformed checkpoint metadata


def _set(path: tuple, value):
    def edit(header):
        target = header
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    return edit


@pytest.mark.parametrize(("text_or_edit", "reason"), [
    ("[1, 2, 3]", "is a JSON list, not an object"),
    ('"twingan"', "is a JSON str, not an object"),
    (_set(("progress",), "done"), "progress: input should be an object"),
    (_set(("progress", "alpha"), "x"), "progress.alpha: input should be a valid number"),
    (_set(("progress", "alpha"), 5), "alpha .* must be within 0..1"),
    (_set(("progress", "resolution"), 1024), "progress resolution 1024 is not one of"),
    (_set(("domain_profiles",), "photo"), "domain_profiles: input should be an object"),
    (_set(("model_config", "max_channels"), 8.0), "max_channels: input should be a valid integer, got 8.0"),
    (_set(("model_config", "domains"), [1, 2]), "domains.0: input should be a valid string"),
    (_set(("format_version",), "2"), "format_version is '2' \\(str\\), not a whole number"),
    (_set(("source",), {"sha256": "not a hash"}), "sha256 must be 64 lowercase hex digits"),
], ids=["list", "string", "progress-string", "alpha-string", "alpha-5", "resolution", "profiles-string",
        "float-channels", "int-domains", "version-string", "source-hash"])
def test_malformed_checkpoint_metadata_is_one_line(fresh_checkpoint, photo, tmp_path, capsys, text_or_edit, reason):
    dst = tmp_path / "bad.safetensors"
    if isinstance(text_or_edit, str):
        bad = rewrite_header(fresh_checkpoint, dst, text_or_edit)
    else:
        bad = edited(fresh_checkpoint, dst, text_or_edit)
    line = translate_one_line(bad, photo, tmp_path, capsys)
    assert re.search(reason, line), line


def test_a_header_larger_than_any_twingan_writes_is_refused_unread(tmp_path, photo, capsys):
    path = tmp_path / "big-header.safetensors"
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    line = translate_one_line(path, photo, tmp_path, capsys)
    assert "its header claims 1099511627776 bytes" in line


# ---------------------------------------------------------------- the digest covers the metadata


def test_an_edited_checkpoint_header_is_refused(fresh_checkpoint, photo, tmp_path, capsys):
    swapped = edited(fresh_checkpoint, tmp_path / "swapped.safetensors",
                     lambda h: h.update(domain_profiles={"human": "none", "anime": "photo"}), digest="keep")
    assert "its header does not match the checksum written with it" in \
        translate_one_line(swapped, photo, tmp_path, capsys)


@pytest.fixture(scope="module")
def release(fresh_checkpoint, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("releases") / "tiny.release.safetensors"
    assert main(["export", str(fresh_checkpoint), "--format", "release", "--out", str(path), "--no-eval"]) == 0
    return path


def test_a_forged_release_source_is_refused_or_not_believed(release, tmp_path):
    """A release claiming another model's checkpoint as its source would query that model's indexes. Edited, its
    header no longer matches its digest; with the digest removed, the claim is not believed."""
    other = "f" * 64
    forged = edited(release, tmp_path / "forged.safetensors", lambda h: h["source"].update(sha256=other),
                    digest="keep")
    with pytest.raises(CheckpointError, match="header does not match the checksum"):
        read_meta(forged)
    stripped = edited(release, tmp_path / "stripped.safetensors", lambda h: h["source"].update(sha256=other),
                      digest="drop")
    assert weights_sha256(stripped, read_meta(stripped)) == hashlib.sha256(stripped.read_bytes()).hexdigest()
    assert weights_sha256(release, read_meta(release)) == read_meta(release)["source"]["sha256"]


# ---------------------------------------------------------------- index files and embeddings stores


DIM = 8


def small_index(path: Path) -> Path:
    vectors = np.random.default_rng(0).standard_normal((6, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = Index.build(vectors, [f"p{i}.png" for i in range(6)], EmbeddingMeta("a" * 64, "full", DIM),
                        domain=["photo", "photo", "photo", "anime", "anime", "anime"], kind="flat", device="cpu")
    index.save(path)
    return path


def rewrite_index(path: Path, dst: Path, edit_footer=None, *, codes: bytes | None = None,
                  digest: str = "recompute") -> Path:
    """An index file with its footer edited (``edit_footer(footer)``) and/or its domain-codes section replaced;
    the section's CRC follows; ``digest``: 'recompute' (consistent, crafted) or 'keep' (an edit)."""
    blob = path.read_bytes()
    footer_len, old_digest, end = struct.unpack("<Q32s8s", blob[-48:])
    footer = json.loads(blob[-48 - footer_len:-48])
    body = bytearray(blob[:-48 - footer_len])
    if codes is not None:
        section = footer["sections"]["domain_codes"]
        assert len(codes) == section["length"]
        body[section["offset"]:section["offset"] + len(codes)] = codes
        section["crc32"] = zlib.crc32(codes)
    if edit_footer is not None:
        edit_footer(footer)
    text = json.dumps(footer).encode()
    digest_bytes = hashlib.sha256(text).digest() if digest == "recompute" else old_digest
    dst.write_bytes(bytes(body) + text + struct.pack("<Q32s8s", len(text), digest_bytes, end))
    return dst


def test_an_edited_index_footer_is_refused(tmp_path):
    index = small_index(tmp_path / "g.twgidx")
    claims_another = rewrite_index(index, tmp_path / "claims.twgidx",
                                   lambda f: f["embedding"].update(checkpoint_sha256="b" * 64), digest="keep")
    swapped = rewrite_index(index, tmp_path / "swapped.twgidx", lambda f: f.update(domains=["anime", "photo"]),
                            digest="keep")
    for path in (claims_another, swapped):
        with pytest.raises(IndexFileError, match="does not match the checksum written with it"):
            Index.load(path, device="cpu")
    assert Index.load(index, device="cpu").domain_counts() == {"photo": 3, "anime": 3}


@pytest.mark.parametrize(("edit", "codes", "reason"), [
    (None, np.array([0, 1, 7, 0, 1, 0], "<u2").tobytes(), "a domain code \\(7\\) names no domain"),
    (lambda f: f["sections"]["paths"].update(offset=-5), None, "sections.paths: section offset -5"),
    (lambda f: f["sections"]["paths"].update(length=2**60), None, "paths section lies outside the file"),
    (lambda f: f.update(params="nprobe=4"), None, "params: input should be an object"),
], ids=["domain-code", "negative-offset", "huge-length", "string-params"])
def test_malformed_index_metadata_is_one_line(tmp_path, capsys, edit, codes, reason):
    bad = rewrite_index(small_index(tmp_path / "g.twgidx"), tmp_path / "bad.twgidx", edit, codes=codes)
    with pytest.raises(IndexFileError, match=reason):
        Index.load(bad, device="cpu")
    assert main(["index", "info", str(bad)]) in (0, 1)  # the footer alone may be well formed
    capsys.readouterr()


def test_a_paths_section_holding_a_dict_is_one_line(tmp_path):
    index = small_index(tmp_path / "g.twgidx")
    blob = bytearray(index.read_bytes())
    footer_len = struct.unpack("<Q32s8s", bytes(blob[-48:]))[0]
    footer = json.loads(bytes(blob[-48 - footer_len:-48]))
    section = footer["sections"]["paths"]
    payload = json.dumps({"p": 1}).encode().ljust(section["length"])
    assert len(payload) == section["length"]
    blob[section["offset"]:section["offset"] + len(payload)] = payload
    section["crc32"] = zlib.crc32(payload)
    text = json.dumps(footer).encode()
    body = bytes(blob[:-48 - footer_len])
    bad = tmp_path / "bad.twgidx"
    bad.write_bytes(body + text + struct.pack("<Q32s8s", len(text), hashlib.sha256(text).digest(), b"TWGNEND\x00"))
    with pytest.raises(IndexFileError, match="the paths section is not a list of path strings"):
        Index.load(bad, device="cpu")


def test_an_embeddings_store_whose_meta_is_a_list_is_one_line(tmp_path, capsys):
    store = tmp_path / "store"
    EmbeddingStore.create(store, EmbeddingMeta("a" * 64, "full", DIM), "anime")
    (store / "meta.json").write_text("[1, 2]")
    assert main(["index", "info", str(store)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"twingan index: error: {store / 'meta.json'}: holds a JSON list, not the object of a twingan "
                   "embeddings store"]
    (store / "meta.json").write_text(json.dumps({"format": "twingan-embeddings", "version": 1, "domain": 3,
                                                 "embedding": {}}))
    assert main(["index", "info", str(store)]) == 1
    assert "domain: input should be a valid string, got 3" in capsys.readouterr().err


def test_embed_into_a_read_only_file_system_is_one_line(tiny_checkpoint, photo, tmp_path, capsys, monkeypatch):
    original = Path.mkdir

    def read_only(self, *args, **kwargs):
        if "store" in self.parts:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(["embed", str(tiny_checkpoint), str(photo), "--domain", "human", "--out", str(tmp_path / "store"),
                 "--device", "cpu", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"twingan embed: error: cannot write {tmp_path / 'store'}: read-only file system: write elsewhere"]
