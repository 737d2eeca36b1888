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


class OverlapAddISTFT(nn.Module):
    """``[B, 2K, F]`` (real parts then imaginary parts of ``K = n_fft/2 + 1`` bins) ->
    ``[B, 1, F * hop]``: inverse real DFT, Hann window, overlap-add and window-energy
    normalisation, with "same" padding (frame ``f`` is centred on sample ``f * hop + hop / 2``)."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        if n_fft % 2 or n_fft < hop or (n_fft - hop) % 2:
            raise ValueError(f"istft: n_fft={n_fft} must be even, >= hop={hop}, and n_fft - hop even")
        self.n_fft, self.hop, self.trim = n_fft, hop, (n_fft - hop) // 2
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        n = torch.arange(n_fft, dtype=torch.float64)[None, :]
        angle = 2 * math.pi * k * n / n_fft
        scale = torch.full_like(k, 2.0 / n_fft)  # each bin stands for itself and its mirror ...
        scale[0] = scale[-1] = 1.0 / n_fft  # ... except DC and Nyquist
        basis = torch.cat([scale * torch.cos(angle), -scale * torch.sin(angle)]) * window
        self.register_buffer("basis", basis.float().unsqueeze(1), persistent=False)  # [2K, 1, n_fft]
        self.register_buffer("energy", (window ** 2).float().view(1, 1, n_fft), persistent=False)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        frames = spec.shape[-1]
        y = F.conv_transpose1d(spec, self.basis, stride=self.hop)
        env = F.conv_transpose1d(torch.ones_like(spec[:1, :1]), self.energy, stride=self.hop)
        s = slice(self.trim, self.trim + frames * self.hop)
        return y[..., s] / env[..., s].clamp_min(1e-8)


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
    """

    MAX_IF_BINS = 4.0
    PHASES = ("absolute", "integrated")

    def __init__(self, latent_dim: int, hop: int, dim: int = 256, hidden: int | None = None,
                 layers: int = 6, n_fft: int | None = None, upsample: int = 1, post_layers: int = 1,
                 phase: str = "absolute"):
        super().__init__()
        if phase not in self.PHASES:
            raise ValueError(f"istft: phase must be one of {self.PHASES}, not {phase!r}")
        self.phase = phase
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

    def _integrate(self, deviation: torch.Tensor) -> torch.Tensor:
        """``[B, K, F]`` raw head outputs -> phase (radians) of each bin at each frame's start."""
        turns = self.centre_turns + (self.MAX_IF_BINS * torch.tanh(deviation)).double() * self.turns_per_bin
        turns = torch.cumsum(turns - torch.floor(turns), dim=-1)  # float64: exact for long utterances
        turns = turns - torch.floor(turns)
        return (2 * math.pi) * turns.float() + self.start_offset

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        frames = z.shape[-1]
        x = self.norm_in(self.embed(z).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        if self.up is not None:
            x = self.up(x)[..., : frames * self.upsample]
            for block in self.post:
                x = block(x)
        x = self.head(self.norm_out(x.transpose(1, 2))).transpose(1, 2)  # [B, 2K, F * upsample]
        log_mag, phase = x.split(self.n_bins, dim=1)
        if self.phase == "integrated":
            phase = self._integrate(phase)
        mag = torch.exp(log_mag.clamp(max=math.log(100.0)))  # cap as Vocos does: no overflow early on
        spec = torch.cat([mag * torch.cos(phase), mag * torch.sin(phase)], dim=1)
        return self.istft(spec)


def build_generator(cfg: dict, latent_dim: int, hop: int | None = None, causal: bool = False) -> nn.Module:
    """The generator a config's ``decoder`` section names: ``type: dac`` (default; ``channels``,
    ``rates``) or ``type: istft`` (``dim``, ``hidden``, ``layers``, ``n_fft``, ``upsample``,
    ``post_layers``, ``phase``; hop from the encoder)."""
    from .generator import Generator

    cfg = dict(cfg)
    kind = cfg.pop("type", "dac")
    if kind == "dac":
        return Generator(latent_dim, int(cfg["channels"]), cfg["rates"], causal=causal)
    if kind == "istft":
        if causal:
            raise ValueError("decoder type 'istft' is not causal: use type 'dac' for a causal codec")
        if hop is None:
            raise ValueError("decoder type 'istft' needs the encoder's hop")
        unknown = set(cfg) - {"dim", "hidden", "layers", "n_fft", "upsample", "post_layers", "phase"}
        if unknown:
            raise ValueError(f"decoder type 'istft': unknown keys {sorted(unknown)}")
        phase = str(cfg.pop("phase", "absolute"))
        return IstftGenerator(latent_dim, hop, phase=phase, **{k: int(v) for k, v in cfg.items()})
    raise ValueError(f"decoder type must be 'dac' or 'istft', not {kind!r}")
