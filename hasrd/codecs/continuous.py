"""The continuous compact-latent codec (WavCube style): no codebooks, a small float latent.

Data flow (``T`` samples, ``F = T / hop`` frames, ``C`` encoder channels, ``D`` latent channels,
``D`` several times smaller than ``C`` and than the teacher's feature size)::

    wav [B,1,T] -> encoder -> h [B,C,F] -> bottleneck (convs, LayerNorm, tanh) -> z [B,D,F]
    z -> semantic head (up-projection) -> teacher features [B,F,D_teacher]   (sem_reg)
    z -> generator -> wav [B,1,T]                                            (stage 2: mel, GAN)

Training has two stages, picked by ``model.stage``:

1. **semantic bottleneck**: encoder (if trainable), bottleneck and semantic head learn to
   reconstruct the teacher's features from ``z``. The generator is frozen and not run.
2. **end to end**: started with ``train.init_from`` = a stage-1 export. The generator decodes
   ``z`` (mel + GAN losses) while an *anchor* keeps ``z`` on its stage-1 manifold: a frozen copy
   of the stage-1 semantic head must still reconstruct the teacher from the current ``z``
   (``semantic["anchor_features"]``, the trainer's ``anchor`` loss), and ``z`` stays close (MSE)
   to what a frozen copy of the stage-1 encoder and bottleneck gives (``losses["anchor_l2"]``).

The frozen copies (``anchor_*`` weights) are taken from the warm-start weights when the
``init_from`` folder has none (a stage-1 export) and are saved with a stage-2 model, so a later
stage-2 run can warm-start from a stage-2 export and keep the same anchor.
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..decoders import build_generator
from .base import Codec, CodecOutput
from .parts import SemanticHead, build_encoder
from .registry import register_codec

#: parts that ``model.freeze`` may name
PARTS = ("encoder", "bottleneck", "semantic_head", "decoder")
ANCHOR_PREFIX = "anchor_"


class LatentBottleneck(nn.Module):
    """``[B, C, F]`` -> ``[B, D, F]``: a small conv stack down to the compact latent.

    Args:
        in_dim: encoder channels ``C``.
        latent_dim: latent channels ``D``.
        hidden: width of the conv layers (0: a single 1x1 projection, ``layers`` ignored).
        layers: conv + GELU layers before the final 1x1 projection to ``D``.
        kernel: odd kernel size of those layers (lengths are kept exactly).
        norm: ``layer`` (LayerNorm over channels, no affine) or ``none``.
        bound: ``tanh`` (values in (-1, 1), safe for float16 files) or ``none``.
    """

    def __init__(self, in_dim: int, latent_dim: int, hidden: int = 0, layers: int = 1, kernel: int = 3,
                 norm: str = "layer", bound: str = "tanh"):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"bottleneck kernel must be odd, got {kernel}")
        if norm not in ("layer", "none") or bound not in ("tanh", "none"):
            raise ValueError(f"bottleneck norm must be layer|none and bound tanh|none, got {norm!r}, {bound!r}")
        blocks: list[nn.Module] = []
        width = in_dim
        if hidden:
            for _ in range(int(layers)):
                blocks += [nn.Conv1d(width, hidden, kernel, padding=kernel // 2), nn.GELU()]
                width = hidden
        blocks.append(nn.Conv1d(width, latent_dim, 1))
        self.net = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(latent_dim, elementwise_affine=False) if norm == "layer" else None
        self.bound = bound

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = self.net(h)
        if self.norm is not None:
            z = self.norm(z.transpose(1, 2)).transpose(1, 2)
        return torch.tanh(z) if self.bound == "tanh" else z


@register_codec("continuous")
class ContinuousCodec(Codec):
    """See the module docstring; ``config`` is the ``model`` section of a config.

    A :class:`~hasrd.codecs.base.Codec` and not a :class:`~hasrd.codecs.base.TokenCodec`, by
    design: its bottleneck is the float latent itself, so there are no codes to encode, decode,
    count bits of or stream, and those operations (``encode``, ``decode``, ``bitrate``,
    ``n_q_for_bitrate``, ``check_n_q``, ``latent_to_codes``, ``stream_encoder``...) are absent (an
    AttributeError), not stubs that raise. Its interface is the latent one every codec has
    (:meth:`encode_to_latent`, :meth:`decode_latent`, :attr:`latent_dim`, :meth:`latent_bitrate`);
    the codebook facts every codec states are true here too: no codebooks (``codebook_sizes == []``,
    ``num_codebooks == 0``), which :meth:`describe` reports in the one record layout. A caller that
    needs codes checks ``isinstance(codec, TokenCodec)`` once (``codec.continuous`` is the same
    test) instead of catching errors.
    """

    #: what a ``.hsrl`` latent file stores (:mod:`hasrd.io.latentfile`): the rounding
    #: ``encode_to_latent(x, quantize=True)`` applies
    storage_dtype: ClassVar[torch.dtype] = torch.float16

    def __init__(self, config: dict):
        super().__init__(config)
        cfg = self.config
        self._sample_rate = int(cfg["sample_rate"])
        self.stage = int(cfg.get("stage", 1))
        if self.stage not in (1, 2):
            raise ValueError(f"model.stage must be 1 or 2, got {self.stage}")
        C, D = int(cfg["feature_dim"]), int(cfg["latent_dim"])
        self.encoder = build_encoder(cfg["encoder"], C)
        if hasattr(self.encoder, "arch_config"):
            self.config["encoder"]["config"] = self.encoder.arch_config
        self.bottleneck = LatentBottleneck(C, D, **cfg.get("bottleneck", {}))
        head = dict(cfg.get("semantic_head", {}))
        if head.get("n_units"):
            raise ValueError("the continuous codec regresses teacher features only: semantic_head.n_units must be 0")
        self.semantic_head = SemanticHead(D, **head)
        self.decoder = build_generator(cfg["decoder"], D, hop=self.encoder.hop, sample_rate=int(cfg["sample_rate"]))
        if self.decoder.renders_pitch:
            raise ValueError("decoder.source: a pitch-rendering decoder is supported by the hasrd codec only")
        if self.encoder.hop != self.decoder.hop:
            raise ValueError(f"encoder hop {self.encoder.hop} != decoder hop {self.decoder.hop}")

        # stage 1 also freezes the decoder: no waveform yet
        self._freeze(cfg.get("freeze", []), PARTS, always=("decoder",) if self.stage == 1 else ())

        # stage 2: frozen stage-1 copies (filled by prepare_training from the warm-start weights)
        self.anchor_head = self.anchor_encoder = self.anchor_bottleneck = None
        anchor = {"features": True, "latent": True, **cfg.get("anchor", {})}
        if self.stage == 2:
            # built like the live parts (an SSL encoder from its resolved config, no hub access)
            if anchor["features"] and self.semantic_head.features is not None:
                self.anchor_head = _frozen(SemanticHead(D, **head))
            if anchor["latent"]:
                # a frozen encoder needs no copy: the live one is the stage-1 one
                if any(p.requires_grad for p in self.encoder.parameters()):
                    self.anchor_encoder = _frozen(build_encoder({**self.config["encoder"], "pretrained": None}, C)
                                                  if "config" in self.config["encoder"] else build_encoder(cfg["encoder"], C))
                self.anchor_bottleneck = _frozen(LatentBottleneck(C, D, **cfg.get("bottleneck", {})))
            for frozen, live in self._anchor_pairs():
                frozen.load_state_dict(live.state_dict())

    # ---- static description ---------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def hop_length(self) -> int:
        return self.decoder.hop

    @property
    def latent_dim(self) -> int:
        return int(self.config["latent_dim"])

    def describe(self) -> dict:
        d = super().describe()
        d.update({"continuous": True, "latent_dim": self.latent_dim, "stage": self.stage,
                  "latent_bitrate_float16": self.latent_bitrate(16)})
        return d

    # ---- the work -----------------------------------------------------------------------------
    def _latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(self.encoder(x))

    def forward(self, wav: torch.Tensor, n_q=None) -> CodecOutput:
        """``n_q`` is ignored (no codebooks). ``audio`` is None while training stage 1."""
        T = wav.shape[-1]
        x = self.pad_to_hop(wav)
        B = x.shape[0]
        z = self._latent(x)
        semantic = self.semantic_head(z)
        losses: dict[str, torch.Tensor] = {}
        audio = None
        if self.stage == 2 or not self.training:
            audio = self.decoder(z)[..., :T]
        if self.stage == 2 and self.training:
            if self.anchor_head is not None:
                # gradient reaches z through the frozen head, never the head itself
                semantic["anchor_features"] = self.anchor_head(z)["features"]
            if self.anchor_bottleneck is not None:
                with torch.no_grad():
                    enc = self.anchor_encoder if self.anchor_encoder is not None else self.encoder
                    z_ref = self.anchor_bottleneck(enc(x))
                losses["anchor_l2"] = F.mse_loss(z, z_ref)
        codes = torch.zeros(B, 0, z.shape[-1], dtype=torch.long, device=z.device)
        n_q = torch.zeros(B, dtype=torch.long, device=z.device)
        return CodecOutput(audio, codes, n_q, losses, {}, semantic, latent=z)

    @torch.no_grad()
    def encode_to_latent(self, wav: torch.Tensor, quantize: bool = False, n_q: int | None = None) -> torch.Tensor:
        """``[B, 1, T]`` at :attr:`sample_rate` -> float ``[B, latent_dim, ceil(T / hop_length)]``.

        ``quantize=True``: the latent rounded as a ``.hsrl`` file stores it (:attr:`storage_dtype`,
        float16), still float32: what decoding a saved latent decodes. ``n_q`` does not apply (no
        codebooks): a ValueError if given."""
        if n_q is not None:
            raise ValueError(f"{self.codec_name} is a continuous codec with no codebooks: n_q does not apply")
        z = self._latent(self.pad_to_hop(wav))
        return z.to(self.storage_dtype).to(z.dtype) if quantize else z

    @torch.no_grad()
    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """float ``[B, latent_dim, F]`` (any float dtype; decoded as float32) -> ``[B, 1, F * hop_length]``."""
        self._check_latent(latent)
        return self._run_decoder(latent.float())

    # ---- training hooks -------------------------------------------------------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        for m in self._anchors():
            m.eval()  # frozen copies never train (no dropout or layer drop)
        return self

    def _anchor_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        pairs = [(self.anchor_head, self.semantic_head), (self.anchor_encoder, self.encoder),
                 (self.anchor_bottleneck, self.bottleneck)]
        return [(frozen, live) for frozen, live in pairs if frozen is not None]

    def _anchors(self) -> list[nn.Module]:
        return [frozen for frozen, _ in self._anchor_pairs()]

    def is_optional_weight(self, key: str) -> bool:
        # a stage-1 export has no anchor: a stage-2 warm start takes it from the stage-1 weights
        return key.startswith(ANCHOR_PREFIX)

    def prepare_training(self, warm_start_keys: set[str] | None) -> str | None:
        if self.stage == 1:
            return None
        if warm_start_keys is None:
            raise ValueError("model.stage=2 starts from a stage-1 model: set train.init_from to a stage-1 export")
        if any(k.startswith(ANCHOR_PREFIX) for k in warm_start_keys):
            return "stage 2: anchor loaded with the warm-start weights"
        for frozen, live in self._anchor_pairs():
            frozen.load_state_dict(live.state_dict())
        self._fingerprint = None
        return "stage 2: anchor = frozen copy of the warm-start (stage-1) weights"


def _frozen(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()
