"""Decoders: the vocoder generator and the GAN discriminators that train it."""
from .discriminators import Discriminator, PeriodDiscriminator, STFTDiscriminator
from .generator import Generator
from .istft import IstftGenerator, build_generator

__all__ = ["Discriminator", "Generator", "IstftGenerator", "PeriodDiscriminator", "STFTDiscriminator", "build_generator"]
