"""What the web demo does, without the web: decode uploads safely, translate faces, search the index.

Nothing here imports Gradio, so every behaviour of the page can be tested with
plain function calls. Uploads arrive as bytes; they are written to a temporary
file in a folder the server created and decoded with the toolkit's one image
loader (:func:`twingan.data.image_io.load_image`), which judges the content,
never the file name, and lets only its allow-list of decoders see it. Problems
the visitor can fix raise :class:`WebInputError`, whose message the page shows
as is.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from twingan.data.image_io import load_image
from twingan.errors import ConfigError, ImageLoadError, TwinGANError
from twingan.faces import FaceDetector
from twingan.inference import Translator
from twingan.data.synthetic import params_for_index, render
from twingan.inference.faces_pipeline import FacePipeline, PhotoResult
from twingan.inference.release import describe_training, training_summary
from twingan.search import EmbeddingMeta, Index
from twingan.search.embed_images import embedding_meta

PathLike = Union[str, os.PathLike]

"""Pictures of this domain are photos: MTCNN finds and aligns their faces (as `twingan translate` does)."""
EMBEDDING_KINDS = ("full", "pooled")
MISSING_TILE_GRAY = 128
EXAMPLES_DIR = Path(__file__).with_name("examples")
"""Pictures shipped for the page's examples (see its README.md)."""
SYNTHETIC_EXAMPLE_SIZE = 128
SYNTHETIC_EXAMPLES = (("photo", 0), ("photo", 1), ("anime", 2))
"""(style, index of the synthetic paired test set) of the drawn example faces."""


class WebInputError(TwinGANError):
    """A problem with what the visitor sent (not an image, too large, no face); shown in the page."""


@dataclass(frozen=True)
class WebLimits:
    """Bounds on what one request may cost the server."""

    max_upload_bytes: int = 10 * 2**20
    """Larger uploads are refused (Gradio's max_file_size enforces the same bound on the upload itself)."""
    max_pixels: int = 25_000_000
    """Larger pictures are refused before decoding (about 5000x5000)."""
    min_side: int = 16
    max_faces: int = 4
    max_k: int = 24
    concurrency: int = 1
    """Requests that run the model at the same time; the others wait in the queue."""
    queue_size: int = 16
    """Requests that may wait; more are turned away with "queue full" instead of piling up in memory."""
    max_stored_bytes: int = 256 * 2**20
    """The server's scratch folder (Gradio's stored uploads and outputs) is pruned, oldest files first, to this
    total, so a crowd of uploads cannot fill the disk."""
    prune_every_s: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.prune_every_s, (int, float)) or not self.prune_every_s > 0:
            raise ConfigError(f"web limit prune_every_s must be a positive number, got {self.prune_every_s!r}")
        for name in ("max_upload_bytes", "max_pixels", "min_side", "max_faces", "max_k", "concurrency", "queue_size",
                     "max_stored_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"web limit {name} must be a positive integer, got {value!r}")


@dataclass
class TranslateOutput:
    faces: list[Image.Image]
    """The aligned crops the model saw (one per detected face, largest first)."""
    avatars: list[Image.Image]
    side_by_side: Image.Image
    pasted: Image.Image | None
    """The photo with the avatars warped back in; None when the picture was taken as a crop."""
    message: str


@dataclass(frozen=True)
class Example:
    """One ready-made input of the Translate tab: a picture file and how to translate it."""

    path: Path
    src: str
    to: str
    detect: bool
    label: str


@dataclass
class SearchHit:
    rank: int
    score: float
    domain: str
    path: str
    image: Image.Image
    found: bool
    """False when the gallery file could not be read (``image`` is then a gray tile)."""

    @property
    def caption(self) -> str:
        missing = "" if self.found else " (file unreadable)"
        return f"#{self.rank} · {self.score:.3f} · {self.path}{missing}"


@dataclass
class SearchOutput:
    query_face: Image.Image
    hits: list[SearchHit] = field(default_factory=list)
    message: str = ""


def decode_upload(data: bytes, workdir: PathLike, limits: WebLimits) -> Image.Image:
    """Uploaded bytes -> RGB picture, or WebInputError saying why not (empty, too large, not an image).

    The bytes go to a fresh file (no name or extension of the visitor's) inside
    ``workdir``, which the server owns, and are removed once decoded.
    """
    if not data:
        raise WebInputError("The upload is empty: choose a photo (JPEG, PNG or WebP).")
    if len(data) > limits.max_upload_bytes:
        raise WebInputError(f"The upload is too large: the limit is {_megabytes(limits.max_upload_bytes)}.")
    handle, name = tempfile.mkstemp(prefix="upload-", dir=workdir)
    try:
        with os.fdopen(handle, "wb") as fh:
            fh.write(data)
        return load_image(name, max_pixels=limits.max_pixels, min_size=limits.min_side)
    except ImageLoadError as exc:
        raise WebInputError(f"The upload could not be used as an image: {exc.reason}.") from exc
    finally:
        os.unlink(name)


def prune_folder(folder: PathLike, max_bytes: int) -> int:
    """Delete the oldest files below ``folder`` until the rest total at most ``max_bytes``; returns the bytes freed."""
    files = []
    for dirpath, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                stat = os.stat(os.path.join(dirpath, name), follow_symlinks=False)
                files.append((stat.st_mtime, stat.st_size, os.path.join(dirpath, name)))
    excess = sum(size for _, size, _ in files) - max_bytes
    freed = 0
    for _, size, path in sorted(files):
        if freed >= excess:
            break
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            freed += size
    return freed


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


class WebDemo:
    """The model (and optional index) behind the page, with the server's scratch folder and limits.

    ``detector``: the face detector for domains with the ``photo`` profile; None takes
    every picture as a face crop (centre square). ``gallery_root``: the folder
    that relative image paths of the index are relative to.
    """

    def __init__(
        self,
        translator: Translator,
        index: Index | None = None,
        *,
        detector: FaceDetector | None = None,
        limits: WebLimits = WebLimits(),
        gallery_root: PathLike | None = None,
    ) -> None:
        self.translator = translator
        self.index = index
        self.detector = detector
        self.limits = limits
        self.gallery_root = Path(gallery_root) if gallery_root is not None else Path.cwd()
        self.query_meta = self._check_index(translator, index) if index is not None else None
        self.workdir = Path(tempfile.mkdtemp(prefix="twingan-web-"))
        self._closed = threading.Event()
        self._janitor = threading.Thread(target=self._prune_until_closed, name="twingan-web-prune", daemon=True)
        self._janitor.start()

    def _prune_until_closed(self) -> None:
        while not self._closed.wait(self.limits.prune_every_s):
            prune_folder(self.workdir, self.limits.max_stored_bytes)

    @staticmethod
    def _check_index(translator: Translator, index: Index) -> EmbeddingMeta:
        """The metadata of our query embeddings; EmbeddingMismatchError unless they are comparable to the index's."""
        kind = index.meta.embedding_kind
        if kind not in EMBEDDING_KINDS:
            raise ConfigError(
                f"the index holds {kind!r} embeddings; the demo computes {' or '.join(EMBEDDING_KINDS)} ones"
            )
        if translator.path is None:
            raise ConfigError("searching an index needs the translator's checkpoint file (to check it made the index)")
        meta = embedding_meta(translator, kind)
        meta.check_matches(index.meta, this=f"the checkpoint {translator.path}", that="the index")
        return meta

    def close(self) -> None:
        self._closed.set()
        self._janitor.join()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------ description

    def describe(self) -> str:
        """One line on the model (and index) for the page header."""
        name = self.translator.path.name if self.translator.path is not None else "in-memory model"
        res = self.translator.resolution
        line = f"Model {name}: domains {', '.join(self.translator.domains)}; {res}x{res} px"
        if self.index is not None:
            counts = ", ".join(f"{domain} {count}" for domain, count in self.index.domain_counts().items())
            line += f". Search index: {self.index.ntotal} faces ({counts}), {self.index.meta.embedding_kind} embeddings"
        return line + "."

    def training_line(self) -> str:
        """What the checkpoint was trained on (a model of the synthetic faces says it is no use on photos)."""
        return describe_training(training_summary(self.translator.meta))

    def examples(self) -> list[Example]:
        """Example inputs for a visitor without a photo: the astronaut photo when the model has a domain with
        the ``photo`` profile, and drawn synthetic faces (face crops, no detection) when it was trained on them. The drawn
        faces are written into the server's scratch folder."""
        src, to = self.default_domains()
        found = []
        if self.translator.detects_faces(src) and src != to:
            found.append(Example(EXAMPLES_DIR / "astronaut.jpg", src, to, True, "a photo"))
        styles = training_summary(self.translator.meta).get("style_domains") or {}
        if set(styles.values()) <= set(self.translator.domains) and len(set(styles.values())) == 2:
            folder = self.workdir / "examples"
            folder.mkdir(exist_ok=True)
            for style, index in SYNTHETIC_EXAMPLES:
                path = folder / f"synthetic_{style}_{index}.png"
                render(params_for_index(0, "test", index), style, SYNTHETIC_EXAMPLE_SIZE).save(path)
                other = next(s for s in styles if s != style)
                found.append(Example(path, styles[style], styles[other], False, f"a synthetic {style} face"))
        return found

    def default_domains(self) -> tuple[str, str]:
        """(from, to) preselected in the page: the first domain of photos (``photo`` profile), else the first
        domain, to the first other domain when there is one."""
        domains = list(self.translator.domains)
        src = next((d for d in domains if self.translator.detects_faces(d)), domains[0])
        others = [d for d in domains if d != src]
        return src, (others[0] if others else src)

    # ------------------------------------------------------------ translation

    def pipeline(self, src: str, detect: bool = True) -> FacePipeline:
        """Photos (a ``photo`` profile domain) go through face detection; other domains, ``detect`` off or no
        detector: face crops."""
        detector = self.detector if detect and self.translator.detects_faces(src) else None
        return FacePipeline(self.translator, detector, max_faces=self.limits.max_faces)

    def translate(
        self, data: bytes | None, src: str, to: str, detect: bool = True,
        reference: bytes | None = None, attrs: str = "",
    ) -> TranslateOutput:
        """Decode the upload, find its faces (photos of people), translate each into ``to``.

        ``reference``: an optional picture of ``to`` whose style (hair, eye colours) every avatar
        takes (its largest face when ``to`` has the ``photo`` profile); ``attrs``: optional "hair=blue, eyes=green".
        Both need a checkpoint trained for them; what it cannot do is refused before any work.
        """
        self.translator.check_domain(src, "source domain")
        self.translator.check_domain(to, "target domain")
        attrs = (attrs or "").strip()
        if reference is not None:
            self.translator.check_reference_support()
        if attrs:
            self.translator.attribute_labels(attrs)
        picture = self._picture(data)
        cond = None
        if reference is not None or attrs:
            cond = self.translator.condition(to, reference=self._reference_face(reference, to, detect), attrs=attrs)
        result = self.pipeline(src, detect).run([picture], to, src, cond=cond)[0]
        self._raise_for(result)
        detected = result.crops[0].face is not None
        count = len(result.crops)
        what = f"{count} face{'s' if count > 1 else ''} found and translated" if detected else (
            "the picture was taken as a face crop (centre square) and translated"
        )
        asked = [part for part, given in (("in the reference's style", reference is not None),
                                          (f"with {attrs}", bool(attrs))) if given]
        return TranslateOutput(
            faces=[crop.crop for crop in result.crops],
            avatars=list(result.translations),
            side_by_side=result.side_by_side(),
            pasted=result.pasted() if detected else None,
            message=f"{src} -> {to}{' ' + ' and '.join(asked) if asked else ''}: {what}.",
        )

    def _reference_face(self, reference: bytes | None, to: str, detect: bool) -> Image.Image | None:
        """The reference upload as the model sees it: the aligned largest face of a photo of a person, else
        the centre square (as `twingan translate --reference`)."""
        if reference is None:
            return None
        try:
            picture = decode_upload(reference, self.workdir, self.limits)
        except WebInputError as exc:
            raise WebInputError(f"Reference: {exc}") from None
        result = self.pipeline(to, detect).face_crops([picture])[0]
        if result.error is not None:
            raise WebInputError(
                f"No face found in the {picture.width}x{picture.height} reference picture. Use a reference where "
                "the face is larger, or untick 'Detect faces' if it is a face crop already."
            )
        return result.crops[0].crop

    # ------------------------------------------------------------ search

    def search(
        self, data: bytes | None, query_domain: str, gallery_domain: str, k: int, detect: bool = True
    ) -> SearchOutput:
        """The ``k`` gallery faces of ``gallery_domain`` most similar to the uploaded face, with cosine scores."""
        if self.index is None or self.query_meta is None:
            raise WebInputError("Search is off: the server was started without an index (twingan serve --index).")
        if gallery_domain not in self.index.domains:
            raise WebInputError(f"The index has no {gallery_domain!r} faces; it holds {', '.join(self.index.domains)}.")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.limits.max_k:
            raise WebInputError(f"The number of results must be between 1 and {self.limits.max_k}, got {k!r}.")
        self.translator.check_domain(query_domain, "query domain")
        picture = self._picture(data)
        result = self.pipeline(query_domain, detect).face_crops([picture])[0]
        self._raise_for(result)
        face = result.crops[0].crop
        query = self.translator.embed(face, domain=query_domain, kind=self.query_meta.embedding_kind)
        found = self.index.search(query, int(k), self.query_meta, domain=gallery_domain)
        hits = [
            self._hit(rank, float(score), domain, path)
            for rank, (score, domain, path) in enumerate(
                zip(found.scores[0], found.domains[0], found.paths[0]), start=1
            )
        ]
        return SearchOutput(face, hits, f"{len(hits)} most similar {gallery_domain} faces (cosine similarity).")

    def _hit(self, rank: int, score: float, domain: str, path: str) -> SearchHit:
        """Gallery images come from the index's own paths (server files), never from anything the visitor sent."""
        full = Path(path) if Path(path).is_absolute() else self.gallery_root / path
        size = self.translator.resolution
        try:
            image = load_image(full, max_pixels=self.limits.max_pixels)
            image.thumbnail((max(size, 128), max(size, 128)))
            return SearchHit(rank, score, domain, path, image, True)
        except ImageLoadError:
            tile = Image.new("RGB", (size, size), (MISSING_TILE_GRAY,) * 3)
            return SearchHit(rank, score, domain, path, tile, False)

    # ------------------------------------------------------------ shared

    def _picture(self, data: bytes | None) -> Image.Image:
        if data is None:
            raise WebInputError("No picture yet: upload a photo or take one with the webcam.")
        return decode_upload(data, self.workdir, self.limits)

    def _raise_for(self, result: PhotoResult) -> None:
        if result.error is not None:
            smallest = self.detector.min_face_size if self.detector is not None else 0
            raise WebInputError(
                f"No face found in the {result.photo.width}x{result.photo.height} picture (faces of at least "
                f"{smallest} px are looked for). Try a photo where the face is larger, frontal and well lit, or "
                "untick 'Detect faces' if the picture is a face crop already."
            )
