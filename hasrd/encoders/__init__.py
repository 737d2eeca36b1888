"""Encoders: a HuBERT/WavLM backbone from transformers, a convolutional waveform encoder, or a
frame-rate encoder on the short-time spectrum."""
from .conv import ConvEncoder
from .ssl import SSLEncoder, SSLFeatures, conv_geometry, load_ssl_model, ssl_config_dict
from .stft import StftEncoder

__all__ = ["ConvEncoder", "StftEncoder", "SSLEncoder", "SSLFeatures", "conv_geometry", "load_ssl_model", "ssl_config_dict"]
