"""What a training checkpoint holds beyond the weights, and how it is read back for an exact resume.

Tensors are named by prefix: ``model.``/``ema.``/``disc.`` for the modules, ``optim.<side>.<param>.<field>`` for
the Adam states (their param groups go into the metadata) and ``rng.<stream>.<rank>`` for every rank's random
generators; NumPy's and Python's global states go into the metadata as lists.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from twingan.checkpoint import check_finite, load_tensors, read_meta, stored_model_config
from twingan.errors import CheckpointError
from twingan.models import ModelConfig
import twingan.training.distributed as ddp

NamedModules = Sequence[tuple[str, torch.nn.Module]]
NamedOptimizers = Sequence[tuple[str, torch.optim.Optimizer]]


def weights_and_optimizers(
    modules: NamedModules, optimizers: NamedOptimizers
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The modules' and optimisers' tensors by name, and the optimisers' param groups by side."""
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in modules:
        tensors.update({prefix + k: v for k, v in module.state_dict().items()})
    param_groups = {}
    for name, opt in optimizers:
        sd = opt.state_dict()
        for idx, state in sd["state"].items():
            for key, value in state.items():
                tensors[f"optim.{name}.{idx}.{key}"] = torch.as_tensor(value)
        param_groups[name] = sd["param_groups"]
    return tensors, param_groups


def random_stream_tensors(streams: Mapping[str, torch.Generator], dist: ddp.DistInfo) -> dict[str, torch.Tensor]:
    """Every rank's generator states and torch's global state, gathered from all ranks."""
    local = {name: generator.get_state() for name, generator in streams.items()}
    local["torch"] = torch.get_rng_state()
    tensors = {}
    for rank, states in enumerate(ddp.gather_objects(local, dist)):
        for key, value in states.items():
            tensors[f"rng.{key}.{rank}"] = value
    return tensors


def global_random_states() -> dict[str, list]:
    """NumPy's and Python's global random states as JSON-friendly lists."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss],
    }


def read_training_checkpoint(path: Path, model_cfg: ModelConfig) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors (on the CPU) and metadata of a training checkpoint of this architecture, weights all finite."""
    meta = read_meta(path)
    if meta.get("kind") != "training":
        raise CheckpointError(f"{path}: not a training checkpoint (kind={meta.get('kind')!r}); cannot resume from it")
    if stored_model_config(meta, path) != model_cfg:
        raise CheckpointError(
            f"{path}: its architecture differs from this run's model settings; resume with the config it was "
            "trained with (see config.yaml in its run folder)"
        )
    tensors = load_tensors(path, device="cpu")
    check_finite({k: v for k, v in tensors.items() if not k.startswith("rng.")}, path, "weight or optimiser")
    return tensors, meta


def load_weights_and_optimizers(
    tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], modules: NamedModules, optimizers: NamedOptimizers
) -> None:
    for prefix, module in modules:
        sub = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        module.load_state_dict(sub, strict=True)
    for name, opt in optimizers:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith(f"optim.{name}."):
                _, _, idx, field = key.split(".", 3)
                state.setdefault(int(idx), {})[field] = value
        opt.load_state_dict({"state": state, "param_groups": meta["optimizers"][name]})


def restore_random_streams(
    tensors: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any],
    streams: Mapping[str, torch.Generator],
    dist: ddp.DistInfo,
) -> bool:
    """Put this rank's generators and the global random states back; False when the checkpoint has none for
    this rank (it was written by another number of ranks) and nothing was changed."""
    rank = dist.rank
    if int(meta.get("world_size", 1)) != dist.world_size or f"rng.{next(iter(streams))}.{rank}" not in tensors:
        return False
    for name, generator in streams.items():
        generator.set_state(tensors[f"rng.{name}.{rank}"])
    torch.set_rng_state(tensors[f"rng.torch.{rank}"])
    name, keys, pos, has_gauss, cached = meta["rng"]["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["rng"]["python"]
    random.setstate((version, tuple(internal), gauss))
    return True
