"""A fixed, differentiable harmonic-plus-noise synthesiser: the voice's pitch rendered by signal
processing, its spectral envelope by whoever predicts it (a network, or an analysis of the
original for the oracle).

Per frame (``hop`` samples) it takes the F0 (Hz) and two spectral envelopes on a band grid: the
power spectral density of the harmonic part and of the noise part. The harmonic excitation is a
band-limited pulse train whose phase is integrated from the F0 (so the pitch is exactly the one
given, with no frame-rate periodicity), scaled so that its power per hertz is 1 like the noise's;
both excitations are filtered in the STFT domain by their envelopes (zero-phase, real gains per
bin and frame) and summed. Everything is torch, so losses on the waveform train an envelope
predictor through it.

The band grid (:func:`band_edges`) has bands of at least ``min_width`` Hz (an envelope band must
hold at least one harmonic to be estimated from a voiced frame) growing as mel bands above.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def band_edges(sample_rate: int, n_bands: int, min_width: float = 100.0) -> np.ndarray:
    """``n_bands + 1`` band edges in Hz from 0 to Nyquist: mel-spaced, but no band narrower than
    ``min_width`` Hz (the low bands then are ``min_width`` wide)."""
    nyq = sample_rate / 2

    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = [0.0]
    for i in range(n_bands):
        left = n_bands - i
        # the mel spacing of what remains, unless it is narrower than min_width
        step_mel = (mel(nyq) - mel(edges[-1])) / left
        nxt = max(float(hz(mel(edges[-1]) + step_mel)), edges[-1] + min_width)
        edges.append(min(nxt, nyq))
    edges[-1] = nyq
    return np.asarray(edges)


def band_matrix(sample_rate: int, n_fft: int, n_bands: int, min_width: float = 100.0) -> torch.Tensor:
    """``[n_bands, n_fft // 2 + 1]``: row b averages the bins of band b (analysis); its transpose,
    column-normalised, spreads band values back over the bins (synthesis, linear interpolation
    between band centres)."""
    edges = band_edges(sample_rate, n_bands, min_width)
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    m = np.zeros((n_bands, len(freqs)), dtype=np.float32)
    for b in range(n_bands):
        inside = (freqs >= edges[b]) & (freqs < edges[b + 1] if b < n_bands - 1 else freqs <= edges[b + 1])
        if not inside.any():  # a band narrower than a bin: its nearest bin
            inside[np.argmin(np.abs(freqs - 0.5 * (edges[b] + edges[b + 1])))] = True
        m[b, inside] = 1.0 / inside.sum()
    return torch.from_numpy(m)


def interp_matrix(sample_rate: int, n_fft: int, n_bands: int, min_width: float = 100.0) -> torch.Tensor:
    """``[n_fft // 2 + 1, n_bands]``: each bin's value from the two nearest band centres (linear)."""
    edges = band_edges(sample_rate, n_bands, min_width)
    centres = 0.5 * (edges[:-1] + edges[1:])
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    m = np.zeros((len(freqs), n_bands), dtype=np.float32)
    for i, f in enumerate(freqs):
        j = int(np.searchsorted(centres, f))
        if j == 0:
            m[i, 0] = 1.0
        elif j >= n_bands:
            m[i, -1] = 1.0
        else:
            w = (f - centres[j - 1]) / (centres[j] - centres[j - 1])
            m[i, j - 1], m[i, j] = 1.0 - w, w
    return torch.from_numpy(m)


def upsample_frames(x: torch.Tensor, hop: int, length: int) -> torch.Tensor:
    """``[B, F]`` per-frame values (frame f centred on sample ``f * hop + hop / 2``) -> ``[B, length]``
    per-sample values, linearly interpolated between frame centres, held at the ends."""
    B, Fr = x.shape
    t = (torch.arange(length, device=x.device, dtype=x.dtype) - (hop / 2 - 0.5)) / hop
    t = t.clamp(0, Fr - 1)
    lo = t.floor().long().clamp(max=Fr - 1)
    hi = (lo + 1).clamp(max=Fr - 1)
    w = (t - lo.to(t.dtype))[None]
    return x[:, lo] * (1 - w) + x[:, hi] * w


def pulse_train(f0: torch.Tensor, sample_rate: int, hop: int, length: int) -> torch.Tensor:
    """``[B, length]`` band-limited pulse train (every harmonic of F0 below Nyquist, in cosine
    phase) with power 1 per hertz, its phase integrated from the per-frame ``f0 [B, F]`` (Hz, > 0).

    Sum of ``K`` cosines by the Dirichlet kernel, ``K`` the number of harmonics below Nyquist at
    each sample; each harmonic has amplitude ``2 sqrt(f0 / sample_rate)``, which gives the comb the
    power per hertz of unit-variance white noise.
    """
    f0s = upsample_frames(f0.clamp(min=20.0), hop, length)
    phase = 2 * math.pi * torch.cumsum(f0s / sample_rate, dim=-1)
    phase = torch.remainder(phase, 2 * math.pi)
    K = torch.floor((sample_rate / 2) / f0s).clamp(min=1)
    half = 0.5 * phase
    s = torch.sin(half)
    small = s.abs() < 1e-4
    safe = torch.where(small, torch.ones_like(s), s)
    dirichlet = torch.where(small, K, torch.sin((K + 0.5) * phase) / (2 * safe) - 0.5)
    return dirichlet * 2 * torch.sqrt(f0s / sample_rate)


class HarmonicNoiseSynth(torch.nn.Module):
    """``(f0 [B, F], harmonic_psd [B, F, N], noise_psd [B, F, N]) -> audio [B, 1, F * hop]``.

    Envelopes are power spectral densities per band (linear, >= 0) on :func:`band_edges`'s grid
    with ``n_bands`` bands; unvoiced frames are those whose ``harmonic_psd`` is 0. ``noise_seed``
    fixes the noise (a decoder's output is then a function of its inputs).
    """

    def __init__(self, sample_rate: int = 16000, hop: int = 320, n_bands: int = 32, n_fft: int = 1024,
                 min_width: float = 100.0, noise_seed: int | None = 0):
        super().__init__()
        self.sample_rate, self.hop, self.n_bands, self.n_fft = sample_rate, hop, n_bands, n_fft
        self.stft_hop = hop // 2 if hop % 2 == 0 else hop
        self.noise_seed = noise_seed
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("interp", interp_matrix(sample_rate, n_fft, n_bands, min_width), persistent=False)
        self.register_buffer("analysis", band_matrix(sample_rate, n_fft, n_bands, min_width), persistent=False)

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stft(x, self.n_fft, self.stft_hop, window=self.window, center=True, return_complex=True)

    def _gains(self, psd: torch.Tensor, frames: int) -> torch.Tensor:
        """Band PSDs per codec frame ``[B, F, N]`` -> magnitude gains per bin and STFT frame ``[B, bins, S]``."""
        g = torch.sqrt(psd.clamp(min=0) + 1e-12) @ self.interp.T  # [B, F, bins]
        g = g.transpose(1, 2)  # [B, bins, F]
        # STFT frame s is centred on sample s * stft_hop; codec frame f on f * hop + hop / 2
        return F.interpolate(g, size=frames, mode="linear", align_corners=False)

    def forward(self, f0: torch.Tensor, harmonic_psd: torch.Tensor, noise_psd: torch.Tensor) -> torch.Tensor:
        B, Fr = f0.shape
        length = Fr * self.hop
        harm = pulse_train(f0, self.sample_rate, self.hop, length)
        gen = None
        if self.noise_seed is not None:
            gen = torch.Generator(device="cpu").manual_seed(self.noise_seed)
        noise = torch.randn(B, length, generator=gen).to(f0.device, f0.dtype)
        H, N = self._stft(harm), self._stft(noise)
        S = H.shape[-1]
        Y = H * self._gains(harmonic_psd, S) + N * self._gains(noise_psd, S)
        y = torch.istft(Y, self.n_fft, self.stft_hop, window=self.window, center=True, length=length)
        return y.unsqueeze(1)

    @torch.no_grad()
    def analyse(self, audio: torch.Tensor, f0: torch.Tensor | None = None) -> torch.Tensor:
        """``audio [B, T]`` -> band PSD per codec frame ``[B, F, N]``, ``F = ceil(T / hop)``: the
        envelope that makes :meth:`forward` reproduce the audio's power per band (the oracle's
        envelope), on the synthesiser's own STFT scale.

        With ``f0 [B, F]`` (Hz) the power spectrum is first averaged over one harmonic spacing
        around each bin (pitch-adaptive smoothing, as STRAIGHT does), so a band between two
        harmonics reads the level of the envelope there, not the gap; then each band's mean."""
        B, T = audio.shape
        Fr = -(-T // self.hop)
        x = F.pad(audio, (0, Fr * self.hop - T))
        X = self._stft(x)  # [B, bins, S]
        power = X.abs() ** 2 / (self.window ** 2).sum()  # unit-variance white noise -> 1 per bin
        S = power.shape[-1]
        if f0 is not None:
            width = F.interpolate(f0[:, None].float(), size=S, mode="linear", align_corners=False)[:, 0]
            power = _smooth_over(power, (width * self.n_fft / self.sample_rate).clamp(min=1.0))
        band = torch.einsum("nk,bks->bns", self.analysis, power)  # [B, N, S]
        # STFT frames -> codec frames (frame f centred at f * hop + hop / 2)
        centres = (torch.arange(Fr, device=audio.device) * self.hop + self.hop / 2) / self.stft_hop
        lo = centres.floor().long().clamp(max=S - 1)
        hi = (lo + 1).clamp(max=S - 1)
        w = (centres - lo)[None, None]
        out = band[..., lo] * (1 - w) + band[..., hi] * w
        return out.transpose(1, 2).clamp(min=0)


def _smooth_over(power: torch.Tensor, width_bins: torch.Tensor) -> torch.Tensor:
    """``power [B, K, S]`` averaged over a window of ``width_bins [B, S]`` bins around each bin
    (a box, its fractional edges linearly weighted), frame by frame."""
    B, K, S = power.shape
    c = F.pad(torch.cumsum(power, dim=1), (0, 0, 1, 0))  # [B, K + 1, S]; c[k] = sum of bins < k
    k = torch.arange(K, device=power.device, dtype=power.dtype)[None, :, None] + 0.5
    half = 0.5 * width_bins[:, None, :]
    lo, hi = (k - half).clamp(0, K), (k + half).clamp(0, K)

    def at(pos):  # the cumulative sum at a fractional position
        i = pos.floor().long().clamp(max=K - 1)
        frac = pos - i.to(pos.dtype)
        return torch.gather(c, 1, i) * (1 - frac) + torch.gather(c, 1, i + 1) * frac

    # differences of a running sum: clamp the rounding that can leave a silent bin a hair below 0
    return ((at(hi) - at(lo)) / (hi - lo).clamp(min=1e-6)).clamp(min=0)
