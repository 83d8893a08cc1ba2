"""The index file: a prefix, checksummed sections (FAISS index, paths, domain codes) and a JSON footer.

The footer sits at the end so that it can describe the sections' offsets, and :func:`read_index_header` reads it
without touching the vectors. The file's last bytes hold the footer's length and its SHA-256: the footer names
the sections' CRC-32s, so the digest covers what the index says it is (the checkpoint that embedded it, its
domains) as well as its contents, and an edited footer is refused. Every footer is checked against
:class:`IndexFooter` before anything reads it. Files are written atomically (temp file + rename).

Version 2 added the footer's digest; a version 1 file is refused with the advice to rebuild it.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, Optional, Sequence, Union

import faiss
import numpy as np

from twingan import __version__
from twingan.errors import TwinGANError, quoted
from twingan.utils.atomic import atomic_path
from twingan.utils.schema import SchemaError, parse

PathLike = Union[str, os.PathLike]

MAGIC = b"TWGNIDX\x00"
END_MAGIC = b"TWGNEND\x00"
FORMAT_NAME = "twingan-faiss-index"
FORMAT_VERSION = 2
_PREFIX = struct.Struct("<8sI")
_SUFFIX = struct.Struct("<Q32s8s")
"""Footer length, SHA-256 of the footer bytes, end marker."""
MAX_FOOTER_BYTES = 64 * 2**20


class IndexFileError(TwinGANError):
    """An index file is missing, foreign, truncated, corrupted or from an unsupported format version."""


@dataclass(frozen=True)
class Section:
    offset: int
    length: int
    crc32: int

    def __post_init__(self) -> None:
        if self.offset < _PREFIX.size or self.length < 0 or not 0 <= self.crc32 < 2**32:
            raise ValueError(f"section offset {self.offset}, length {self.length} or crc32 {self.crc32} is "
                             "out of range")


@dataclass(frozen=True)
class Sections:
    faiss: Section
    paths: Section
    domain_codes: Section


@dataclass(frozen=True)
class IndexFooter:
    """What a footer holds (:func:`write_index_file` writes the description the index gives it)."""

    format: str
    version: int
    kind: str
    params: dict[str, Optional[int]]
    ntotal: int
    domains: list[str]
    embedding: dict[str, Any]
    sections: Sections
    tuning: Optional[dict[str, Any]] = None
    metric: Optional[str] = None
    factory: Optional[str] = None
    domain_counts: Optional[dict[str, int]] = None
    twingan_version: Optional[str] = None
    faiss_version: Optional[str] = None
    created_utc: Optional[str] = None

    def __post_init__(self) -> None:
        if self.ntotal < 0:
            raise ValueError(f"ntotal must be >= 0, got {self.ntotal}")
        if len(set(self.domains)) != len(self.domains) or not all(self.domains):
            raise ValueError(f"domains must be distinct names, got {self.domains}")


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
        fh.write(_SUFFIX.pack(len(footer_bytes), hashlib.sha256(footer_bytes).digest(), END_MAGIC))


def read_index_header(path: PathLike) -> dict[str, Any]:
    """The metadata footer of an index file (cheap: no vectors are read), its digest and schema checked."""
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
        footer_len, digest, end_magic = _SUFFIX.unpack(fh.read(_SUFFIX.size))
        if end_magic != END_MAGIC or footer_len > min(size - _PREFIX.size - _SUFFIX.size, MAX_FOOTER_BYTES):
            raise IndexFileError(f"{path}: truncated or damaged index file (no end marker); rebuild it")
        footer_start = size - _SUFFIX.size - footer_len
        fh.seek(footer_start)
        footer_bytes = fh.read(footer_len)
    if hashlib.sha256(footer_bytes).digest() != digest:
        raise IndexFileError(f"{quoted(path)}: its metadata does not match the checksum written with it (edited or "
                             "damaged after it was saved); rebuild the index")
    try:
        footer = json.loads(footer_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexFileError(f"{path}: damaged index metadata ({exc}); rebuild it") from exc
    if not isinstance(footer, dict) or footer.get("format") != FORMAT_NAME:
        raise IndexFileError(f"{path}: not a twingan index file")
    try:
        checked = parse(IndexFooter, footer)
    except SchemaError as exc:
        raise IndexFileError(f"{quoted(path)}: malformed index metadata ({exc}); rebuild the index") from None
    for name in ("faiss", "paths", "domain_codes"):
        section = getattr(checked.sections, name)
        if section.offset + section.length > footer_start:
            raise IndexFileError(f"{quoted(path)}: its {name} section lies outside the file's data (offset "
                                 f"{section.offset}, length {section.length}); rebuild the index")
    return footer


def read_index_sections(path: Path, footer: Mapping[str, Any]) -> tuple[faiss.Index, list[str], np.ndarray]:
    """The FAISS index, the paths and the domain codes of the file whose footer (from :func:`read_index_header`)
    is ``footer``, checksums and counts checked."""
    sections = footer["sections"]
    with open(path, "rb") as fh:
        faiss_index = _read_faiss_section(fh, sections["faiss"], path)
        raw_paths = _read_bytes_section(fh, sections["paths"], path, "paths")
        codes = _read_bytes_section(fh, sections["domain_codes"], path, "domain codes")
    try:
        paths = json.loads(raw_paths.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexFileError(f"{path}: the paths section is not JSON ({exc}); rebuild the index") from exc
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise IndexFileError(f"{quoted(path)}: the paths section is not a list of path strings; rebuild the index")
    if len(codes) % 2:
        raise IndexFileError(f"{quoted(path)}: the domain codes section has an odd length; rebuild the index")
    domain_codes = np.frombuffer(codes, dtype="<u2").astype(np.uint16)
    if domain_codes.size and int(domain_codes.max()) >= len(footer["domains"]):
        raise IndexFileError(f"{quoted(path)}: a domain code ({int(domain_codes.max())}) names no domain of the "
                             f"index's {len(footer['domains'])}; rebuild the index")
    return faiss_index, paths, domain_codes


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
