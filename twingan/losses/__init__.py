"""Losses: GAN objectives with their gradient penalties, and TwinGAN's translation objective composed of terms."""
from twingan.losses.conditioning import StepInputs, draw_inputs
from twingan.losses.gan import OBJECTIVES, GANObjective, build_objective
from twingan.losses.terms import TERMS, Term, active_terms
from twingan.losses.translation import TranslationLosses
from twingan.losses.weights import LossWeights

__all__ = [
    "OBJECTIVES",
    "GANObjective",
    "build_objective",
    "LossWeights",
    "TranslationLosses",
    "StepInputs",
    "draw_inputs",
    "TERMS",
    "Term",
    "active_terms",
]
