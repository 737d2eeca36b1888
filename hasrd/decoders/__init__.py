"""Decoders: the vocoder generator and the GAN discriminators that train it."""
from .build import GENERATORS, build_generator
from .discriminators import Discriminator, PeriodDiscriminator, STFTDiscriminator
from .generator import Generator
from .istft import IstftGenerator

__all__ = ["GENERATORS", "Discriminator", "Generator", "IstftGenerator", "PeriodDiscriminator", "STFTDiscriminator", "build_generator"]
