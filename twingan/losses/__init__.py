"""Losses: GAN objectives with their gradient penalties, and TwinGAN's translation losses."""
from twingan.losses.gan import OBJECTIVES, GANObjective, build_objective
from twingan.losses.conditioning import StepInputs, draw_inputs
from twingan.losses.translation import LossWeights, TranslationLosses

__all__ = [
    "OBJECTIVES",
    "GANObjective",
    "build_objective",
    "LossWeights",
    "TranslationLosses",
    "StepInputs",
    "draw_inputs",
]
