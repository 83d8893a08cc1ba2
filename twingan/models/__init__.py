"""The TwinGAN networks. Nothing here knows about training, files or the command line."""
from twingan.models.attributes import AttributeSchema
from twingan.models.config import ModelConfig, channels_at
from twingan.models.discriminator import Discriminator, Discriminators
from twingan.models.domain_norm import NORM_KINDS, DomainBatchNorm2d, DomainNorm2d
from twingan.models.encoder import Encoder
from twingan.models.generator import Generator
from twingan.models.mapping import MappingNetwork
from twingan.models.style_encoder import StyleEncoder
from twingan.models.twingan import EMBEDDING_KINDS, TwinGAN

__all__ = [
    "AttributeSchema",
    "MappingNetwork",
    "StyleEncoder",
    "ModelConfig",
    "channels_at",
    "DomainBatchNorm2d",
    "DomainNorm2d",
    "NORM_KINDS",
    "Encoder",
    "Generator",
    "Discriminator",
    "Discriminators",
    "TwinGAN",
    "EMBEDDING_KINDS",
]
