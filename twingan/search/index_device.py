"""Where an index searches: the CPU master copy, or a GPU copy when FAISS sees a GPU and supports the kind."""
from __future__ import annotations

from typing import Any, Mapping

import faiss

from twingan.errors import ConfigError

GPU_MAX_K = 2048
GPU_PQ_M = (1, 2, 3, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96)


def gpu_unsupported(kind: str, params: Mapping[str, Any]) -> str | None:
    """Why FAISS cannot run this index on a GPU, or None if it can."""
    if kind == "hnsw":
        return "FAISS has no GPU version of the hnsw index"
    if kind == "ivf_pq" and params.get("pq_m") not in GPU_PQ_M:
        return f"FAISS GPU IVF-PQ supports pq_m in {GPU_PQ_M}, not {params.get('pq_m')}"
    return None


def resolve_device(device: str, kind: str, params: Mapping[str, Any]) -> str:
    """``auto`` means the GPU when FAISS sees one and supports the index kind, else the CPU."""
    if device not in ("auto", "cpu", "gpu"):
        raise ConfigError(f"device must be auto, cpu or gpu, got {device!r}")
    has_gpu = faiss.get_num_gpus() > 0
    unsupported = gpu_unsupported(kind, params)
    if device == "gpu":
        if not has_gpu:
            raise ConfigError("device gpu requested but FAISS sees no GPU (is faiss-gpu installed with CUDA?)")
        if unsupported:
            raise ConfigError(f"{unsupported}; use device cpu or another index kind")
        return "gpu"
    if device == "auto" and has_gpu and unsupported is None:
        return "gpu"
    return "cpu"


def gpu_copy(resources: Any, cpu_index: faiss.Index) -> faiss.Index:
    """A GPU copy for searching. The PCA/L2norm chain stays on the CPU (FAISS cannot clone L2norm) and is shared."""
    if not isinstance(cpu_index, faiss.IndexPreTransform):
        return faiss.index_cpu_to_gpu(resources, 0, cpu_index)
    gpu_index = faiss.IndexPreTransform(faiss.index_cpu_to_gpu(resources, 0, cpu_index.index))
    for position in reversed(range(cpu_index.chain.size())):
        gpu_index.prepend_transform(cpu_index.chain.at(position))
    return gpu_index
