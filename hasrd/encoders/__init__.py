"""Encoders: a HuBERT/WavLM backbone from transformers, or a convolutional waveform encoder."""
from .conv import ConvEncoder
from .ssl import SSLEncoder, SSLFeatures, conv_geometry, load_ssl_model, ssl_config_dict

__all__ = ["ConvEncoder", "SSLEncoder", "SSLFeatures", "conv_geometry", "load_ssl_model", "ssl_config_dict"]
