"""The Python translation API: load a checkpoint, translate and embed images.

Accepted images (one, or a list of them):

* PIL images, any mode (transparency is composited over white, grayscale,
  CMYK and 16-bit are converted to 8-bit RGB);
* numpy arrays, uint8, (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grayscale;
  a 4-D (N, H, W, 3) array is a list of N images;
* torch tensors, float in [-1, 1], (3, H, W) or a batch (N, 3, H, W).

Every image is centre-cropped to a square and resized to the model resolution
exactly as the training data was (:func:`twingan.data.image_io.resize_square`:
area averaging when shrinking, bicubic when enlarging); tensors already at the
model resolution go in unchanged. Translations come back as RGB PIL images at
the model resolution.

Conditioned translation (checkpoints trained for it):

* ``reference=``: one image (any of the above, or a file path, read with
  :func:`twingan.data.image_io.load_image`) whose style (colours of hair, eyes,
  shading) the translations take. It is a picture of the TARGET domain, encoded
  with that domain's style head, and the same code is applied to every input.
  It is taken as a face crop (centre square, like the inputs): the API does no
  face detection. Needs a checkpoint trained with ``model.style_dim > 0``.
* ``attrs=``: attribute values, ``{"hair": "blue"}`` or ``["hair=blue",
  "eyes=green"]``; groups not named keep what the source has. Needs a
  checkpoint trained with ``model.attributes``.

Both may be given together. Without them (or with an empty ``attrs``) the
translation is the plain, unconditioned one.

Photos (:meth:`Translator.translate_photo`, :meth:`Translator.translate_photos`)
go through what `twingan translate` does: faces found with MTCNN, aligned like
the training crops, translated, and on request pasted back into the photo::

    t = twingan.load("selfie2anime.safetensors")
    result = t.translate_photo("selfie.jpg", to="anime")
    result.avatar.save("avatar.png"); result.pasted().save("pasted.png")
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

import numpy as np
import torch
from PIL import Image

from twingan.checkpoint import load_translator
from twingan.data.image_io import load_image, pil_to_tensor, resize_square, tensor_to_pil, to_rgb
from twingan.errors import ConfigError, NoFaceError, NonFiniteOutputError, quoted
from twingan.faces.align import DEFAULT_MARGIN
from twingan.faces.profiles import checkpoint_profiles, detects_faces
from twingan.inference.defaults import DEFAULT_BATCH_SIZE, DEFAULT_MAX_FACES
from twingan.inference.download import resolve_pretrained
from twingan.utils.device import resolve_device
from twingan.models import EMBEDDING_KINDS, TwinGAN

if TYPE_CHECKING:
    from twingan.faces import FaceDetector
    from twingan.inference.faces_pipeline import PhotoResult

PathLike = Union[str, os.PathLike]
Photo = Union[str, os.PathLike, Image.Image, np.ndarray]
ImageLike = Union[Image.Image, np.ndarray, torch.Tensor]
Images = Union[ImageLike, Sequence[ImageLike]]
Reference = Union[ImageLike, str, os.PathLike]
Attributes = Union[Mapping[str, str], Sequence[str], str]

WHITE = (255, 255, 255)


def check_model_domain(model: TwinGAN, domain: str, option: str = "domain") -> str:
    """``domain`` when ``model`` knows it; else a ConfigError naming ``option`` and the known domains."""
    if domain not in model.domains:
        raise ConfigError(f"{option} {domain!r} is not a domain of this checkpoint; it knows {list(model.domains)}")
    return domain


def model_attribute_labels(model: TwinGAN, attrs: Attributes, option: str | None = None) -> list[int]:
    """``{"hair": "blue"}``, ``["hair=blue", "eyes=green"]`` or ``"hair=blue,eyes=green"`` -> one value index
    per attribute group (-1 = keep). ConfigError (prefixed with ``option`` when given) for a checkpoint
    trained without attributes or for a bad name or value."""
    prefix = f"{option}: " if option else ""
    schema = model.attribute_schema
    if not schema:
        raise ConfigError(
            f"{prefix}this checkpoint was trained without attributes; train with model.attributes={{hair: [...], "
            "...}} (experiment=attributes_demo) to set attributes such as hair=blue"
        )
    try:
        return schema.label_of(attrs)
    except ValueError as exc:
        raise ConfigError(f"{prefix}{exc}") from None


class Translator:
    """A trained TwinGAN ready for inference (eval mode, no gradients), with its checkpoint metadata."""

    def __init__(self, model: TwinGAN, meta: dict[str, Any] | None = None, path: PathLike | None = None) -> None:
        self.model = model.eval()
        self.meta = dict(meta or {})
        self.path = Path(path) if path is not None else None
        self._detector: FaceDetector | None = None

    @classmethod
    def load(
        cls, path: PathLike, device: str | torch.device = "auto", weights: str = "ema", sha256: str | None = None,
        max_download_bytes: int | None = None,
    ) -> "Translator":
        """Load a twingan checkpoint or release file; ``device`` 'auto' picks CUDA when available; EMA weights
        by default. ``path`` may be an http(s) URL, downloaded once and checked against ``sha256``, at most
        ``max_download_bytes`` of it (see :func:`twingan.inference.download.resolve_pretrained`)."""
        path = resolve_pretrained(path, sha256, max_bytes=max_download_bytes)
        model, meta = load_translator(path, device=resolve_device(device), weights=weights)
        return cls(model, meta, path)

    @property
    def domains(self) -> tuple[str, ...]:
        return self.model.domains

    @property
    def profiles(self) -> dict[str, str]:
        """Domain name -> face profile (:mod:`twingan.faces.profiles`): the checkpoint's, or derived from the
        domain names for a checkpoint written before profiles (and for a model without metadata)."""
        return checkpoint_profiles(self.meta, self.domains)

    def detects_faces(self, domain: str) -> bool:
        """Whether pictures of ``domain`` are searched for faces (its profile is ``photo``)."""
        return detects_faces(self.profiles[self.check_domain(domain)])

    @property
    def resolution(self) -> int:
        return self.model.resolution

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __repr__(self) -> str:
        return f"Translator(domains={list(self.domains)}, resolution={self.resolution}, device={self.device})"

    def check_domain(self, domain: str, option: str = "domain") -> str:
        return check_model_domain(self.model, domain, option)

    def source_domain(self, to: str, src: str | None = None) -> str:
        """The domain of the input images: ``src`` when given, else the only possible one.

        With two domains the source is the one that is not ``to``; a one-domain
        model reconstructs; with more domains the source is ambiguous and must
        be given.
        """
        self.check_domain(to, "target domain")
        if src is not None:
            return self.check_domain(src, "source domain")
        others = [d for d in self.domains if d != to]
        if len(others) > 1:
            raise ConfigError(
                f"this checkpoint knows {len(self.domains)} domains {list(self.domains)}; say which one the "
                f"input images are (--from / src=)"
            )
        return others[0] if others else to

    def preprocess(self, images: Images) -> torch.Tensor:
        """Images -> float32 (N, 3, R, R) batch in [-1, 1] on the CPU."""
        items, _ = _as_list(images)
        return torch.stack([self._to_model_tensor(item) for item in items])

    @torch.inference_mode()
    def translate_tensor(
        self,
        x: torch.Tensor,
        to: str,
        src: str,
        batch_size: int = DEFAULT_BATCH_SIZE,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(N, 3, R, R) in [-1, 1] -> translated (N, 3, R, R) on the CPU, unclamped model output.

        ``cond``: a (1, cond_dim) condition from :meth:`condition`, applied to every image; None translates
        unconditioned.
        """
        self.check_domain(to, "target domain")
        self.check_domain(src, "source domain")
        _check_batch_size(batch_size)
        if cond is not None and (cond.dim() != 2 or cond.shape[0] != 1):
            raise ConfigError(f"a condition must be one (1, D) row from Translator.condition, got {tuple(cond.shape)}")
        outputs = []
        for chunk in x.split(batch_size):
            c = cond.to(self.device).expand(len(chunk), -1) if cond is not None else None
            outputs.append(self.check_finite(self.model.translate(chunk.to(self.device), src, to, c).float().cpu()))
        return torch.cat(outputs) if outputs else x.new_zeros((0, 3, self.resolution, self.resolution))

    def check_finite(self, output: torch.Tensor) -> torch.Tensor:
        """``output``, or a NonFiniteOutputError when it holds NaN or infinite values (a NaN image would be written
        as black pixels, a NaN embedding would tie with every other)."""
        if not torch.isfinite(output).all():
            source = self.path if self.path is not None else "the model"
            raise NonFiniteOutputError(
                f"{quoted(source)}: the model's output holds NaN or infinite values; its weights are unusable "
                "(did the training run diverge?): use another checkpoint"
            )
        return output

    def translate(
        self,
        images: Images,
        to: str,
        src: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        reference: Reference | None = None,
        attrs: Attributes | None = None,
    ) -> Union[Image.Image, list[Image.Image]]:
        """Translate into domain ``to``; one image in gives one PIL image out, a list (or batch) gives a list.

        ``reference``: one picture of domain ``to`` (an image or a path) whose style every translation takes;
        ``attrs``: ``{"hair": "blue"}`` or ``["hair=blue"]``. See the module docstring.
        """
        src = self.source_domain(to, src)
        cond = self.condition(to, reference=reference, attrs=attrs)
        items, single = _as_list(images)
        if not items:
            return []
        batch = torch.stack([self._to_model_tensor(item) for item in items])
        pils = [tensor_to_pil(t) for t in self.translate_tensor(batch, to, src, batch_size, cond)]
        return pils[0] if single else pils

    # ---- photos --------------------------------------------------------------------------------

    def translate_photo(self, photo: Photo, to: str, src: str | None = None, **options: Any) -> PhotoResult:
        """Translate the faces of one photo (a path, PIL image or uint8 numpy array) as `twingan translate` does.

        Returns a :class:`~twingan.inference.faces_pipeline.PhotoResult`: ``.avatar`` (the largest face's
        translation), ``.translations`` (every face, largest first), ``.crops`` (what the model saw, with the
        detections) and ``.pasted()`` (the photo with the faces blended back in). Raises NoFaceError when no
        face is found (unless ``fallback="center-crop"``). ``options``: those of :meth:`translate_photos`.
        """
        result = self.translate_photos([photo], to, src, **options)[0]
        if result.error is not None:
            label = os.fspath(photo) if isinstance(photo, (str, os.PathLike)) else "the photo"
            raise NoFaceError(f"{label}: {result.error}")
        return result

    def translate_photos(
        self,
        photos: Sequence[Photo],
        to: str,
        src: str | None = None,
        *,
        detect: bool | None = None,
        max_faces: int = DEFAULT_MAX_FACES,
        fallback: str = "none",
        margin: float = DEFAULT_MARGIN,
        border: str = "reflect",
        reference: Photo | None = None,
        attrs: Attributes | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> list[PhotoResult]:
        """Translate the faces of many photos; one PhotoResult each, in order (see :meth:`translate_photo`).

        A photo without a face gets a result whose ``error`` says so (the others go on), or its centre
        square translated with ``fallback="center-crop"``. ``detect``: find faces with MTCNN (default: when
        the photos' domain has the ``photo`` profile, see :attr:`profiles`); False takes every picture as a face
        crop (centre square). ``margin``/``border``: the alignment of `twingan prep photo` (keep the training
        crops' values). ``reference``: a picture of domain ``to`` (path or image) whose style every avatar takes
        (its largest face when ``to`` has the ``photo`` profile, unless ``detect=False``); ``attrs``: attribute
        values, as for :meth:`translate`.
        Paths are read with the toolkit's image loader (ImageLoadError for a missing or broken file),
        all of them before any translation.
        """
        from twingan.inference.faces_pipeline import FacePipeline

        src = self.source_domain(to, src)
        if reference is not None:
            self.check_reference_support()
        if attrs:
            self.attribute_labels(attrs)
        detect_inputs = self.detects_faces(src) if detect is None else detect
        pictures = [self._photo(photo) for photo in photos]
        options = dict(max_faces=max_faces, margin=margin, border=border, fallback=fallback)
        pipeline = FacePipeline(self, self.face_detector() if detect_inputs else None, **options)
        cond = None
        if reference is not None or attrs:
            reference_face = None
            if reference is not None:
                on_face = self.detects_faces(to) and detect is not False
                finder = FacePipeline(self, self.face_detector() if on_face else None, **{**options, "max_faces": 1})
                found = finder.face_crops([self._photo(reference)])[0]
                if found.error is not None:
                    raise NoFaceError(f"reference: {found.error}")
                reference_face = found.crops[0].crop
            cond = self.condition(to, reference=reference_face, attrs=attrs)
        return pipeline.run(pictures, to, src, batch_size, cond)

    def face_detector(self) -> FaceDetector:
        """The MTCNN detector on the model's device, made on first use (its weights ship with facenet-pytorch)."""
        if self._detector is None:
            from twingan.faces import FaceDetector

            self._detector = FaceDetector(device=self.device)
        return self._detector

    @staticmethod
    def _photo(photo: Photo) -> Image.Image:
        if isinstance(photo, (str, os.PathLike)):
            return load_image(photo)
        if isinstance(photo, (Image.Image, np.ndarray)):
            return _to_pil(photo)
        raise ConfigError(f"a photo must be a path, a PIL image or a uint8 numpy array, got {type(photo).__name__}")

    # ---- conditioning ------------------------------------------------------------------------

    @property
    def has_style(self) -> bool:
        """Whether the checkpoint can take a reference image (it was trained with ``model.style_dim > 0``)."""
        return self.model.style_encoder is not None

    @property
    def attributes(self) -> dict[str, tuple[str, ...]]:
        """The attribute groups and values the checkpoint was trained with (empty: none)."""
        return dict(self.model.attribute_schema.groups)

    def check_reference_support(self) -> None:
        """ConfigError unless the checkpoint has a style encoder."""
        if not self.has_style:
            raise ConfigError(
                "this checkpoint was trained without reference guidance (no style encoder); train with "
                "model.style_dim>0 (experiment=reference_demo) to translate with a reference image"
            )

    def attribute_labels(self, attrs: Attributes) -> list[int]:
        """See :func:`model_attribute_labels`."""
        return model_attribute_labels(self.model, attrs)

    def load_reference(self, reference: Reference) -> torch.Tensor:
        """A reference image (image or path) -> float32 (1, 3, R, R) in [-1, 1] on the CPU.

        Paths are read with the toolkit's image loader (ImageLoadError for a missing or broken file); the
        picture is centre-cropped and resized like every input.
        """
        if isinstance(reference, (str, os.PathLike)):
            reference = load_image(reference)
        items, _ = _as_list(reference)
        if len(items) != 1:
            raise ConfigError(f"reference must be one image, got {len(items)}")
        return self._to_model_tensor(items[0])[None]

    @torch.inference_mode()
    def style_code(self, reference: Reference, domain: str) -> torch.Tensor:
        """(1, style_dim) style code of ``reference`` taken as a picture of ``domain``, on the CPU."""
        self.check_domain(domain, "reference domain")
        self.check_reference_support()
        return self.model.style(self.load_reference(reference).to(self.device), domain).float().cpu()

    @torch.inference_mode()
    def condition(
        self, to: str, reference: Reference | None = None, attrs: Attributes | None = None
    ) -> torch.Tensor | None:
        """The (1, cond_dim) condition for translating into ``to``, on the CPU; None when nothing is asked.

        ``reference``: a picture of domain ``to`` (its style is encoded with ``to``'s head); ``attrs``: attribute
        values. An empty ``attrs`` asks nothing. Errors (ConfigError) come before any translation work.
        """
        self.check_domain(to, "target domain")
        if reference is None and not attrs:
            return None
        if reference is not None:
            self.check_reference_support()
        labels = torch.tensor([self.attribute_labels(attrs)], dtype=torch.long) if attrs else None
        style = self.style_code(reference, to) if reference is not None else None
        cond = self.model.condition(
            1,
            style=style.to(self.device) if style is not None else None,
            labels=labels.to(self.device) if labels is not None else None,
            device=self.device,
        )
        return cond.float().cpu() if cond is not None else None

    @torch.inference_mode()
    def embed(
        self, images: Images, domain: str, kind: str = "full", batch_size: int = DEFAULT_BATCH_SIZE
    ) -> np.ndarray:
        """float32 (N, D) L2-normalised embeddings (the 4x4 latent with ``domain``'s normalisation)."""
        self.check_domain(domain, "domain")
        if kind not in EMBEDDING_KINDS:
            raise ConfigError(f"embedding kind must be one of {', '.join(EMBEDDING_KINDS)}, got {kind!r}")
        _check_batch_size(batch_size)
        items, _ = _as_list(images)
        batch = torch.stack([self._to_model_tensor(item) for item in items]) if items else None
        if batch is None:
            return np.zeros((0, self.embedding_dim(kind)), dtype=np.float32)
        vectors = [
            self.check_finite(self.model.embed(chunk.to(self.device), domain, kind).float().cpu())
            for chunk in batch.split(batch_size)
        ]
        return torch.cat(vectors).numpy().astype(np.float32, copy=False)

    def embedding_dim(self, kind: str = "full") -> int:
        channels = self.model.encoder.latent_channels
        return channels * 16 if kind == "full" else channels

    def _to_model_tensor(self, item: ImageLike) -> torch.Tensor:
        """One image -> float32 (3, R, R) in [-1, 1] on the CPU."""
        res = self.resolution
        if isinstance(item, torch.Tensor):
            if item.dtype == torch.uint8 or not item.is_floating_point():
                raise ConfigError(f"image tensors must be float in [-1, 1], got dtype {item.dtype}")
            if item.dim() != 3 or item.shape[0] != 3:
                raise ConfigError(f"an image tensor must be (3, H, W), got shape {tuple(item.shape)}")
            if tuple(item.shape[1:]) == (res, res):
                return item.detach().float().cpu()
            item = tensor_to_pil(item)
        pil = _to_pil(item)
        return pil_to_tensor(Image.fromarray(resize_square(pil, res), "RGB"))


def _as_list(images: Images) -> tuple[list[ImageLike], bool]:
    """Split the accepted inputs into single images; the flag says whether one image was given."""
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return list(images), False
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images), False
    if isinstance(images, (Image.Image, np.ndarray, torch.Tensor)):
        return [images], True
    if isinstance(images, (list, tuple)):
        for item in images:
            if not isinstance(item, (Image.Image, np.ndarray, torch.Tensor)):
                raise ConfigError(f"expected PIL images, numpy arrays or tensors, got {type(item).__name__}")
        return list(images), False
    raise ConfigError(
        f"expected a PIL image, numpy array, tensor or a list of them, got {type(images).__name__}"
    )


def _to_pil(item: Union[Image.Image, np.ndarray]) -> Image.Image:
    if isinstance(item, Image.Image):
        return to_rgb(item, WHITE)
    if item.dtype != np.uint8:
        raise ConfigError(f"numpy images must be uint8 (H, W[, 3 or 4]), got dtype {item.dtype}")
    if item.ndim == 2:
        return Image.fromarray(item, "L").convert("RGB")
    if item.ndim == 3 and item.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(item), "RGB")
    if item.ndim == 3 and item.shape[2] == 4:
        return to_rgb(Image.fromarray(np.ascontiguousarray(item), "RGBA"), WHITE)
    raise ConfigError(f"numpy images must be (H, W), (H, W, 3) or (H, W, 4), got shape {item.shape}")


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
