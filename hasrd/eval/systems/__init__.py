"""Systems under test: one small interface for hasrd models, classic codecs and neural baselines.

A :class:`System` turns a waveform into the waveform a listener would hear after coding, and
says how many bytes crossed the channel. The evaluator treats every system alike; the original
audio itself is the :class:`ReferenceSystem` (the ceiling).

Baseline specs (``--baselines``), comma-separated:

    codec2:MODE        Debian ``c2enc``/``c2dec``; MODE in 3200 2400 1600 1400 1300 1200 700C 450
    opus:BPS           ``opusenc``/``opusdec`` (VBR, target BPS bit/s, 6000 and up)
    encodec:BPS[@W]    Meta's EnCodec 24 kHz at 1500/3000/6000/12000/24000 bit/s; W = local
                       ``encodec_24khz-d7cc33bc.th`` (else torch's hub cache is looked at)
    dac:BPS[@W]        Descript Audio Codec; W = a local ``.pth`` from DAC's releases (else
                       ``~/.cache/descript/dac`` is looked at); BPS like 6000, 6k or 8kbps picks
                       the largest number of codebooks whose bitrate fits
    hf:PATH_OR_ID[@BPS]
                       a transformers audio codec (EncodecModel, DacModel, MimiModel, XcodecModel)
                       from a save_pretrained folder or a hub id in the local hub cache; BPS one
                       of the bitrates it offers (default: the model's own default)
    spectral-gating[:stationary]
                       classical speech enhancement: noisereduce's spectral gating, non-stationary
                       (default) or stationary noise estimate; outputs 16-bit PCM

Speech enhancement adds two more kinds: :class:`InputSystem` (the noisy input unchanged, the row
enhancement gains are measured from) and :class:`EnhancerSystem` (a ``hasrd.enhance`` model,
``--enhancer DIR``).

A baseline whose tool or weights are missing raises :class:`SystemUnavailable`; the evaluator
prints one skip line for it and goes on.

The package, one module per concern (this module re-exports their public names):

    base.py               System, SystemUnavailable, ReferenceSystem, InputSystem; the audio
                          helpers every system uses (mono, fit_length, to_model, from_model)
    hasrd_systems.py      hasrd codecs: HasrdModel, HasrdSystem, ContinuousSystem,
                          UnquantisedSystem, model_systems, load_hasrd_model
    enhancement.py        SpectralGatingSystem, EnhancerSystem, load_enhancer_system
    subprocess_codecs.py  codec2: and opus: through their command-line tools
    library_codecs.py     encodec: and dac: through their Python packages (local weights)
    hf_codecs.py          hf: any transformers audio codec (load_hf_codec, HfCodecSystem)
    specs.py              parse_baseline, parse_bitrate: a --baselines item -> a System
"""
from __future__ import annotations

from .base import InputSystem, ReferenceSystem, System, SystemUnavailable, fit_length, from_model, mono, to_model
from .enhancement import ENHANCER_FORMS, EnhancerSystem, SpectralGatingSystem, load_enhancer_system
from .hasrd_systems import (
    ContinuousSystem,
    HasrdModel,
    HasrdSystem,
    UnquantisedSystem,
    load_hasrd_model,
    model_systems,
)
from .hf_codecs import HF_CODECS, HF_CODECS_NOT_YET, HfCodecSystem, load_hf_codec
from .library_codecs import ENCODEC_BANDWIDTHS, ENCODEC_CHECKPOINT, DacSystem, EncodecSystem
from .specs import parse_baseline, parse_bitrate
from .subprocess_codecs import CODEC2_MODES, Codec2System, OpusSystem

__all__ = [
    "CODEC2_MODES",
    "ENCODEC_BANDWIDTHS",
    "ENCODEC_CHECKPOINT",
    "ENHANCER_FORMS",
    "HF_CODECS",
    "HF_CODECS_NOT_YET",
    "Codec2System",
    "ContinuousSystem",
    "DacSystem",
    "EncodecSystem",
    "EnhancerSystem",
    "HasrdModel",
    "HasrdSystem",
    "HfCodecSystem",
    "InputSystem",
    "OpusSystem",
    "ReferenceSystem",
    "SpectralGatingSystem",
    "System",
    "SystemUnavailable",
    "UnquantisedSystem",
    "fit_length",
    "from_model",
    "load_enhancer_system",
    "load_hasrd_model",
    "load_hf_codec",
    "model_systems",
    "mono",
    "parse_baseline",
    "parse_bitrate",
    "to_model",
]
