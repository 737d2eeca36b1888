"""A frame-rate encoder on the short-time spectrum: the mirror of the iSTFT decoder.

DAC's waveform encoder (:mod:`.conv`) spends most of its arithmetic in narrow convolutions at
8-16 kHz, which a CPU runs slowly for the capacity they give (doubling its width halved the
training step rate of the CPU default model). This encoder takes one STFT of the input (a strided
convolution with the windowed real-DFT kernels, real tensors only, so it traces and exports to
ONNX like the decoder's inverse), describes each STFT frame by its log-magnitude and its
power-law-compressed real and imaginary parts (the compressed complex spectrum speech enhancement
models use, so the phase is there too), stacks ``stack`` consecutive STFT frames into one latent
frame and runs ConvNeXt blocks at the frame rate. Spectral codec encoders in this vein: APCodec
(Ai et al., 2024), ESC (Gu & Mi, 2024). Not causal: the blocks look 3 frames ahead.
"""
from __future__ import annotations

import torch
from torch import nn

from ..decoders.istft import ConvNeXtBlock, aligned_stft, check_stft_geometry, windowed_dft_basis


class StftEncoder(nn.Module):
    """``[B, 1, T]`` -> ``[B, latent_dim, T / hop]`` for ``T`` a multiple of the hop.

    Args:
        latent_dim: output channels.
        hop: samples per latent frame.
        stack: STFT frames per latent frame (the STFT hop is ``hop / stack``).
        dim, hidden, layers: ConvNeXt width, MLP width (default ``3 * dim``) and depth.
        n_fft: STFT size (default ``4 * hop / stack``: 75 % window overlap). STFT frame ``s`` is
            centred on sample ``s * stft_hop + stft_hop / 2`` (zeros outside the signal), so latent
            frame ``f`` covers samples ``f * hop .. (f + 1) * hop`` at the centre of its windows:
            the same alignment as the iSTFT decoder's frames.
        compress: exponent of the magnitude compression of the real/imaginary features.
    """

    EPS = 1e-8

    def __init__(self, latent_dim: int, hop: int = 320, stack: int = 2, dim: int = 256,
                 hidden: int | None = None, layers: int = 6, n_fft: int | None = None,
                 compress: float = 0.3):
        super().__init__()
        hop, stack = int(hop), int(stack)
        if stack < 1 or hop % stack:
            raise ValueError(f"stft encoder: stack={stack} must be a positive divisor of the hop {hop}")
        self.hop, self.stack = hop, stack
        self.stft_hop = hop // stack
        self.n_fft = int(n_fft or 4 * self.stft_hop)
        check_stft_geometry(self.n_fft, self.stft_hop, "stft encoder")
        if not 0.0 < compress <= 1.0:
            raise ValueError(f"stft encoder: compress={compress} must be in (0, 1]")
        self.compress = float(compress)
        self.n_bins = self.n_fft // 2 + 1
        basis, _ = windowed_dft_basis(self.n_fft)
        self.register_buffer("basis", basis.float().unsqueeze(1), persistent=False)  # [2K, 1, n_fft]
        hidden = int(hidden or 3 * dim)
        self.embed = nn.Linear(3 * self.n_bins * stack, dim)
        self.norm_in = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, hidden, 1.0 / layers) for _ in range(int(layers)))
        self.norm_out = nn.LayerNorm(dim, eps=1e-6)
        self.proj = nn.Linear(dim, latent_dim)

    def spectrum(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T]`` -> ``[B, 2K, T / stft_hop]``: real parts then imaginary parts."""
        return aligned_stft(wav, self.basis, self.stft_hop)

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T]`` -> ``[B, T / hop, 3K * stack]``: per STFT frame, the log-magnitude and the
        compressed real and imaginary parts, ``stack`` frames side by side per latent frame."""
        re, im = self.spectrum(wav).split(self.n_bins, dim=1)
        power = re * re + im * im + self.EPS
        scale = power ** (0.5 * self.compress - 0.5)  # |X|^c / |X|
        feats = torch.cat([0.5 * torch.log(power), re * scale, im * scale], dim=1)  # [B, 3K, S]
        b, c, s = feats.shape
        frames = s // self.stack
        feats = feats[..., : frames * self.stack].reshape(b, c, frames, self.stack)
        return feats.permute(0, 2, 3, 1).reshape(b, frames, self.stack * c)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.norm_in(self.embed(self.features(wav))).transpose(1, 2)  # [B, dim, F]
        for block in self.blocks:
            x = block(x)
        z = self.proj(self.norm_out(x.transpose(1, 2))).transpose(1, 2)
        assert z.shape[-1] == wav.shape[-1] // self.hop, (z.shape, wav.shape, self.hop)
        return z
