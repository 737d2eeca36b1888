"""A frame-rate vocoder with an inverse-STFT head (the Vocos design: Siuzdak, 2023).

The DAC generator (:mod:`.generator`) up-samples through convolutions that run at 2, 8 and 16 kHz;
on a CPU its last, narrow, high-rate stages cost most of the decode. This generator does all its
work at the frame rate (50 Hz for the default model) with ConvNeXt blocks, predicts one STFT frame
(log-magnitude and phase) per latent frame and turns the frames into a waveform by inverse FFT and
overlap-add. The arithmetic is a handful of matrix products per frame, which a CPU does well.

The inverse STFT is written as one transposed convolution whose kernels are the windowed inverse
real-DFT basis functions (``irfft`` + window + overlap-add in one op), not ``torch.istft``: it
takes real tensors only, so it traces, freezes and exports to ONNX (whose opsets have no inverse
STFT and no complex type), and the ``vocos`` package's head uses complex tensors for the same
reason we avoid them. Not causal: the blocks look 3 frames ahead and the window overlaps.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (7 frames) -> LayerNorm -> pointwise MLP (GELU) -> layer scale, residual."""

    def __init__(self, dim: int, hidden: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, hidden)
        self.pw2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, dim, F]
        y = self.norm(self.dwconv(x).transpose(1, 2))
        y = self.pw2(F.gelu(self.pw1(y))) * self.gamma
        return x + y.transpose(1, 2)


def windowed_dft_basis(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(basis [2K, n_fft], window [n_fft])`` in float64, ``K = n_fft/2 + 1``: the Hann-windowed
    real-DFT kernels, ``cos`` rows then ``-sin`` rows. As a convolution it is the forward STFT
    (real parts, then imaginary parts); scaled per bin, the inverse's synthesis kernels."""
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    angle = 2 * math.pi * k * torch.arange(n_fft, dtype=torch.float64)[None, :] / n_fft
    return torch.cat([torch.cos(angle), -torch.sin(angle)]) * window, window


def check_stft_geometry(n_fft: int, hop: int, who: str) -> None:
    """The frame layout both STFT directions use ("same" padding, frame ``f`` centred on sample
    ``f * hop + hop / 2``) needs an even ``n_fft``, at least ``hop``, with ``n_fft - hop`` even."""
    if n_fft % 2 or n_fft < hop or (n_fft - hop) % 2:
        raise ValueError(f"{who}: n_fft={n_fft} must be even, >= hop={hop}, and n_fft - hop even")


def aligned_stft(x: torch.Tensor, analysis: torch.Tensor, hop: int) -> torch.Tensor:
    """``[B, 1, T]`` -> ``[B, 2K, T / hop]`` (real parts, then imaginary parts) with the kernels of
    :func:`windowed_dft_basis` (``analysis``: ``[2K, 1, n_fft]``), frame ``f`` centred on sample
    ``f * hop + hop / 2`` (zeros outside the signal): the frames :class:`OverlapAddISTFT` inverts."""
    trim = (analysis.shape[-1] - hop) // 2
    return F.conv1d(F.pad(x, (trim, trim)), analysis, stride=hop)[..., : x.shape[-1] // hop]


class OverlapAddISTFT(nn.Module):
    """``[B, 2K, F]`` (real parts then imaginary parts of ``K = n_fft/2 + 1`` bins) ->
    ``[B, 1, F * hop]``: inverse real DFT, Hann window, overlap-add and window-energy
    normalisation, with "same" padding (frame ``f`` is centred on sample ``f * hop + hop / 2``)."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        check_stft_geometry(n_fft, hop, "istft")
        self.n_fft, self.hop, self.trim = n_fft, hop, (n_fft - hop) // 2
        basis, window = windowed_dft_basis(n_fft)
        # each bin stands for itself and its mirror ...
        scale = torch.full((n_fft // 2 + 1, 1), 2.0 / n_fft, dtype=torch.float64)
        scale[0] = scale[-1] = 1.0 / n_fft  # ... except DC and Nyquist
        basis = basis * torch.cat([scale, scale])
        self.register_buffer("basis", basis.float().unsqueeze(1), persistent=False)  # [2K, 1, n_fft]
        self.register_buffer("energy", (window ** 2).float().view(1, 1, n_fft), persistent=False)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        frames = spec.shape[-1]
        y = F.conv_transpose1d(spec, self.basis, stride=self.hop)
        env = F.conv_transpose1d(torch.ones_like(spec[:1, :1]), self.energy, stride=self.hop)
        s = slice(self.trim, self.trim + frames * self.hop)
        return y[..., s] / env[..., s].clamp_min(1e-8)


def harmonic_pulses(f0: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """A band-limited pulse train: ``sum_{k=1..K} cos(k * phi)`` for every harmonic ``k`` of the
    instantaneous F0 under the Nyquist frequency, in closed form (the Dirichlet kernel
    ``sin((K + 1/2) phi) / (2 sin(phi / 2)) - 1/2``), so its cost does not grow with the number
    of harmonics. ``f0``: ``[B, 1, T]`` Hz per sample; the phase ``phi`` is F0 accumulated over
    the samples in float64 (exact over long utterances)."""
    turns = (f0.double() / sample_rate).cumsum(-1)
    phi = (2 * math.pi) * (turns - torch.floor(turns)).float()
    k = torch.floor(0.5 * sample_rate / f0.clamp_min(1.0) - 1e-3).clamp_min(1.0)
    half = torch.sin(0.5 * phi)
    small = half.abs() < 1e-4
    ratio = torch.sin((k + 0.5) * phi) / (2 * torch.where(small, torch.ones_like(half), half))
    return torch.where(small, k, ratio - 0.5)


class IstftGenerator(nn.Module):
    """``[B, latent_dim, F]`` -> ``[B, 1, F * hop]``.

    Args:
        latent_dim: input channels.
        hop: samples per frame (must equal the encoder's hop).
        dim, hidden, layers: ConvNeXt width, MLP width and depth (at the frame rate).
        n_fft: STFT size (default ``4 * hop / upsample``: 75 % window overlap).
        upsample: the STFT runs at ``upsample`` times the frame rate (hop ``hop / upsample``):
            after the frame-rate blocks, a transposed convolution raises the rate and
            ``post_layers`` more ConvNeXt blocks run at the new rate before the head. 1 (the
            default) predicts one STFT frame per latent frame. Shorter STFT frames give the
            decoder finer control of timing and of how the phase moves between frames.
        post_layers: ConvNeXt blocks after the up-sampling (only with ``upsample`` > 1).
        phase: what the head's phase outputs mean. ``absolute`` (the default, as in Vocos): the
            phase of each bin in each frame, predicted frame by frame. ``integrated``: each bin's
            instantaneous frequency, as a deviation of at most ``MAX_IF_BINS`` bins from the bin's
            centre, accumulated over the frames (the representation of GANSynth: Engel et al.,
            2019), so a steady partial keeps a coherent phase from frame to frame by construction
            and all bins of its main lobe turn together. The phase of a frame then depends on
            every earlier frame of the utterance (decode whole utterances, as the codec does).
        source: ``none`` (the default): the head's outputs are the STFT itself. ``harmonic``: a
            source-filter decoder. A pitch head predicts each frame's F0 (Hz, 50-500) and a
            voicing logit; a band-limited pulse train at that F0 (gated by the voicing
            probability) and white noise are the sources, and the head's two halves become,
            per bin, a magnitude and the logit of the harmonic share: the output STFT is
            ``mag * (share * STFT(pulses) + (1 - share) * STFT(noise))`` (real filters on the
            sources' STFTs, same window and hop as the inverse). The harmonics then sit at the
            predicted F0 with a phase that runs on from frame to frame by construction. The F0
            and voicing outputs do not get gradients from the waveform: they learn from the
            pitch loss (``loss_weights.f0`` and ``vuv``, :mod:`hasrd.losses.pitch`). The noise
            is random in training and a fixed seeded table in eval mode (decoding is
            deterministic). ``phase`` does not apply.
        aperiodic: what fills the part of each bin that is not harmonic (``source: harmonic``
            only). ``noise`` (the default): the white noise above. ``phase``: the head keeps its
            meaning of a decoder without a source (log-magnitude and phase) and a separate share
            head sets the harmonic share: ``mag * (share * STFT(pulses) + (1 - share) * e^{i
            phase})``. The share head starts near one (bias +3): warm-started from a decoder
            without a source, the decoder begins as a harmonic one whose non-harmonic part (all
            of it in unvoiced frames, where the pulses are gated off) is the old decoder's STFT,
            and the share falls where the pulses do not fit. A share that starts near zero stays
            there: a pulse train added at a small weight to a spectrum whose phase it does not
            match moves the magnitudes only at second order, so the losses do not push it up.
        pitch_forcing: train the sources on the input's own pitch (``source: harmonic`` only).
            In training, the codec drives the pulse train with the YIN F0 and voicing of the
            input crop (:func:`hasrd.losses.pitch.yin_track`) instead of the pitch head's
            prediction, as neural source-filter vocoders are trained on the true F0; the head
            still learns from the pitch loss, and decoding (eval mode) uses its prediction. It
            measures what a decoder could make of an exactly known pitch (for a codec that would
            send it; ``scripts/phase_oracle.py --oracle-f0`` decodes that way).
    """

    MAX_IF_BINS = 4.0
    PHASES = ("absolute", "integrated")
    SOURCES = ("none", "harmonic")
    APERIODIC = ("noise", "phase")
    NOISE_TABLE = 1 << 15
    SHARE_BIAS = 3.0
    #: weights a warm start from a decoder without a source may lack (they start from scratch)
    warm_start_new = ("pitch_head.", "share_head.")

    def __init__(self, latent_dim: int, hop: int, dim: int = 256, hidden: int | None = None,
                 layers: int = 6, n_fft: int | None = None, upsample: int = 1, post_layers: int = 1,
                 phase: str = "absolute", source: str = "none", aperiodic: str = "noise",
                 pitch_forcing: bool = False, sample_rate: int = 16000):
        super().__init__()
        if phase not in self.PHASES:
            raise ValueError(f"istft: phase must be one of {self.PHASES}, not {phase!r}")
        if source not in self.SOURCES:
            raise ValueError(f"istft: source must be one of {self.SOURCES}, not {source!r}")
        if source != "none" and phase != "absolute":
            raise ValueError("istft: phase does not apply to a decoder with a source")
        if aperiodic not in self.APERIODIC:
            raise ValueError(f"istft: aperiodic must be one of {self.APERIODIC}, not {aperiodic!r}")
        if aperiodic != "noise" and source != "harmonic":
            raise ValueError("istft: aperiodic applies to a decoder with source: harmonic only")
        if pitch_forcing and source != "harmonic":
            raise ValueError("istft: pitch_forcing applies to a decoder with source: harmonic only")
        self.pitch_forcing = bool(pitch_forcing)
        self.phase, self.source, self.sample_rate = phase, source, int(sample_rate)
        self.aperiodic = aperiodic
        self.hop, self.upsample = int(hop), int(upsample)
        if self.upsample < 1 or self.hop % self.upsample:
            raise ValueError(f"istft: upsample={upsample} must be a positive divisor of the hop {hop}")
        stft_hop = self.hop // self.upsample
        n_fft = int(n_fft or 4 * stft_hop)
        hidden = int(hidden or 3 * dim)
        self.embed = nn.Conv1d(latent_dim, dim, 7, padding=3)
        self.norm_in = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, hidden, 1.0 / layers) for _ in range(layers))
        if self.upsample > 1:
            u = self.upsample
            self.up = nn.ConvTranspose1d(dim, dim, 2 * u, stride=u, padding=u // 2)
            self.post = nn.ModuleList(ConvNeXtBlock(dim, hidden, 1.0 / max(1, post_layers))
                                      for _ in range(int(post_layers)))
        else:
            self.up, self.post = None, nn.ModuleList()
        self.norm_out = nn.LayerNorm(dim, eps=1e-6)
        self.n_bins = n_fft // 2 + 1
        self.head = nn.Linear(dim, 2 * self.n_bins)  # log-magnitude and phase per bin
        self.istft = OverlapAddISTFT(n_fft, stft_hop)
        if phase == "integrated":
            k = torch.arange(self.n_bins, dtype=torch.float64)[:, None]
            # turns per STFT hop of a partial at the bin's centre, wrapped to [0, 1) exactly
            self.register_buffer("centre_turns", ((k * stft_hop) % n_fft) / n_fft, persistent=False)
            # the OLA basis measures phase from the frame's start, the accumulated phase is taken
            # at the window's centre: bin k of a partial differs by pi * k between the two
            self.register_buffer("start_offset", -math.pi * (k % 2).float(), persistent=False)
            self.turns_per_bin = stft_hop / n_fft
        if source == "harmonic":
            from ..losses.pitch import FMAX, FMIN

            self.fmin, self.fmax = FMIN, FMAX
            self.pitch_head = nn.Sequential(nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 2))  # F0, voicing
            analysis, window = windowed_dft_basis(n_fft)
            self.register_buffer("analysis", analysis.float().unsqueeze(1), persistent=False)  # [2K, 1, n_fft]
            # scales: a unit harmonic peaks at ~1 in its bin, unit-variance noise has E|X|^2 = 1
            self.pulse_gain = 4.0 / n_fft
            self.noise_gain = 1.0 / math.sqrt(float((window ** 2).sum()))
            g = torch.Generator().manual_seed(0)
            self.register_buffer("noise_table", torch.randn(self.NOISE_TABLE, generator=g), persistent=False)
            if aperiodic == "phase":
                self.share_head = nn.Linear(dim, self.n_bins)  # harmonic share logit per bin
                nn.init.zeros_(self.share_head.weight)
                nn.init.constant_(self.share_head.bias, self.SHARE_BIAS)

    @property
    def renders_pitch(self) -> bool:
        """Whether ``forward(..., return_pitch=True)`` gives pitch predictions for the pitch loss."""
        return self.source == "harmonic"

    def _integrate(self, deviation: torch.Tensor) -> torch.Tensor:
        """``[B, K, F]`` raw head outputs -> phase (radians) of each bin at each frame's start."""
        turns = self.centre_turns + (self.MAX_IF_BINS * torch.tanh(deviation)).double() * self.turns_per_bin
        turns = torch.cumsum(turns - torch.floor(turns), dim=-1)  # float64: exact for long utterances
        turns = turns - torch.floor(turns)
        return (2 * math.pi) * turns.float() + self.start_offset

    def _noise(self, like: torch.Tensor) -> torch.Tensor:
        if self.training:
            return torch.randn_like(like)
        # the table read cyclically, by index (traces and exports with a dynamic length)
        idx = torch.remainder(torch.arange(like.shape[-1], device=like.device), self.NOISE_TABLE)
        return self.noise_table[idx].expand_as(like)

    def pitch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame-rate features ``[B, dim, F]`` -> ``(f0 Hz [B, F], voicing logit [B, F])``."""
        p = self.pitch_head(x.transpose(1, 2))
        f0 = self.fmin * (self.fmax / self.fmin) ** torch.sigmoid(p[..., 0])
        return f0, p[..., 1]

    def _sources(self, f0: torch.Tensor, voiced_logit: torch.Tensor, noise: bool = True):
        """Sample-rate pulse train (voicing-gated) and (with ``noise``) noise, as STFTs
        ``[B, 2K, stft frames]``."""
        hop = self.hop
        f0 = f0.detach()
        per_sample = F.interpolate(f0.unsqueeze(1), scale_factor=hop, mode="linear", align_corners=False)
        voicing = F.interpolate(torch.sigmoid(voiced_logit.detach()).unsqueeze(1), scale_factor=hop,
                                mode="linear", align_corners=False)
        pulses = harmonic_pulses(per_sample, self.sample_rate) * voicing * self.pulse_gain
        if not noise:
            return aligned_stft(pulses, self.analysis, self.istft.hop)
        spec = aligned_stft(torch.cat([pulses, self._noise(pulses) * self.noise_gain]), self.analysis, self.istft.hop)
        return spec.chunk(2)

    def forward(self, z: torch.Tensor, return_pitch: bool = False, pitch: tuple | None = None):
        """``[B, latent_dim, F]`` -> waveform ``[B, 1, F * hop]``; with ``return_pitch`` (a
        ``harmonic`` source only) also the pitch head's ``{"f0": [B, F], "voiced_logit": [B, F]}``.
        ``pitch`` = ``(f0 Hz [B, F], voicing logit [B, F])`` drives the sources in place of the
        head's prediction (which is still what ``return_pitch`` gives)."""
        frames = z.shape[-1]
        x = self.norm_in(self.embed(z).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        predicted = self.pitch(x) if self.renders_pitch else None
        if self.up is not None:
            x = self.up(x)[..., : frames * self.upsample]
            for block in self.post:
                x = block(x)
        x = self.norm_out(x.transpose(1, 2))
        head = self.head(x).transpose(1, 2)  # [B, 2K, F * upsample]
        log_mag, phase = head.split(self.n_bins, dim=1)
        mag = torch.exp(log_mag.clamp(max=math.log(100.0)))  # cap as Vocos does: no overflow early on
        if predicted is not None:
            drive = predicted if pitch is None else pitch
            # mag * (share * pulses + (1 - share) * aperiodic part), real and imaginary halves
            if self.aperiodic == "phase":  # the share head's mix, the head's own phase elsewhere
                share = torch.sigmoid(self.share_head(x)).transpose(1, 2)
                harm = self._sources(*drive, noise=False)
                rest = torch.cat([torch.cos(phase), torch.sin(phase)], dim=1)
            else:  # the head's second half is the share, noise elsewhere
                share = torch.sigmoid(phase)
                harm, rest = self._sources(*drive)
            share, mag = torch.cat([share, share], dim=1), torch.cat([mag, mag], dim=1)
            audio = self.istft(mag * (share * harm + (1 - share) * rest))
            return (audio, {"f0": predicted[0], "voiced_logit": predicted[1]}) if return_pitch else audio
        if return_pitch or pitch is not None:
            raise ValueError("return_pitch (or pitch) needs a decoder with source: harmonic")
        if self.phase == "integrated":
            phase = self._integrate(phase)
        spec = torch.cat([mag * torch.cos(phase), mag * torch.sin(phase)], dim=1)
        return self.istft(spec)
