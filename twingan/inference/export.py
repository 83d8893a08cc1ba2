"""Export one translation direction to ``torch.export`` (.pt2) or ONNX, checked against the PyTorch model.

The exported model takes a float32 (N, 3, R, R) batch in [-1, 1] at the
checkpoint's resolution R (N is free: a dynamic dimension) and returns the
translation in the same layout, clamped to [-1, 1]. The source and target
domains are fixed at export; the encoder's skip features stay inside the graph.

A checkpoint trained with a style encoder and/or attributes is exported with
those inputs too (``conditioned=True``, the default): ``reference`` (N, 3, S, S)
in [-1, 1], the reference face already resized to the style encoder's
resolution S (antialiased resizing does not export to ONNX), and ``attributes``
(N, A): one one-hot block per attribute group, all zeros for "keep the
source's". ``conditioned=False`` exports the plain translation.

Both formats come from ``torch.export`` (no TorchScript, no tracing): ``pt2``
is the saved ExportedProgram (``torch.export.load(path).module()`` runs it) and
ONNX is written by ``torch.onnx.export(..., dynamo=True)`` (which needs the
onnxscript package). The parity check runs the written file on a fixed-seed
batch whose size differs from the export batch (so a batch size baked into the
graph is caught) and compares with the PyTorch model; a file that fails the
check is not kept.

A third format, ``release``, is not one direction but the whole translator for
inference (:mod:`twingan.inference.release`).
"""
from __future__ import annotations

import copy
import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from twingan import __version__
from twingan.checkpoint import file_sha256
from twingan.errors import ConfigError, TwinGANError
from twingan.inference.translator import Translator
from twingan.models import TwinGAN
from twingan.models.twingan import condition_vector
from twingan.utils.atomic import atomic_path

PathLike = Union[str, os.PathLike]

FORMATS = ("pt2", "onnx")
"""One direction; `twingan export --format release` writes a release file instead (see the module docstring)."""
EXTENSIONS = {"pt2": ".pt2", "onnx": ".onnx"}
PARITY_TOLERANCE = 1e-4
"""Largest accepted |exported - PyTorch| over the parity batch, in [-1, 1] image units (fp32, CPU)."""
DEFAULT_OPSET = 20
"""The opset torch.onnx's exporter writes by default (no version conversion)."""
EXPORT_BATCH = 2
PARITY_BATCH = 3
METADATA_NAME = "twingan.json"


class ExportParityError(TwinGANError):
    """The exported model's output differs from the PyTorch model's by more than the tolerance."""


class OneDirection(nn.Module):
    """TwinGAN fixed to one direction: [-1, 1] (N, 3, R, R) source images -> clamped target images.

    ``conditioned``: also take the checkpoint's condition inputs, in the order of
    :attr:`input_names` (reference images at the style resolution, attribute one-hots).
    """

    def __init__(self, model: TwinGAN, src: str, dst: str, conditioned: bool = False) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.generator = model.generator
        self.src = model.domain_index(src)
        self.dst = model.domain_index(dst)
        self.style_encoder = model.style_encoder if conditioned else None
        self.attribute_dim = model.attribute_schema.dim if conditioned and model.attribute_schema else 0

    @property
    def input_names(self) -> list[str]:
        return ["image"] + ["reference"] * (self.style_encoder is not None) + ["attributes"] * (self.attribute_dim > 0)

    def forward(self, x: torch.Tensor, *condition_inputs: torch.Tensor) -> torch.Tensor:
        latent, skips = self.encoder(x, self.src)
        style = self.style_encoder(condition_inputs[0], self.dst) if self.style_encoder is not None else None
        cond = condition_vector(style, condition_inputs[-1] if self.attribute_dim else None)
        return self.generator(latent, skips, self.dst, cond).clamp(-1.0, 1.0)


def example_inputs(model: TwinGAN, wrapper: OneDirection, n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random inputs for ``wrapper``: images, references and valid attribute vectors (a value or "keep" per group)."""
    res = model.resolution
    inputs = [torch.rand(n, 3, res, res, generator=generator) * 2 - 1]
    if wrapper.style_encoder is not None:
        size = model.cfg.style_resolution
        inputs.append(torch.rand(n, 3, size, size, generator=generator) * 2 - 1)
    if wrapper.attribute_dim:
        schema = model.attribute_schema
        labels = torch.stack([torch.randint(-1, len(values), (n,), generator=generator)
                              for values in schema.groups.values()], dim=1)
        inputs.append(schema.one_hot(labels))
    return tuple(inputs)


@dataclass
class ExportResult:
    path: Path
    format: str
    src: str
    dst: str
    resolution: int
    max_abs_diff: float
    tolerance: float
    inputs: tuple[str, ...] = ("image",)

    def parity_line(self) -> str:
        verdict = "ok" if self.max_abs_diff <= self.tolerance else "EXCEEDED"
        return (
            f"parity vs PyTorch on {PARITY_BATCH} images: max abs diff {self.max_abs_diff:.2e} "
            f"(tolerance {self.tolerance:g}) {verdict}"
        )


def default_output_path(checkpoint: PathLike, fmt: str, src: str, dst: str) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.{src}-to-{dst}{EXTENSIONS[fmt]}")


def export_direction(
    translator: Translator,
    fmt: str,
    to: str,
    src: str | None,
    out: PathLike,
    *,
    tolerance: float = PARITY_TOLERANCE,
    opset: int = DEFAULT_OPSET,
    conditioned: bool = True,
) -> ExportResult:
    """Export ``src`` -> ``to`` of ``translator``'s model (on the CPU, fp32) to ``out`` and check parity.

    ``conditioned``: include the reference/attribute inputs the checkpoint was trained with (see the
    module docstring); False exports the plain translation. Raises ExportParityError (and leaves no
    file) when the exported model differs from PyTorch by more than ``tolerance``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"export format must be one of {list(FORMATS)}, got {fmt!r}")
    src = translator.source_domain(to, src)
    model = copy.deepcopy(translator.model).to("cpu").float().eval()
    wrapper = OneDirection(model, src, to, conditioned).eval()
    res = model.resolution
    generator = torch.Generator().manual_seed(0)
    export_inputs = example_inputs(model, wrapper, EXPORT_BATCH, generator)
    parity_inputs = example_inputs(model, wrapper, PARITY_BATCH, generator)
    info = {
        "twingan_version": __version__,
        "src": src,
        "dst": to,
        "resolution": res,
        "inputs": wrapper.input_names,
        "input": f"float32 (N, 3, {res}, {res}) RGB in [-1, 1]",
        "output": f"float32 (N, 3, {res}, {res}) RGB in [-1, 1]",
        "checkpoint": str(translator.path) if translator.path is not None else None,
        "checkpoint_sha256": file_sha256(translator.path) if translator.path is not None else None,
        "domains": list(model.domains),
    }
    if wrapper.style_encoder is not None:
        size = model.cfg.style_resolution
        info["reference"] = (f"float32 (N, 3, {size}, {size}) RGB in [-1, 1]: a face of {to!r}, resized to "
                             f"{size}x{size} (antialiased when shrinking)")
    if wrapper.attribute_dim:
        info["attributes"] = (f"float32 (N, {wrapper.attribute_dim}): per group a one-hot block in this order, "
                              "all zeros to keep the source's value")
        info["attribute_groups"] = {name: list(values) for name, values in model.attribute_schema.groups.items()}
    out = Path(out)
    with torch.inference_mode():
        expected = wrapper(*parity_inputs).numpy()
    with atomic_path(out) as tmp:
        if fmt == "pt2":
            _export_pt2(wrapper, export_inputs, tmp, info)
            actual = _run_pt2(tmp, parity_inputs)
        else:
            _export_onnx(wrapper, export_inputs, tmp, info, opset)
            actual = _run_onnx(tmp, parity_inputs, wrapper.input_names)
        diff = float(np.abs(actual - expected).max())
        result = ExportResult(out, fmt, src, to, res, diff, tolerance, tuple(wrapper.input_names))
        if not diff <= tolerance:
            raise ExportParityError(f"{out} not written: {result.parity_line()}")
    return result


def _dynamic_batch(inputs: tuple[torch.Tensor, ...]) -> tuple[Any, ...]:
    """``dynamic_shapes`` for ``forward(x, *condition_inputs)``: a named batch dimension on the image; the
    condition inputs' batch is inferred (it must equal the image's)."""
    image = {0: torch.export.Dim("batch")}
    if len(inputs) == 1:
        return (image,)
    return (image, tuple({0: torch.export.Dim.AUTO} for _ in inputs[1:]))


def export_program(wrapper: OneDirection, examples: tuple[torch.Tensor, ...]) -> torch.export.ExportedProgram:
    """``torch.export`` of one direction with a dynamic batch dimension."""
    return torch.export.export(wrapper, examples, dynamic_shapes=_dynamic_batch(examples))


def _export_pt2(wrapper: OneDirection, examples: tuple[torch.Tensor, ...], path: Path, info: dict[str, Any]) -> None:
    torch.export.save(export_program(wrapper, examples), str(path), extra_files={METADATA_NAME: json.dumps(info)})


def _run_pt2(path: Path, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    program = torch.export.load(str(path))
    with torch.inference_mode():
        return program.module()(*inputs).numpy()


def _export_onnx(
    wrapper: OneDirection, examples: tuple[torch.Tensor, ...], path: Path, info: dict[str, Any], opset: int
) -> None:
    onnx = _require("onnx")
    _require("onnxscript")
    program = torch.onnx.export(
        wrapper,
        examples,
        dynamo=True,
        input_names=wrapper.input_names,
        output_names=["translated"],
        dynamic_shapes=_dynamic_batch(examples),
        opset_version=opset,
        optimize=True,
        verbose=False,
    )
    program.save(str(path), external_data=False)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    onnx.helper.set_model_props(proto, {METADATA_NAME: json.dumps(info)})
    onnx.save(proto, str(path))


def _run_onnx(path: Path, inputs: tuple[torch.Tensor, ...], names: list[str]) -> np.ndarray:
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {name: x.numpy() for name, x in zip(names, inputs)})[0]


def read_export_metadata(path: PathLike) -> dict[str, Any]:
    """The JSON facts (direction, resolution, I/O layout) stored in an exported file."""
    path = Path(path)
    if path.suffix == ".onnx":
        onnx = _require("onnx")
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(props[METADATA_NAME])
    files = {METADATA_NAME: ""}
    torch.export.load(str(path), extra_files=files)
    return json.loads(files[METADATA_NAME])


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"ONNX export needs the '{module}' package, which is not installed: pip install 'twingan[export]'"
        ) from exc
