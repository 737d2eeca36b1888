"""The :class:`System` interface, the audio helpers every system shares, and the two systems
that code nothing: :class:`ReferenceSystem` (the original, the ceiling) and :class:`InputSystem`
(the noisy input of a speech-enhancement set, the floor)."""
from __future__ import annotations

import abc

import numpy as np

from hasrd.io.audio import resample


class SystemUnavailable(RuntimeError):
    """The system cannot run on this machine (tool or weights missing); the message says why."""


class System(abc.ABC):
    """Something that codes audio.

    Attributes:
        name: the row label in every table (unique within a run).
        family: the line a system belongs to in the plots (all bitrates of one codec).
        bitrate_nominal: the bit rate the system is configured for, in bit/s.
        kind: ``reference``, ``input`` (the noisy input of an enhancement set), ``hasrd``,
            ``hasrd-cont`` (a continuous hasrd codec), ``codec2``, ``opus``, ``encodec``, ``dac``,
            ``hf`` (a transformers audio codec) or ``enhancer`` (spectral gating, ``hasrd.enhance`` models).
        n_q: codebooks used (hasrd only, else None).
        clean_input: process the clean reference even when the utterance has a noisy input
            (the reference system only: the ceiling of a speech-enhancement set).
    """

    name: str
    family: str
    kind: str
    bitrate_nominal: float
    n_q: int | None = None
    clean_input: bool = False

    @abc.abstractmethod
    def process(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
        """Code and decode 1-D float ``audio``; returns ``(decoded at sample_rate, payload bytes)``."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.bitrate_nominal:g} bit/s>"


def mono(audio: np.ndarray) -> np.ndarray:
    """``audio`` as a 1-D float32 array (flattened when it is not 1-D)."""
    a = np.asarray(audio, dtype=np.float32)
    return a.reshape(-1) if a.ndim != 1 else a


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """``audio`` flattened to float32 and cut or zero-padded to ``length`` samples."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if audio.size >= length:
        return audio[:length]
    return np.concatenate([audio, np.zeros(length - audio.size, np.float32)])


def to_model(audio: np.ndarray, sample_rate: int, model_rate: int):
    """1-D ``audio`` at ``sample_rate`` -> ``(float32 tensor [1, 1, T] at model_rate, T)``."""
    import torch

    x = resample(mono(audio), sample_rate, model_rate)
    return torch.from_numpy(np.ascontiguousarray(x)).float().view(1, 1, -1), x.size


def from_model(y, model_rate: int, model_length: int, sample_rate: int, length: int) -> np.ndarray:
    """A model's output tensor (any shape holding one waveform at ``model_rate``) -> 1-D float32
    at ``sample_rate``, fitted to ``model_length`` before and to ``length`` after resampling."""
    y = fit_length(y.detach().float().cpu().numpy(), model_length)
    return fit_length(resample(y, model_rate, sample_rate), length)


class ReferenceSystem(System):
    """The original audio, unchanged: 16-bit PCM at the evaluation rate (the ceiling). On a
    speech-enhancement set it is the clean reference, scored against itself."""

    kind = "reference"
    clean_input = True

    def __init__(self, sample_rate: int = 16000):
        self.name = self.family = "reference"
        self.bitrate_nominal = 16.0 * sample_rate

    def process(self, audio, sample_rate):
        audio = mono(audio)
        return audio.copy(), 2 * audio.size


class InputSystem(ReferenceSystem):
    """The system input unchanged, 16-bit PCM: on a speech-enhancement set (utterances with a
    noisy ``input``), the noisy audio scored against the clean reference (the floor every
    enhancement gain is measured from). Added first whenever the set has noisy inputs."""

    kind = "input"
    clean_input = False

    def __init__(self, sample_rate: int = 16000):
        super().__init__(sample_rate)
        self.name = self.family = "input"
