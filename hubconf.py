"""torch.hub entry point: ``torch.hub.load(repo_dir, "twingan", source="local", path="ckpt.safetensors")``."""
dependencies = ["torch", "numpy", "PIL", "safetensors", "cv2"]


def twingan(path: str, device: str = "cpu", weights: str = "ema"):
    """A :class:`twingan.inference.Translator` for the checkpoint at ``path`` (EMA weights by default)."""
    from twingan.inference import Translator

    return Translator.load(path, device=device, weights=weights)
