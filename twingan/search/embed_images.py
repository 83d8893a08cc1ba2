"""Image files -> an embeddings store: batched, with a progress bar, resumable, bad files reported and skipped.

The embedding of an image is the encoder's 4x4 latent under the image's own
domain normalisation, L2-normalised (:meth:`twingan.inference.Translator.embed`):
``full`` is the flattened latent, ``pooled`` its spatial mean. Pictures are
taken as face crops (centre square, resized as the training data was) unless a
face detector is given: then the largest face of each photo is aligned exactly
as `twingan translate` aligns it, and photos without a face are reported.

Vectors are written in shards of ``shard_size`` (see
:class:`~twingan.search.embeddings_store.EmbeddingStore`), and the pending
shard is written when the run stops early (an error or Ctrl-C), so a repeated
run skips every image already stored and continues where the last one stopped.
"""
from __future__ import annotations

import glob
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from twingan.checkpoint import weights_sha256
from twingan.data.image_io import DEFAULT_MAX_PIXELS, iter_image_files, link_problem, load_image, no_images_found, resolved
from twingan.errors import ConfigError, ImageLoadError
from twingan.faces import FaceDetector
from twingan.inference.faces_pipeline import FacePipeline
from twingan.inference.files import DEFAULT_MIN_SIDE, Failure
from twingan.inference.translator import DEFAULT_BATCH_SIZE, Translator
from twingan.models import EMBEDDING_KINDS
from twingan.search.embeddings_store import EmbeddingMeta, EmbeddingStore
from twingan.utils.progress import progress_bar

DEFAULT_SHARD_SIZE = 4096
"""Vectors per shard: few files for millions of images; an interrupted run loses no stored shard."""


@dataclass
class EmbedSummary:
    embedded: int = 0
    already: int = 0
    """Images skipped because the store holds them from an earlier run."""
    failed: list[Failure] = field(default_factory=list)

    def line(self) -> str:
        text = f"{self.embedded} embedded, {len(self.failed)} failed"
        if self.already:
            text += f", {self.already} already in the store"
        return text


@dataclass
class FaceCrops:
    """The model inputs of a batch of files: one crop per readable file with a face, and why the others failed."""

    paths: list[Path] = field(default_factory=list)
    crops: list[Image.Image] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)


def embedding_meta(translator: Translator, kind: str) -> EmbeddingMeta:
    """What identifies embeddings of ``translator`` (its checkpoint's :func:`~twingan.checkpoint.weights_sha256`:
    a release and its training checkpoint share it), ``kind`` and dimension."""
    if kind not in EMBEDDING_KINDS:
        raise ConfigError(f"embedding kind must be one of {list(EMBEDDING_KINDS)}, got {kind!r}")
    if translator.path is None:
        raise ConfigError("embeddings need the translator's checkpoint file (its hash identifies them)")
    model = {"domains": list(translator.domains), "resolution": translator.resolution}
    sha256 = weights_sha256(translator.path, translator.meta)
    return EmbeddingMeta(sha256, kind, translator.embedding_dim(kind), model=model)


EMBED_NO_FACE_HINT = "run embed without --detect to take such pictures as face crops (the centre square)"


def detection_note(translator: Translator, domain: str) -> str | None:
    """What to tell a user who asks for face detection on pictures of ``domain``: None when its face profile
    is ``photo``, else that the detector finds human faces."""
    if translator.detects_faces(domain):
        return None
    return (f"note: --detect uses a detector of human faces; '{domain}' pictures (face profile "
            f"{translator.profiles[domain]}) may have none")


def collect_image_files(args: Sequence[str]) -> tuple[list[Path], list[Failure]]:
    """Files, folders (their image files, recursively) and glob patterns -> distinct files, and what was not found.

    Unlike translation inputs, files of the same name in different folders are
    all kept: an embedding is stored under its image's own path, not an output name.
    """
    files: list[Path] = []
    problems: list[Failure] = []
    seen: set[Path] = set()
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found = list(iter_image_files(path))
            if not found:
                problems.append(Failure(str(path), no_images_found()))
        elif path.exists() or path.is_symlink():
            found = [path]
        elif glob.has_magic(arg):
            found = sorted(Path(p) for p in glob.glob(arg, recursive=True) if Path(p).is_file())
            if not found:
                problems.append(Failure(arg, "no file matches this pattern"))
        else:
            found = []
            problems.append(Failure(arg, "file not found"))
        for file in found:
            problem = link_problem(file)
            if problem is not None:  # a link loop or a broken link: one line for it, the rest goes on
                problems.append(Failure(str(file), problem))
            elif resolved(file) not in seen:
                seen.add(resolved(file))
                files.append(file)
    return files, problems


def load_face_crops(
    files: Sequence[Path],
    translator: Translator,
    detector: FaceDetector | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
) -> FaceCrops:
    """Read ``files``; keep each one's largest face (``detector``) or the whole picture (no detector)."""
    result = FaceCrops()
    photos: list[tuple[Path, Image.Image]] = []
    for path in files:
        try:
            photos.append((path, load_image(path, max_pixels=max_pixels, min_size=min_side)))
        except ImageLoadError as exc:
            result.failed.append(Failure(str(path), exc.reason))
    if detector is None:
        result.paths = [path for path, _ in photos]
        result.crops = [photo for _, photo in photos]
        return result
    pipeline = FacePipeline(translator, detector, max_faces=1, no_face_hint=EMBED_NO_FACE_HINT)
    for (path, _), found in zip(photos, pipeline.face_crops([photo for _, photo in photos])):
        if found.error is not None:
            result.failed.append(Failure(str(path), found.error))
            continue
        result.paths.append(path)
        result.crops.append(found.crops[0].crop)
    return result


def store_key(path: Path, relative_to: Path | None) -> str:
    """The name an image is stored under: its absolute path, or its path relative to ``relative_to``."""
    absolute = path.resolve()
    if relative_to is None:
        return str(absolute)
    root = relative_to.resolve()
    if not absolute.is_relative_to(root):
        raise ConfigError(f"{path} is not inside --relative-to {relative_to}; choose a folder that holds every input")
    return absolute.relative_to(root).as_posix()


def embed_files(
    translator: Translator,
    files: Sequence[Path],
    store: EmbeddingStore,
    *,
    detector: FaceDetector | None = None,
    relative_to: Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    shard_size: int = DEFAULT_SHARD_SIZE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
) -> EmbedSummary:
    """Embed the ``files`` the store does not hold yet (store domain and kind), appending shards to ``store``.

    One line per failed file goes to ``report`` (default: stderr above the progress bar).
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if shard_size < 1:
        raise ConfigError(f"--shard-size must be at least 1, got {shard_size}")
    expected = embedding_meta(translator, store.meta.embedding_kind)
    expected.check_matches(store.meta, this=f"the checkpoint {translator.path}", that=f"the store {store.path}")
    translator.check_domain(store.domain, "domain")
    say = report or (lambda line: tqdm.write(line, file=sys.stderr))
    summary = EmbedSummary()
    done = store.existing_paths()
    todo: list[tuple[Path, str]] = []
    queued: set[str] = set()
    for path in files:
        key = store_key(Path(path), relative_to)
        if key in done:
            summary.already += 1
        elif key not in queued:
            queued.add(key)
            todo.append((Path(path), key))
    pending_vectors: list[np.ndarray] = []
    pending_keys: list[str] = []

    def flush() -> None:
        if pending_keys:
            store.append(np.concatenate(pending_vectors), pending_keys)
            pending_vectors.clear()
            pending_keys.clear()

    try:
        with progress_bar(total=len(todo), unit="img", desc="embedding", file=sys.stderr, disable=not progress) as bar:
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                keys = {path: key for path, key in chunk}
                crops = load_face_crops([path for path, _ in chunk], translator, detector,
                                        max_pixels=max_pixels, min_side=min_side)
                for failure in crops.failed:
                    summary.failed.append(failure)
                    say(str(failure))
                if crops.crops:
                    vectors = translator.embed(crops.crops, store.domain, store.meta.embedding_kind, batch_size)
                    pending_vectors.append(vectors)
                    pending_keys.extend(keys[path] for path in crops.paths)
                    summary.embedded += len(crops.paths)
                if len(pending_keys) >= shard_size:
                    flush()
                bar.update(len(chunk))
    finally:
        flush()
    return summary
