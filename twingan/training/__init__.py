"""Training: Hydra config, progressive schedule, the loop, checkpoints and resume, DDP."""
from twingan.training.config import compose_config
from twingan.training.trainer import Trainer, TrainingDiverged, train

__all__ = ["compose_config", "Trainer", "TrainingDiverged", "train"]
