"""The index file: a prefix, checksummed sections (FAISS index, paths, domain codes) and a JSON footer.

The footer sits at the end so that it can describe the sections' offsets, and :func:`read_index_header` reads it
without touching the vectors. Files are written atomically (temp file + rename).
"""
from __future__ import annotations

import json
import os
import struct
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, Sequence, Union

import faiss
import numpy as np

from twingan import __version__
from twingan.errors import TwinGANError
from twingan.utils.atomic import atomic_path

PathLike = Union[str, os.PathLike]

MAGIC = b"TWGNIDX\x00"
END_MAGIC = b"TWGNEND\x00"
FORMAT_NAME = "twingan-faiss-index"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sI")
_SUFFIX = struct.Struct("<Q8s")


class IndexFileError(TwinGANError):
    """An index file is missing, foreign, truncated, corrupted or from an unsupported format version."""


def write_index_file(
    path: PathLike,
    faiss_index: faiss.Index,
    paths: Sequence[str],
    domain_codes: np.ndarray,
    description: Mapping[str, Any],
) -> None:
    """Write one index file, atomically; ``description`` (what the index is) goes into the footer."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(_PREFIX.pack(MAGIC, FORMAT_VERSION))
        sections = {
            "faiss": _write_faiss_section(fh, faiss_index),
            "paths": _write_bytes_section(fh, json.dumps(paths).encode("utf-8")),
            "domain_codes": _write_bytes_section(fh, domain_codes.astype("<u2").tobytes()),
        }
        footer = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "twingan_version": __version__,
            "faiss_version": faiss.__version__,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **description,
            "sections": sections,
        }
        footer_bytes = json.dumps(footer).encode("utf-8")
        fh.write(footer_bytes)
        fh.write(_SUFFIX.pack(len(footer_bytes), END_MAGIC))


def read_index_header(path: PathLike) -> dict[str, Any]:
    """The metadata footer of an index file (cheap: no vectors are read)."""
    path = Path(path)
    if not path.is_file():
        raise IndexFileError(f"{path}: no such index file (build one with `twingan index build`)")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        prefix = fh.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size or prefix[:8] != MAGIC:
            raise IndexFileError(f"{path}: not a twingan index file (build one with `twingan index build`)")
        _, version = _PREFIX.unpack(prefix)
        if version != FORMAT_VERSION:
            raise IndexFileError(
                f"{path}: index format version {version} is not supported (this twingan reads version "
                f"{FORMAT_VERSION}); rebuild the index with this version"
            )
        if size < _PREFIX.size + _SUFFIX.size:
            raise IndexFileError(f"{path}: truncated index file ({size} bytes); rebuild it")
        fh.seek(size - _SUFFIX.size)
        footer_len, end_magic = _SUFFIX.unpack(fh.read(_SUFFIX.size))
        if end_magic != END_MAGIC or footer_len > size - _PREFIX.size - _SUFFIX.size:
            raise IndexFileError(f"{path}: truncated or damaged index file (no end marker); rebuild it")
        fh.seek(size - _SUFFIX.size - footer_len)
        try:
            footer = json.loads(fh.read(footer_len).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexFileError(f"{path}: damaged index metadata ({exc}); rebuild it") from exc
    if not isinstance(footer, dict) or footer.get("format") != FORMAT_NAME:
        raise IndexFileError(f"{path}: not a twingan index file")
    return footer


def read_index_sections(path: Path, footer: Mapping[str, Any]) -> tuple[faiss.Index, list[str], np.ndarray]:
    """The FAISS index, the paths and the domain codes of the file whose footer is ``footer``, checksums checked."""
    try:
        sections = footer["sections"]
        with open(path, "rb") as fh:
            faiss_index = _read_faiss_section(fh, sections["faiss"], path)
            paths = json.loads(_read_bytes_section(fh, sections["paths"], path, "paths"))
            codes = _read_bytes_section(fh, sections["domain_codes"], path, "domain codes")
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexFileError(f"{path}: malformed index metadata ({exc!r}); rebuild the index") from exc
    return faiss_index, paths, np.frombuffer(codes, dtype="<u2").astype(np.uint16)


class _SectionWriter:
    """Counts and checksums what goes through it to the file."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.offset = fh.tell()
        self.length = 0
        self.crc = 0

    def write(self, data: bytes) -> int:
        self.fh.write(data)
        self.length += len(data)
        self.crc = zlib.crc32(data, self.crc)
        return len(data)

    def record(self) -> dict[str, int]:
        return {"offset": self.offset, "length": self.length, "crc32": self.crc}


def _write_faiss_section(fh: BinaryIO, faiss_index: faiss.Index) -> dict[str, int]:
    writer = _SectionWriter(fh)
    callback_writer = faiss.PyCallbackIOWriter(writer.write)
    faiss.write_index(faiss_index, callback_writer)
    del callback_writer  # flushes its buffer into writer
    return writer.record()


def _write_bytes_section(fh: BinaryIO, data: bytes) -> dict[str, int]:
    writer = _SectionWriter(fh)
    writer.write(data)
    return writer.record()


def _section_reader(fh: BinaryIO, section: Mapping[str, int]) -> tuple[Callable[[int], bytes], dict[str, int]]:
    fh.seek(section["offset"])
    state = {"left": section["length"], "crc": 0}

    def read(n: int) -> bytes:
        data = fh.read(min(n, state["left"]))
        state["left"] -= len(data)
        state["crc"] = zlib.crc32(data, state["crc"])
        return data

    return read, state


def _check_section(state: Mapping[str, int], section: Mapping[str, int], path: Path, name: str) -> None:
    if state["left"] != 0 or state["crc"] != section["crc32"]:
        raise IndexFileError(f"{path}: the {name} section is corrupted (checksum mismatch); rebuild the index")


def _read_faiss_section(fh: BinaryIO, section: Mapping[str, int], path: Path) -> faiss.Index:
    read, state = _section_reader(fh, section)
    try:
        faiss_index = faiss.read_index(faiss.PyCallbackIOReader(read))
    except RuntimeError as exc:
        raise IndexFileError(f"{path}: the FAISS section is unreadable ({str(exc).splitlines()[0]})") from exc
    _check_section(state, section, path, "FAISS")
    return faiss_index


def _read_bytes_section(fh: BinaryIO, section: Mapping[str, int], path: Path, name: str) -> bytes:
    read, state = _section_reader(fh, section)
    data = read(section["length"])
    _check_section(state, section, path, name)
    return data
