"""Domain datasets: one per domain of a training run (they may differ in size: training is unpaired).

Kinds (``build_domain_dataset({"kind": ..., "root": ..., ...})``):

* ``folder``: every image below ``root`` (recursive, any common format);
* ``celeba``: ``root/img_align_celeba/`` + ``list_eval_partition.txt``
  (0/1/2 = train/val/test) + optional ``list_attr_celeba.txt`` (the Kaggle
  ``.csv`` versions are read too);
* ``getchu``: a folder of anime face crops, with optional ``train.txt``,
  ``val.txt``, ``test.txt`` lists of paths relative to ``root``;
* ``cat``: the CAT dataset layout, ``X.jpg`` + ``X.jpg.cat`` with 9 keypoints;
  items are face crops computed from the keypoints (:mod:`twingan.data.cat_crop`).

Where a layout has no split of its own (folder, cat, getchu without lists) a
split other than ``all`` is chosen by a hash of the path relative to ``root``:
SHA-1 of the POSIX relative path, first 8 bytes read as a number u in [0, 1);
u < 1 - val_fraction - test_fraction is train, then val, then test. It is
stable across machines and when files are added or removed.

Every item is a uint8 tensor (3, R, R) at the dataset's resolution R
(:meth:`ImageDomainDataset.set_resolution`): the image is decoded with
:func:`~twingan.data.image_io.load_image`, centre-cropped to a square and
resized with PIL (box filter, i.e. area averaging, when shrinking; bicubic when
enlarging), or read from the pre-resized cache when it holds R.

Bad files never stop an epoch: an item that fails to load is recorded in
``bad_files`` (path -> reason), warned about once (:class:`BadImageWarning`)
and replaced by the next readable item (index + 1, + 2, ... modulo the
length); :meth:`ImageDomainDataset.load_with_index` also returns the index
actually loaded, so that per-image labels can follow the substitution. The
record is shared with DataLoader worker processes. A dataset in which no file
at all can be read raises DatasetError naming its root.

Workers receive a copy of the dataset when an iterator starts, so call
``set_resolution`` before starting an epoch's iterator (and do not use
``persistent_workers`` across resolution changes).
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

import numpy as np
import torch
import torch.utils.data
from PIL import Image

from twingan.data.cache import ImageCache, source_entry
from twingan.data.cat_crop import DEFAULT_MARGIN, CatKeypointError, crop_cat_face, read_cat_keypoints
from twingan.data.image_io import DEFAULT_MAX_PIXELS, iter_image_files, load_image, resize_square
from twingan.errors import ConfigError, DatasetError, ImageLoadError

PathLike = Union[str, os.PathLike]
log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "all")
RESIZE_METHOD = "centre-square; PIL box down / bicubic up; JPEG draft decode"
"""Recorded in caches: pixels made another way are not mixed with these."""
KEYPOINT_TOLERANCE = 0.25
"""CAT keypoints may lie outside the photo by this fraction of its size (ear tips cut off)."""


class BadImageWarning(UserWarning):
    """A dataset skipped a file it could not read; the message names the file and the reason."""


def hash_split(relative_path: str, val_fraction: float, test_fraction: float) -> str:
    """The split ('train', 'val' or 'test') a file belongs to by the hash of its relative path."""
    digest = hashlib.sha1(relative_path.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    if u < 1.0 - val_fraction - test_fraction:
        return "train"
    if u < 1.0 - test_fraction:
        return "val"
    return "test"


class ImageDomainDataset(torch.utils.data.Dataset):
    """Images of one domain as uint8 (3, R, R) tensors; never raises for a bad file mid-epoch.

    Attributes: ``root``, ``split``, ``paths`` (list of Path), ``attributes``
    (CelebA: attribute name -> bool array aligned with ``paths``; else None),
    ``keypoints`` (CAT: float array (N, 9, 2), NaN where unreadable; else
    None), ``resolution``, ``cache`` (an ImageCache or None), ``bad_files``.
    """

    kind = "folder"

    def __init__(
        self,
        root: PathLike,
        paths: Sequence[PathLike],
        *,
        split: str = "all",
        resolution: int = 256,
        cache: PathLike | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        min_size: int = 1,
        attributes: dict[str, np.ndarray] | None = None,
        keypoints: np.ndarray | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise DatasetError(
                f"{self.root}: no image files for split {split!r} of a {self.kind} dataset; "
                "check the root folder and the split option"
            )
        self.attributes = attributes
        self.keypoints = keypoints
        self.max_pixels = int(max_pixels)
        self.min_size = int(min_size)
        self.resolution = 0
        self.set_resolution(resolution)
        # One flag per file, in shared memory so that DataLoader workers' findings reach this process.
        self._bad_flags = torch.zeros(len(self.paths), dtype=torch.uint8).share_memory_()
        self._bad_reasons: dict[int, str] = {}
        self._skipped_here = 0
        self.cache: ImageCache | None = None
        self._cache_rows: np.ndarray | None = None
        if cache is not None:
            self.attach_cache(cache)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        cached = f", cache at {self.cache.resolutions}" if self.cache is not None else ""
        return f"{type(self).__name__}({self.kind}, split={self.split}, {len(self)} images in {self.root}, {self.resolution} px{cached})"

    def set_resolution(self, resolution: int) -> None:
        """Size R of the (3, R, R) items from now on."""
        if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
            raise ConfigError(f"dataset resolution must be a positive integer, got {resolution!r}")
        self.resolution = int(resolution)

    def pixel_settings(self) -> dict[str, Any]:
        """How item pixels are made from a file; a cache must have been built with the same settings."""
        return {"resize": RESIZE_METHOD}

    def load_source(self, index: int, draft_size: int | None = None) -> Image.Image:
        """The decoded picture of item ``index`` before squaring and resizing; raises ImageLoadError."""
        return load_image(self.paths[index], max_pixels=self.max_pixels, min_size=self.min_size, draft_size=draft_size)

    def load_square(self, index: int, resolution: int) -> np.ndarray:
        """Item ``index`` decoded from its file at ``resolution``: (R, R, 3) uint8; raises ImageLoadError."""
        return resize_square(self.load_source(index, draft_size=resolution), resolution)

    def _load_item(self, index: int) -> torch.Tensor:
        resolution = self.resolution
        if self.cache is not None and resolution in self.cache.resolutions:
            pixels = self.cache.array(resolution)[self._cache_rows[index]]  # a read-only view
        else:
            pixels = self.load_square(index, resolution)
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.load_with_index(index)[0]

    def load_with_index(self, index: int) -> tuple[torch.Tensor, int]:
        """Item ``index`` and the index actually loaded: a bad file is replaced by the next readable one.

        Per-image data (labels, attributes) must be looked up by the returned
        index, not by ``index``, to stay aligned with the pixels.
        """
        count = len(self.paths)
        for step in range(count):
            candidate = (index + step) % count
            if self._bad_flags[candidate]:
                continue
            try:
                return self._load_item(candidate), candidate
            except ImageLoadError as exc:
                self._mark_bad(candidate, exc.reason, warn=True)
        raise DatasetError(
            f"{self.root}: none of the {count} files of this {self.kind} dataset can be read; "
            f"run `twingan prep check {self.root}` to see why"
        )

    def _mark_bad(self, index: int, reason: str, warn: bool) -> None:
        self._bad_flags[index] = 1
        self._bad_reasons[index] = reason
        if warn:
            self._skipped_here += 1
            warnings.warn(
                f"{self.paths[index]}: skipped unreadable image ({reason}); {self._skipped_here} file(s) skipped "
                f"so far in this process; `twingan prep check {self.root}` lists them all",
                BadImageWarning,
                stacklevel=2,
            )

    @property
    def bad_files(self) -> dict[str, str]:
        """Files found unreadable so far (path -> reason), in this process or in DataLoader workers."""
        found = {}
        for index in np.flatnonzero(self._bad_flags.numpy()):
            index = int(index)
            if index not in self._bad_reasons:
                # A worker process found this one; its reason stayed there, so find it again here.
                self._bad_reasons[index] = self._probe(index) or (
                    "failed to load in a DataLoader worker but reads fine now (was it being written?)"
                )
            found[str(self.paths[index])] = self._bad_reasons[index]
        return found

    def _probe(self, index: int) -> str | None:
        """The reason item ``index`` cannot be loaded from its file, or None when it loads."""
        try:
            self.load_source(index)
        except ImageLoadError as exc:
            return exc.reason
        return None

    def scan(
        self,
        num_workers: int = 0,
        progress: Callable[[Iterator, int], Iterator] | None = None,
    ) -> dict[str, str]:
        """Decode every file now; record and return the unreadable ones (path -> reason).

        ``progress(iterator, total)`` may wrap the iteration (e.g. in a tqdm
        bar). Raises DatasetError when no file at all is readable.
        """
        loader = torch.utils.data.DataLoader(_ScanSource(self), batch_size=None, num_workers=num_workers)
        results: Iterator = iter(loader)
        if progress is not None:
            results = progress(results, len(self))
        for index, reason in results:
            if reason is None:
                self._bad_flags[index] = 0
                self._bad_reasons.pop(index, None)
            else:
                self._mark_bad(index, reason, warn=False)
        bad = self.bad_files
        if len(bad) == len(self):
            raise DatasetError(
                f"{self.root}: none of the {len(self)} files of this {self.kind} dataset can be read "
                f"(first problem: {next(iter(bad.items()))})"
            )
        return bad

    def attach_cache(self, cache_dir: PathLike) -> None:
        """Serve items from the pre-resized cache in ``cache_dir``; DatasetError if it is missing or stale."""
        cache = ImageCache(cache_dir)
        entries = [source_entry(self.root, p) for p in self.paths]
        stale = cache.stale_reasons(self.kind, self.pixel_settings(), entries)
        if stale:
            raise DatasetError(
                f"image cache {cache.cache_dir} is stale for the dataset in {self.root}: {'; '.join(stale)}. "
                f"Rebuild it with `{self.cache_command(cache.cache_dir, cache.resolutions)}`, "
                "or set the dataset's cache option to null to decode the source files"
            )
        self.cache = cache
        self._cache_rows = np.array([cache.rows[e[0]] for e in entries], dtype=np.int64)
        for index, entry in enumerate(entries):
            reason = cache.bad.get(entry[0])
            if reason is not None:
                self._mark_bad(index, reason, warn=False)

    def cache_command(self, out_dir: PathLike, resolutions: Sequence[int]) -> str:
        """The `twingan prep cache` command line that builds a cache for this dataset."""
        options = "".join(f" --option {k}={v}" for k, v in self.kind_options().items())
        sizes = " ".join(str(r) for r in resolutions)
        return f"twingan prep cache --kind {self.kind} --root {self.root}{options} --resolutions {sizes} --out {out_dir}"

    def kind_options(self) -> dict[str, Any]:
        """Kind-specific spec keys that change the cached pixels or file names (repeated in cache commands)."""
        return {}


class _ScanSource(torch.utils.data.Dataset):
    def __init__(self, dataset: ImageDomainDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, str | None]:
        return index, self.dataset._probe(index)


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise DatasetError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be >= 0 with a sum below 1"
        )


def _existing_dir(root: PathLike, option: str = "root") -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset {option} {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"dataset {option} {root} is not a folder")
    return root


def _hash_filtered(root: Path, paths: Sequence[Path], split: str, val_fraction: float, test_fraction: float) -> list[Path]:
    if split == "all":
        return list(paths)
    _check_fractions(val_fraction, test_fraction)
    return [p for p in paths if hash_split(p.relative_to(root).as_posix(), val_fraction, test_fraction) == split]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


class FolderDataset(ImageDomainDataset):
    """Every image file below ``root``; splits other than 'all' by path hash."""

    kind = "folder"

    def __init__(self, root: PathLike, split: str = "all", *, val_fraction: float = 0.05,
                 test_fraction: float = 0.05, **common: Any) -> None:
        _check_split(split)
        root = _existing_dir(root)
        paths = _hash_filtered(root, list(iter_image_files(root)), split, val_fraction, test_fraction)
        super().__init__(root, paths, split=split, **common)


def _read_rows(path: Path) -> list[list[str]]:
    """Rows of a whitespace- or comma-separated text file, blank lines dropped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            rows.append([t.strip() for t in line.split(",")] if "," in line else line.split())
    return rows


def _first_existing(root: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (root / name).is_file():
            return root / name
    return None


class CelebADataset(ImageDomainDataset):
    """CelebA: ``img_align_celeba/`` + ``list_eval_partition.txt`` (+ ``list_attr_celeba.txt``)."""

    kind = "celeba"
    PARTITIONS = {"train": 0, "val": 1, "test": 2}
    PARTITION_FILES = ("list_eval_partition.txt", "list_eval_partition.csv")
    ATTRIBUTE_FILES = ("list_attr_celeba.txt", "list_attr_celeba.csv")

    def __init__(self, root: PathLike, split: str = "all", *, image_dir: str = "img_align_celeba",
                 **common: Any) -> None:
        _check_split(split)
        root = _existing_dir(root)
        self.image_dir = image_dir
        images = root / image_dir
        if not images.is_dir():
            raise DatasetError(
                f"{images} not found: a CelebA root holds {image_dir}/ and list_eval_partition.txt "
                "(set the image_dir option if the images folder has another name)"
            )
        partition_file = _first_existing(root, self.PARTITION_FILES)
        if partition_file is not None:
            names = self._read_partition(partition_file, split)
        elif split == "all":
            names = [p.relative_to(images).as_posix() for p in iter_image_files(images)]
        else:
            raise DatasetError(
                f"{root / self.PARTITION_FILES[0]} not found: it is needed for split {split!r} "
                "(use split: all to take every image)"
            )
        attribute_file = _first_existing(root, self.ATTRIBUTE_FILES)
        attributes = self._read_attributes(attribute_file, names) if attribute_file is not None else None
        super().__init__(root, [images / n for n in names], split=split, attributes=attributes, **common)

    @classmethod
    def _read_partition(cls, path: Path, split: str) -> list[str]:
        rows = _read_rows(path)
        if rows and rows[0][-1].lower() == "partition":
            rows = rows[1:]
        names = []
        for number, row in enumerate(rows, start=1):
            if len(row) != 2 or row[1] not in ("0", "1", "2"):
                raise DatasetError(f"{path}: row {number} is {' '.join(row)!r}, expected 'FILE.jpg 0|1|2'")
            if split == "all" or int(row[1]) == cls.PARTITIONS[split]:
                names.append(row[0])
        return names

    @staticmethod
    def _read_attributes(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
        rows = _read_rows(path)
        if len(rows) < 2:
            raise DatasetError(f"{path}: too short for a CelebA attribute list")
        if len(rows[0]) == 1:
            attribute_names, data = rows[1], rows[2:]
        else:
            attribute_names, data = rows[0][1:], rows[1:]
        table = {}
        for number, row in enumerate(data, start=1):
            if len(row) != len(attribute_names) + 1 or any(v not in ("1", "-1", "0") for v in row[1:]):
                raise DatasetError(
                    f"{path}: data row {number} ({row[0]}) does not hold {len(attribute_names)} values of 1/-1"
                )
            table[row[0]] = [v == "1" for v in row[1:]]
        missing = [n for n in names if n not in table]
        if missing:
            raise DatasetError(f"{path}: no attributes for {len(missing)} image(s) of the split (e.g. {missing[0]})")
        values = np.array([table[n] for n in names], dtype=bool).reshape(len(names), len(attribute_names))
        return {name: values[:, column].copy() for column, name in enumerate(attribute_names)}

    def kind_options(self) -> dict[str, Any]:
        return {"image_dir": self.image_dir}


class GetchuDataset(ImageDomainDataset):
    """Anime face crops; ``train.txt`` / ``val.txt`` / ``test.txt`` in ``root`` list each split.

    Without any list file, splits other than 'all' are taken by path hash
    (logged). With some list files present, a split whose list is missing is
    an error.
    """

    kind = "getchu"

    def __init__(self, root: PathLike, split: str = "all", *, val_fraction: float = 0.05,
                 test_fraction: float = 0.05, **common: Any) -> None:
        _check_split(split)
        root = _existing_dir(root)
        lists = {s: root / f"{s}.txt" for s in ("train", "val", "test")}
        present = [s for s, p in lists.items() if p.is_file()]
        if split == "all":
            paths = list(iter_image_files(root))
        elif split in present:
            paths = self._read_list(root, lists[split])
        elif present:
            raise DatasetError(
                f"{lists[split]} not found, though {', '.join(f'{s}.txt' for s in present)} exist in {root}; "
                f"write it or choose split: all"
            )
        else:
            log.info("%s: no train/val/test.txt lists; taking split %r by path hash", root, split)
            paths = _hash_filtered(root, list(iter_image_files(root)), split, val_fraction, test_fraction)
        super().__init__(root, paths, split=split, **common)

    @staticmethod
    def _read_list(root: Path, list_file: Path) -> list[Path]:
        try:
            lines = list_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{list_file}: cannot read ({exc})") from exc
        entries = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        absolute = [e for e in entries if Path(e).is_absolute()]
        if absolute:
            raise DatasetError(f"{list_file}: paths must be relative to {root}, found {absolute[0]}")
        return [root / e for e in entries]


class CatDataset(ImageDomainDataset):
    """The CAT dataset: photos with ``.cat`` keypoint files; items are eye-levelled face crops.

    Keypoints are taken to refer to the photo as displayed (EXIF orientation
    applied). Photos with a missing or malformed ``.cat`` file, or keypoints
    far outside the photo, are bad files with the reason recorded.
    """

    kind = "cat"

    def __init__(self, root: PathLike, split: str = "all", *, margin: float = DEFAULT_MARGIN,
                 val_fraction: float = 0.05, test_fraction: float = 0.05, **common: Any) -> None:
        _check_split(split)
        root = _existing_dir(root)
        if margin < 0:
            raise DatasetError(f"cat margin must be >= 0, got {margin}")
        self.margin = float(margin)
        paths = _hash_filtered(root, list(iter_image_files(root)), split, val_fraction, test_fraction)
        keypoints = np.full((len(paths), 9, 2), np.nan)
        problems: dict[int, str] = {}
        for index, path in enumerate(paths):
            try:
                keypoints[index] = read_cat_keypoints(f"{path}.cat")
            except CatKeypointError as exc:
                problems[index] = f"{exc.reason} ({path.name}.cat)"
        super().__init__(root, paths, split=split, keypoints=keypoints, **common)
        for index, reason in problems.items():
            self._mark_bad(index, reason, warn=False)
        if problems:
            log.warning(
                "%s: %d of %d photos have a missing or malformed .cat keypoint file and are skipped; "
                "`twingan prep check %s --kind cat` lists them", root, len(problems), len(paths), root,
            )

    def pixel_settings(self) -> dict[str, Any]:
        return {"resize": RESIZE_METHOD, "cat_margin": self.margin}

    def kind_options(self) -> dict[str, Any]:
        return {"margin": self.margin}

    def load_source(self, index: int, draft_size: int | None = None) -> Image.Image:
        """The face crop at the photo's own scale (keypoints are in full-size pixels, so no draft decoding)."""
        path = self.paths[index]
        keypoints = self.keypoints[index]
        if np.isnan(keypoints).any():
            try:
                read_cat_keypoints(f"{path}.cat")
            except CatKeypointError as exc:
                raise ImageLoadError(str(path), f"{exc.reason} ({path.name}.cat)") from exc
            raise ImageLoadError(str(path), "keypoint file changed since the dataset was opened")
        photo = load_image(path, max_pixels=self.max_pixels, min_size=self.min_size)
        width, height = photo.size
        low = -KEYPOINT_TOLERANCE * np.array([width, height])
        high = (1 + KEYPOINT_TOLERANCE) * np.array([width, height])
        if (keypoints < low).any() or (keypoints > high).any():
            raise ImageLoadError(str(path), f"keypoints lie outside the {width}x{height} photo ({path.name}.cat)")
        return crop_cat_face(photo, keypoints, None, self.margin)


DATASET_KINDS: dict[str, type[ImageDomainDataset]] = {
    "folder": FolderDataset,
    "celeba": CelebADataset,
    "getchu": GetchuDataset,
    "cat": CatDataset,
}
COMMON_KEYS = ("kind", "root", "split", "cache", "resolution", "max_pixels", "min_size")
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "folder": ("val_fraction", "test_fraction"),
    "celeba": ("image_dir",),
    "getchu": ("val_fraction", "test_fraction"),
    "cat": ("margin", "val_fraction", "test_fraction"),
}


def build_domain_dataset(spec: Mapping[str, Any]) -> ImageDomainDataset:
    """Build a domain dataset from a dict-like spec.

    Keys: ``kind`` (folder | celeba | getchu | cat), ``root``, ``split``
    (train | val | test | all; default all), ``cache`` (a folder made by
    ``twingan prep cache``, or null), ``resolution`` (default 256),
    ``max_pixels``, ``min_size``; kind-specific: ``val_fraction``,
    ``test_fraction`` (folder, getchu, cat: hash split, default 0.05 each),
    ``image_dir`` (celeba, default img_align_celeba), ``margin`` (cat, default 0.2).
    Raises DatasetError naming the bad key, value or path.
    """
    spec = dict(spec)
    kind = spec.get("kind")
    if kind not in DATASET_KINDS:
        raise DatasetError(f"dataset kind {kind!r} is not one of {', '.join(DATASET_KINDS)} (option kind)")
    allowed = COMMON_KEYS + KIND_KEYS[kind]
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise DatasetError(f"unknown option(s) {', '.join(unknown)} for a {kind} dataset; allowed: {', '.join(allowed)}")
    if spec.get("root") in (None, ""):
        raise DatasetError(f"the {kind} dataset needs a root folder (option root)")
    root = _existing_dir(str(spec.pop("root")))
    spec.pop("kind")
    cache = spec.pop("cache", None)
    if cache not in (None, ""):
        spec["cache"] = Path(str(cache)).expanduser()
    return DATASET_KINDS[kind](root, **spec)
