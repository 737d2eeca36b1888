"""Small building blocks.

The waveform convolution blocks (weight-normed convs, Snake, dilated residual units) are DAC's,
reused from ``descript-audio-codec`` rather than rewritten; this package adds what DAC lacks:
explicit frame-rate conversion (:mod:`hasrd.nn.framerate`), causal streaming versions of DAC's
encoder and generator (:mod:`hasrd.nn.causal`) and weight-norm folding for inference
(:mod:`hasrd.nn.inference`).
"""
import warnings

# DAC's blocks use torch.nn.utils.weight_norm, which torch marks deprecated at every layer built;
# the warning is about DAC's code, not the caller's, so hasrd silences exactly that one.
warnings.filterwarnings("ignore", message=r".*torch\.nn\.utils\.weight_norm.*", category=FutureWarning)

from dac.model.dac import (
    Decoder as DACDecoder,  # noqa: F401  (HiFi-GAN-style generator, Snake)
    Encoder as DACEncoder,  # noqa: F401  (strided conv encoder, Snake)
)
from dac.nn.layers import Snake1d, WNConv1d, WNConvTranspose1d  # noqa: F401

from .causal import CausalDecoder, CausalEncoder, stream_step  # noqa: F401  (causal twins, streaming)
from .framerate import FrameRateError, resample_frames  # noqa: F401
from .inference import remove_weight_norm  # noqa: F401
