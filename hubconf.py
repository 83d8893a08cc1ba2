"""torch.hub entry point: ``torch.hub.load(repo_dir, "twingan", source="local", pretrained="model.safetensors")``."""
dependencies = ["torch", "numpy", "PIL", "safetensors", "cv2"]


def twingan(pretrained: str, device: str = "cpu", weights: str = "ema", sha256: str | None = None):
    """A :class:`twingan.inference.Translator` for a checkpoint or release file (EMA weights by default).

    ``pretrained``: a local path, or a URL downloaded once into torch.hub's cache and checked against
    ``sha256`` (or the hash prefix in a ``name-<sha256 prefix>.safetensors`` file name).
    """
    from twingan.inference import Translator

    return Translator.load(pretrained, device=device, weights=weights, sha256=sha256)
