"""GAN discriminators: multi-period (waveform) and multi-resolution STFT (complex spectrogram).

Written here rather than reused because the ones in descript-audio-codec hard-code widths of up to
1024 channels, which make a CPU step several times slower than the generator's; every width here
is a config knob, so the same code is small on a laptop and large on a GPU cluster.
Each sub-discriminator returns its list of feature maps; the last one is the logit map.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def _wn2d(*args, **kwargs):
    return weight_norm(nn.Conv2d(*args, **kwargs))


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN period discriminator: folds the waveform into ``[T / p, p]`` and applies 2-D convs."""

    def __init__(self, period: int, channels: int = 16, max_channels: int = 256, layers: int = 4):
        super().__init__()
        self.period = period
        convs, c_in = [], 1
        for i in range(layers):
            c_out = min(channels * 4**i, max_channels)
            convs.append(_wn2d(c_in, c_out, (5, 1), (3, 1), padding=(2, 0)))
            c_in = c_out
        convs.append(_wn2d(c_in, c_in, (5, 1), 1, padding=(2, 0)))
        self.convs = nn.ModuleList(convs)
        self.out = _wn2d(c_in, 1, (3, 1), 1, padding=(1, 0))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        pad = (-x.shape[-1]) % self.period
        x = F.pad(x, (0, pad), mode="reflect")
        x = x.reshape(x.shape[0], 1, -1, self.period)
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            feats.append(x)
        feats.append(self.out(x))
        return feats


class STFTDiscriminator(nn.Module):
    """2-D conv discriminator on one complex STFT (real and imaginary as channels)."""

    def __init__(self, n_fft: int, channels: int = 16, layers: int = 3):
        super().__init__()
        self.n_fft, self.hop = n_fft, n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        convs = [_wn2d(2, channels, (3, 9), padding=(1, 4))]
        for _ in range(layers):
            convs.append(_wn2d(channels, channels, (3, 9), stride=(1, 2), dilation=1, padding=(1, 4)))
        convs.append(_wn2d(channels, channels, (3, 3), padding=(1, 1)))
        self.convs = nn.ModuleList(convs)
        self.out = _wn2d(channels, 1, (3, 3), padding=(1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        spec = torch.stft(x[:, 0], self.n_fft, self.hop, window=self.window, return_complex=True)
        h = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, frames, bins]
        feats = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.1)
            feats.append(h)
        feats.append(self.out(h))
        return feats


class Discriminator(nn.Module):
    """Multi-period + multi-resolution STFT discriminators, evaluated together.

    Args:
        periods: periods of the waveform discriminators (``[]`` disables them).
        period_channels, period_max_channels: widths of the period discriminators.
        fft_sizes: STFT sizes of the spectral discriminators (``[]`` disables them).
        stft_channels: width of the spectral discriminators.
    """

    def __init__(self, periods=(2, 3, 5, 7, 11), period_channels: int = 16, period_max_channels: int = 256,
                 fft_sizes=(2048, 1024, 512), stft_channels: int = 16):
        super().__init__()
        self.discriminators = nn.ModuleList(
            [PeriodDiscriminator(p, period_channels, period_max_channels) for p in periods]
            + [STFTDiscriminator(n, stft_channels) for n in fft_sizes]
        )
        if not len(self.discriminators):
            raise ValueError("the discriminator needs at least one period or FFT size")

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        return [d(x) for d in self.discriminators]
