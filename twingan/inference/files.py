"""Translating files: collect inputs (files, folders, globs), run them in batches, write the outputs.

Output names, under the output folder, follow the input's relative stem
(``photos/trip/a.jpg`` given as the folder ``photos`` -> ``trip/a``):

* ``<stem>.png``: the translation (one face, or a picture taken as a crop);
  several faces give ``<stem>_face0.png`` (largest), ``<stem>_face1.png``, ...;
* ``<stem>_side.png`` (``side_by_side``): input crops and translations, one row per face;
* ``<stem>_pasted.png`` (``paste_back``): the photo with the translated faces warped back.

The outputs of one input are written as one set, once the whole input has
been processed: all to temporary files first, then renamed into place with the
main output last, so a failed input leaves no output and a killed run leaves
no input half-published. An input whose main output exists already is skipped
unless ``overwrite`` is set (so an interrupted run can be repeated and
continues where it stopped); temporary files of killed runs are removed.
"""
from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from PIL import Image
from tqdm import tqdm

from twingan.data.image_io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    link_problem,
    load_image,
    no_images_found,
    resolved as resolved_path,
    save_images,
)
from twingan.data.labels import LABELS_FILE
from twingan.errors import ConfigError, ImageLoadError, quoted
from twingan.faces.align import DEFAULT_FEATHER
from twingan.inference.faces_pipeline import FacePipeline, PhotoResult
from twingan.inference.translator import DEFAULT_BATCH_SIZE
from twingan.utils.atomic import remove_stale_temporaries
from twingan.utils.progress import progress_bar

DEFAULT_MIN_SIDE = 16
"""Pictures with a shorter side are refused as too small to translate."""


@dataclass(frozen=True)
class InputFile:
    path: Path
    stem: Path
    """Relative output stem (no suffix)."""


@dataclass
class Failure:
    label: str
    reason: str

    def __str__(self) -> str:
        return f"{quoted(self.label)}: {self.reason}"


@dataclass
class Inputs:
    files: list[InputFile] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    skipped: list[Failure] = field(default_factory=list)


@dataclass
class OutputOptions:
    out_dir: Path
    side_by_side: bool = False
    paste_back: bool = False
    overwrite: bool = False
    feather: float = DEFAULT_FEATHER


@dataclass
class RunSummary:
    translated: int = 0
    faces: int = 0
    failed: list[Failure] = field(default_factory=list)
    skipped: list[Failure] = field(default_factory=list)

    def line(self) -> str:
        text = f"{self.translated} translated, {len(self.failed)} failed"
        if self.skipped:
            text += f", {len(self.skipped)} skipped"
        return text


def collect_inputs(args: Sequence[str], exclude: Path | None = None) -> Inputs:
    """Files, folders (searched recursively) and glob patterns -> input files with their output stems.

    In folders, files with an image extension are inputs; other non-hidden
    files (notes, metadata) are listed in ``skipped``. A file named explicitly
    is always tried, whatever its extension. Two inputs that would write the
    same output name are refused (the later one fails).

    ``exclude`` is the output folder. Inside a folder (or below a glob's base)
    that holds it, its files are outputs of earlier runs, not inputs; an output
    folder that holds an input folder is no reason to leave anything out. An
    output folder that is an input folder is refused (ConfigError), and an input
    whose translation would be written over itself or another input fails.
    """
    inputs = Inputs()
    seen_paths: set[Path] = set()
    stems: dict[Path, Path] = {}
    out = resolved_path(exclude) if exclude is not None else None
    for arg in args:
        root = _root_of(arg)
        if out is not None and root is not None and Path(arg).is_dir() and resolved_path(root) == out:
            raise ConfigError(
                f"--out {quoted(exclude)} is the input folder {quoted(arg)} itself: the translations would be mixed "
                f"with the photos (and could replace them); choose another folder, e.g. {quoted(Path(arg) / 'translated')}"
            )
        outputs_below = out is not None and root is not None and out != resolved_path(root) and \
            out.is_relative_to(resolved_path(root))
        found_before, left_out = len(inputs.files), 0
        for path, stem in _expand(arg, inputs):
            problem = link_problem(path)
            if problem is not None:
                inputs.failures.append(Failure(str(path), problem))
                continue
            resolved = resolved_path(path)
            if outputs_below and resolved.is_relative_to(out):
                left_out += 1
                continue
            if resolved in seen_paths:
                continue
            seen_paths.add(resolved)
            if stem in stems:
                inputs.failures.append(
                    Failure(str(path), f"its output name '{stem}' is taken by {stems[stem]}; rename one of them")
                )
                continue
            stems[stem] = path
            inputs.files.append(InputFile(path, stem))
        if left_out and len(inputs.files) == found_before:
            inputs.failures.append(Failure(arg, f"its only images are under --out {quoted(exclude)}, outputs of an "
                                                "earlier run, which are not translated again"))
    if exclude is not None:
        inputs.files = [item for item in inputs.files if not _writes_over_an_input(item, Path(exclude), seen_paths,
                                                                                   inputs)]
    return inputs


def _root_of(arg: str) -> Path | None:
    """The folder an argument's files are found in: the folder itself, a glob's base; None for a file."""
    path = Path(arg)
    if path.is_dir():
        return path
    if not path.exists() and glob.has_magic(arg):
        return _glob_base(arg)
    return None


def _writes_over_an_input(item: InputFile, out: Path, input_paths: set[Path], inputs: Inputs) -> bool:
    """Whether the translation of ``item`` into the output folder ``out`` would be written over an input (itself,
    or another, of the resolved ``input_paths``); records why."""
    for target in (out / f"{item.stem}.png", out / f"{item.stem}_face0.png"):
        if resolved_path(target) in input_paths:
            inputs.failures.append(Failure(str(item.path), f"its translation {quoted(target)} would be written over "
                                                           "an input; choose an --out folder apart from the inputs"))
            return True
    return False


def _expand(arg: str, inputs: Inputs) -> Iterable[tuple[Path, Path]]:
    path = Path(arg)
    if path.is_dir():
        found = list(_walk_folder(path, inputs.skipped))
        if not found:
            inputs.failures.append(Failure(str(path), no_images_found()))
        yield from found
    elif path.exists() or path.is_symlink():
        yield path, Path(path.stem)
    elif glob.has_magic(arg):
        matches = sorted(Path(p) for p in glob.glob(arg, recursive=True) if Path(p).is_file())
        if not matches:
            inputs.failures.append(Failure(arg, "no file matches this pattern"))
        base = _glob_base(arg)
        for match in matches:
            yield match, match.relative_to(base).with_suffix("")
    else:
        inputs.failures.append(Failure(arg, "file not found"))


def _walk_folder(root: Path, skipped: list[Failure]) -> Iterable[tuple[Path, Path]]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath) / name for name in filenames if not name.startswith("."))
    for path in sorted(found):
        if path.name == LABELS_FILE:
            continue  # the dataset's attribute labels, not an input that was left out
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append(Failure(str(path), f"skipped, not an image file type ('{path.suffix or '(none)'}')"))
            continue
        yield path, path.relative_to(root).with_suffix("")


def _glob_base(pattern: str) -> Path:
    """The leading folders of a glob pattern that hold no wildcard."""
    base = Path()
    for part in Path(pattern).parent.parts:
        if glob.has_magic(part):
            break
        base /= part
    return base


def output_paths(stem: Path, options: OutputOptions, faces: int) -> dict[str, Path]:
    """Output file per role ('face0'..., 'side', 'pasted') for an input with ``faces`` translations."""
    out = options.out_dir
    if faces == 1:
        paths = {"face0": out / f"{stem}.png"}
    else:
        paths = {f"face{k}": out / f"{stem}_face{k}.png" for k in range(faces)}
    if options.side_by_side:
        paths["side"] = out / f"{stem}_side.png"
    if options.paste_back:
        paths["pasted"] = out / f"{stem}_pasted.png"
    return paths


def existing_output(stem: Path, options: OutputOptions) -> Path | None:
    """The main output of an earlier run of this input, if any (checked before any work).

    The main output (the translation, or the first face's) is published last of an input's outputs, so
    its presence says they are all there; an input whose run was killed between two renames is redone.
    """
    candidates = [options.out_dir / f"{stem}.png", options.out_dir / f"{stem}_face0.png"]
    return next((p for p in candidates if p.exists()), None)


def translate_files(
    pipeline: FacePipeline,
    files: Sequence[InputFile],
    to: str,
    src: str,
    options: OutputOptions,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
    cond: torch.Tensor | None = None,
) -> RunSummary:
    """Translate ``files`` ``batch_size`` photos at a time; one line per failed or skipped file goes to ``report``.

    ``cond``: the condition of every translation (reference style, attributes) from
    :meth:`~twingan.inference.translator.Translator.condition`; None translates unconditioned.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    say = report or (lambda line: tqdm.write(line, file=sys.stderr))
    remove_stale_temporaries(options.out_dir, recursive=True)  # of runs that were killed while writing
    summary = RunSummary()
    with progress_bar(total=len(files), unit="photo", desc="translating", file=sys.stderr, disable=not progress) as bar:
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            loaded: list[tuple[InputFile, Image.Image]] = []
            for item in chunk:
                existing = None if options.overwrite else existing_output(item.stem, options)
                if existing is not None:
                    skip = Failure(str(item.path), f"skipped, {quoted(existing)} exists (--overwrite replaces it)")
                    summary.skipped.append(skip)
                    say(str(skip))
                    continue
                try:
                    loaded.append((item, load_image(item.path, max_pixels=max_pixels, min_size=min_side)))
                except ImageLoadError as exc:
                    _fail(summary, say, str(item.path), exc.reason)
            results = pipeline.run([image for _, image in loaded], to, src, batch_size, cond) if loaded else []
            for (item, _), result in zip(loaded, results):
                if result.error is not None:
                    _fail(summary, say, str(item.path), result.error)
                    continue
                try:
                    _write_outputs(result, item.stem, options)
                except OSError as exc:
                    _fail(summary, say, str(item.path), f"cannot write its outputs ({exc})")
                    continue
                summary.translated += 1
                summary.faces += len(result.translations)
            bar.update(len(chunk))
    return summary


def _fail(summary: RunSummary, say: Callable[[str], None], label: str, reason: str) -> None:
    failure = Failure(label, reason)
    summary.failed.append(failure)
    say(str(failure))


def _write_outputs(result: PhotoResult, stem: Path, options: OutputOptions) -> None:
    """Write every output of one input as one set: nothing is published until all are written, and the main
    output (see :func:`existing_output`) is published last."""
    paths = output_paths(stem, options, len(result.translations))
    images = {f"face{k}": img for k, img in enumerate(result.translations)}
    if options.side_by_side:
        images["side"] = result.side_by_side()
    if options.paste_back:
        images["pasted"] = result.pasted(options.feather)
    roles = sorted(paths, key=lambda role: (role.startswith("face"), role == "face0"))
    save_images({paths[role]: images[role] for role in roles})
