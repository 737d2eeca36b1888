"""Speech-enhancement systems: :class:`SpectralGatingSystem` (classical, noisereduce) and
:class:`EnhancerSystem` (a ``hasrd.enhance`` model, ``--enhancer DIR``)."""
from __future__ import annotations

import math

from .base import System, SystemUnavailable, fit_length, from_model, mono, to_model


class SpectralGatingSystem(System):
    """Classical speech enhancement: spectral gating by ``noisereduce.reduce_noise`` (its
    non-stationary noise estimate by default, the stationary one with ``stationary=True``), at the
    evaluation rate, one job. The output is 16-bit PCM like the reference (2 bytes a sample)."""

    kind = "enhancer"

    def __init__(self, stationary: bool = False, sample_rate: int = 16000):
        self.stationary = bool(stationary)
        self.name = "spectral-gating:stationary" if self.stationary else "spectral-gating"
        self.family = "spectral-gating"
        self.bitrate_nominal = 16.0 * sample_rate
        try:
            import noisereduce  # noqa: F401
        except ImportError:
            raise SystemUnavailable(f"{self.name}: package noisereduce not installed "
                                    "(pip install noisereduce)") from None

    def process(self, audio, sample_rate):
        import noisereduce

        audio = mono(audio)
        y = noisereduce.reduce_noise(y=audio, sr=sample_rate, stationary=self.stationary, n_jobs=1)
        return fit_length(y, audio.size), 2 * audio.size


ENHANCER_FORMS = ("continuous", "tokens")


class EnhancerSystem(System):
    """A speech enhancer of ``hasrd.enhance`` (``--enhancer DIR``): noisy waveform in, enhanced
    waveform out, resampled to and from the enhancer's rate like a hasrd codec.

    Nominal bitrate: the enhancer's ``bitrate`` (what its enhanced representation costs; 0 for a
    continuous one). Payload: that nominal rate over the utterance, rounded up to bytes (there is
    no container file to measure), so measured equals nominal.
    """

    kind = "enhancer"

    def __init__(self, enhancer, label: str | None = None):
        form = str(enhancer.form)
        if form not in ENHANCER_FORMS:
            raise ValueError(f"enhancer form {form!r} unknown; expected one of {', '.join(ENHANCER_FORMS)}")
        self.enhancer = enhancer
        self.name = label or str(enhancer.name)
        self.family = f"enhance-{form}"
        self.bitrate_nominal = float(enhancer.bitrate)

    def process(self, audio, sample_rate):
        import torch

        audio = mono(audio)
        rate = int(self.enhancer.sample_rate)
        wav, length = to_model(audio, sample_rate, rate)
        with torch.inference_mode():
            y = self.enhancer.enhance(wav)[0, 0]
        payload = math.ceil(self.bitrate_nominal * audio.size / sample_rate / 8.0)
        return from_model(y, rate, length, sample_rate, audio.size), int(payload)


def load_enhancer_system(path: str) -> EnhancerSystem:
    """An ``--enhancer`` folder -> :class:`EnhancerSystem` (via ``hasrd.enhance.load_enhancer``).

    Raises:
        ImportError: ``hasrd.enhance`` cannot be imported.
        FileNotFoundError, ValueError: the folder is missing or not an enhancer export.
    """
    from hasrd.enhance import load_enhancer

    return EnhancerSystem(load_enhancer(path))
