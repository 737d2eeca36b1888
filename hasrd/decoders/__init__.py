"""Decoders: the vocoder generator and the GAN discriminators that train it."""
from .discriminators import Discriminator, PeriodDiscriminator, STFTDiscriminator
from .generator import Generator

__all__ = ["Discriminator", "Generator", "PeriodDiscriminator", "STFTDiscriminator"]
