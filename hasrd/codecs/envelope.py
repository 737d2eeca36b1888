"""A token codec of the spectral envelope alone: the envelope half of the pitch codec.

Per 20 ms frame, the log band power that the harmonic-plus-noise synthesiser reads from the audio
(:mod:`hasrd.pitch.envelope`, pitch-adaptive) goes through a small convolutional encoder, a
residual vector quantizer whose first codebook is distilled from a teacher (the semantic codebook,
as in every hasrd codec) and a convolutional decoder back to log band power. Unlike a waveform
codec it spends no bits on phase or on the harmonics' fine structure: those are the pitch stream's
job (:class:`hasrd.codecs.pitch.PitchCodec` with ``base: {name: envelope, ...}`` puts this codec's
codes around a pitch codebook and renders voiced speech through the synthesiser).

Alone, :meth:`decode` renders noise through the decoded envelope: whispered speech, since no pitch
was sent. Training regresses the decoded envelope on the encoded one (``losses["env"]``), no
waveform and no discriminator, so a CPU trains it in minutes.

Config (``model``)::

    name: envelope
    sample_rate: 16000
    hop: 320
    latent_dim: 64
    floor_db: 50.0                 # the envelope's floor below each frame's loudest band
    pitch_input: false             # the decoder also reads the sent F0 and voicing (pitch codec base)
    loss_bands: {low_hz: 150, high_hz: 4300, outside: 0.3}   # optional, training only: the bands
                                   # outside low_hz..high_hz (those STOI does not read) weigh less
    net: {hidden: 256, layers: 4, kernel: 5}          # encoder and decoder
    synth: {n_bands: 32, n_fft: 512}
    quantizer: {n_semantic: 1, n_acoustic: 3, codebook_size: 1024, dropout: 0.5, ...}
    semantic_head: {dim: 39, n_units: 100}
"""
from __future__ import annotations

import torch

from ..pitch.envelope import LOG_CENTRE, LOG_SCALE, EnvelopeNet, envelope_loss, floor_log
from ..pitch.synth import HarmonicNoiseSynth, band_edges
from ..quantize import HierarchicalQuantizer
from .base import CodecOutput, TokenCodec
from .parts import SemanticHead, quantizer_kwargs
from .registry import register_codec


@register_codec("envelope")
class EnvelopeCodec(TokenCodec):
    """See the module docstring; ``config`` is the ``model`` section."""

    def __init__(self, config: dict):
        super().__init__(config)
        cfg = self.config
        self._sample_rate, self._hop = int(cfg.get("sample_rate", 16000)), int(cfg.get("hop", 320))
        D = int(cfg.get("latent_dim", 64))
        s = {"n_bands": 32, "n_fft": 512, **(cfg.get("synth") or {})}
        self.n_bands = int(s["n_bands"])
        self.synth = HarmonicNoiseSynth(self._sample_rate, self._hop, self.n_bands, int(s["n_fft"]))
        net = {"hidden": 256, "layers": 4, "kernel": 5, **(cfg.get("net") or {})}
        self.encoder = EnvelopeNet(self.n_bands, D, **net)
        q = cfg["quantizer"]
        self.quantizer = HierarchicalQuantizer(D, D, int(q.get("n_semantic", 1)), int(q["n_acoustic"]),
                                               int(q["codebook_size"]), residual=True, **quantizer_kwargs(q))
        self.dropout = float(q.get("dropout", 0.0))
        #: ``pitch_input``: the decoder reads two more channels, the F0 and voicing that the pitch
        #: codec sends (:func:`hasrd.pitch.envelope.pitch_features`; zeros when none is sent)
        self.pitch_input = bool(cfg.get("pitch_input", False))
        self.decoder = EnvelopeNet(D + (2 if self.pitch_input else 0), self.n_bands, **net)
        self.semantic_head = SemanticHead(D, **cfg.get("semantic_head", {}))
        self.floor_db = float(cfg.get("floor_db", 50.0))
        #: ``loss_bands`` (training only): the envelope loss's weight per band, 1 for the bands whose
        #: centre lies within ``low_hz..high_hz``, ``outside`` for the others; uniform when absent
        lb = cfg.get("loss_bands")
        weight = None
        if lb:
            unknown = set(lb) - {"low_hz", "high_hz", "outside"}
            if unknown:
                raise ValueError(f"model.loss_bands: unknown keys {sorted(unknown)} (low_hz, high_hz, outside)")
            edges = torch.tensor(band_edges(self._sample_rate, self.n_bands), dtype=torch.float32)
            centre = 0.5 * (edges[:-1] + edges[1:])
            inside = (centre >= float(lb.get("low_hz", 0.0))) & (centre <= float(lb.get("high_hz", self._sample_rate / 2)))
            weight = torch.where(inside, 1.0, float(lb.get("outside", 1.0)))
        self.register_buffer("loss_band_weight", weight, persistent=False)

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def hop_length(self) -> int:
        return self._hop

    @property
    def latent_dim(self) -> int:
        return int(self.config.get("latent_dim", 64))

    @property
    def codebook_sizes(self) -> list[int]:
        return self.quantizer.codebook_sizes

    @property
    def num_semantic_codebooks(self) -> int:
        return self.quantizer.n_semantic

    # ---- the envelope ------------------------------------------------------------------------
    def _track(self, wav: torch.Tensor) -> torch.Tensor:
        from ..pitch.track import track

        return track(wav[:, 0], self.sample_rate, self.hop_length)[0].float()

    def target(self, wav: torch.Tensor, f0: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, 1, T]`` (whole frames) -> its log band power ``[B, F, N]``, floored (pitch-adaptive
        at ``f0 [B, F]`` Hz; tracked when not given)."""
        f0 = self._track(wav) if f0 is None else f0
        power = self.synth.analyse(wav[:, 0].float(), f0)[:, : f0.shape[-1]]
        return floor_log(torch.log(power.clamp(min=1e-10)), self.floor_db)

    def latent_at(self, wav: torch.Tensor, f0: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's latent ``[B, D, F]`` of ``[B, 1, T]`` (whole frames) at a known F0."""
        x = (self.target(wav, f0) - LOG_CENTRE) / LOG_SCALE
        return self.encoder(x.transpose(1, 2)).transpose(1, 2)

    def log_envelope(self, latent: torch.Tensor, pitch: torch.Tensor | None = None) -> torch.Tensor:
        """A (quantized) latent ``[B, D, F]`` -> decoded log band power ``[B, F, N]``; with
        ``pitch_input``, ``pitch`` ``[B, 2, F]`` (:func:`pitch_features`; None: no pitch sent)."""
        if self.pitch_input:
            if pitch is None:
                pitch = latent.new_zeros(latent.shape[0], 2, latent.shape[-1])
            latent = torch.cat([latent, pitch.to(latent.dtype)], dim=1)
        return self.decoder(latent) * LOG_SCALE + LOG_CENTRE

    # ---- the token interface -----------------------------------------------------------------
    def _encoder_latent(self, wav: torch.Tensor) -> torch.Tensor:
        return self.latent_at(wav)

    def _latent_to_codes(self, latent: torch.Tensor, n_q: int) -> torch.Tensor:
        return self.quantizer.encode(latent, n_q=n_q)

    def _codes_to_latent(self, codes: torch.Tensor) -> torch.Tensor:
        return self.quantizer.decode_sum(codes.long())

    def _run_latent_decoder(self, latent: torch.Tensor) -> torch.Tensor:
        """Noise through the decoded envelope (no pitch: whispered speech)."""
        env = torch.exp(self.log_envelope(latent).float())
        f0 = torch.full(env.shape[:2], 100.0, device=env.device)
        return self.synth(f0, torch.zeros_like(env), env)

    def encode(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        return self.latent_to_codes(self.encode_to_latent(wav), self.check_n_q(n_q))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decode_latent(self.codes_to_latent(codes))

    # ---- training ----------------------------------------------------------------------------
    def forward(self, wav: torch.Tensor, n_q=None, f0: torch.Tensor | None = None,
                pitch: torch.Tensor | None = None) -> CodecOutput:
        """Envelope regression through the quantizer (``pitch``: the decoder's pitch channels, with
        ``pitch_input``): ``losses`` ``env`` (:func:`envelope_loss`)
        and ``vq``; the semantic head's predictions for the teacher's loss; the quantized latent
        (``latent``, for a caller that renders it); no audio."""
        x = self.pad_to_hop(wav)
        n_q = self.n_q_per_item(n_q, x.shape[0], self.dropout, x.device)
        with torch.no_grad():
            target = self.target(x, f0)
        z = self.encoder(((target - LOG_CENTRE) / LOG_SCALE).transpose(1, 2)).transpose(1, 2)
        q = self.quantizer.merge(*self.quantizer(z, n_q=n_q))
        pred = self.log_envelope(q.x, None if pitch is None else pitch[..., : q.x.shape[-1]])
        losses = {"env": envelope_loss(pred, target, self.floor_db, self.loss_band_weight), "vq": q.penalty}
        return CodecOutput(None, q.codes, n_q, losses, q.metrics, self.semantic_head(q.first), latent=q.x)
