"""A codec plus an enhancement network: noisy waveform -> codec representation -> clean one -> waveform.

``Enhancer.save_pretrained(DIR)`` writes ``DIR/enhancer.json``, ``DIR/model.safetensors`` (the
network) and ``DIR/codec/`` (the codec it works in, a normal hasrd model folder) and a model card
``DIR/README.md``, so a folder is self-contained (and a hub repository as it is:
:meth:`Enhancer.push_to_hub`); :func:`load_enhancer` reads it back from a folder or a hub id.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..codecs import Codec, load_codec
from ..codecs.dualstream import DualStreamCodec
from .features import level_gain
from .model import LatentEnhancer

CONFIG_NAME = "enhancer.json"
WEIGHTS_NAME = "model.safetensors"
CODEC_DIR = "codec"


class CodecView:
    """The two representations of a codec that enhancement and the token LM work on.

    ``continuous``: the latent before quantization (a token codec's encoder output, which its RVQ
    quantizes; for the dual-stream codec the semantic latent then the acoustic one, stacked on the
    channel axis; a continuous codec's latent). ``tokens``: the codes of the first ``n_q`` codebooks.
    Works with the HASRD codec (conv or SSL encoder), the dual-stream codec and the continuous codec.
    """

    def __init__(self, codec: Codec):
        self.codec = codec
        self.dual = isinstance(codec, DualStreamCodec)
        if not (codec.continuous or self.dual or all(hasattr(codec, a) for a in ("encoder", "quantizer", "decoder"))):
            raise ValueError(f"enhancement needs a codec with an encoder, quantizer and decoder "
                             f"(hasrd, hcodec or continuous), not {codec.codec_name!r}")

    @property
    def latent_dim(self) -> int:
        if self.codec.continuous:
            return int(self.codec.latent_dim)
        if self.dual:
            return int(self.codec.config["semantic_dim"]) + int(self.codec.config["acoustic_dim"])
        return int(self.codec.config["latent_dim"])

    @torch.inference_mode()
    def analyse(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[B, 1, T]`` -> (latent ``[B, D, F]``, codes ``[B, num_codebooks, F]`` or None)."""
        c = self.codec
        if c.continuous:
            return c.encode_latent(wav), None
        if self.dual:
            z_s, z_a = c._latents(c.pad_to_hop(wav))
            return torch.cat([z_s, z_a], dim=1), c.quantizer.encode(z_s, z_a, n_q=c.num_codebooks)
        z = c.encoder(c.pad_to_hop(wav))
        return z, c.quantizer.encode(z, n_q=c.num_codebooks)

    @torch.inference_mode()
    def synthesize_latent(self, z: torch.Tensor, requantize: bool) -> torch.Tensor:
        """Latent ``[B, D, F]`` -> ``[B, 1, F * hop]``: decoded directly, or through the RVQ first."""
        c = self.codec
        if c.continuous:
            return c.decode_latent(z)
        if self.dual:
            z_s, z_a = z.split([int(c.config["semantic_dim"]), int(c.config["acoustic_dim"])], dim=1)
            if requantize:
                return c.decode(c.quantizer.encode(z_s.contiguous(), z_a.contiguous(), n_q=c.num_codebooks))
            return c._fuse(z_s, z_a)
        if requantize:
            return c.decode(c.quantizer.encode(z, n_q=c.num_codebooks))
        return c.decoder(z)

    @torch.inference_mode()
    def synthesize_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.codec.decode(codes)


class Enhancer(nn.Module):
    """Speech enhancement in a codec's latent space (see :mod:`hasrd.enhance.model`).

    Args:
        codec: the codec the network works in (frozen).
        network: a :class:`LatentEnhancer`.
        settings: ``{"n_q": tokens form's codebooks, "requantize": continuous form decodes through the RVQ}``.
    """

    def __init__(self, codec: Codec, network: LatentEnhancer, settings: dict[str, Any] | None = None):
        super().__init__()
        self.codec, self.network = codec, network
        self.settings = {"n_q": None, "requantize": False, **(settings or {})}
        self.view = CodecView(codec)
        if self.form == "tokens":
            n_q = int(self.settings["n_q"] or network.n_q)
            if codec.continuous:
                raise ValueError("the tokens form needs a token codec; this one is continuous")
            if not 1 <= n_q <= codec.num_codebooks:
                raise ValueError(f"n_q {n_q} is not in 1..{codec.num_codebooks}")
            self.settings["n_q"] = n_q

    @property
    def form(self) -> str:
        return self.network.form

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def name(self) -> str:
        """``se-continuous``, ``se-continuous-rvq`` (decoded through the RVQ) or ``se-tokens``."""
        return f"se-{self.form}" + ("-rvq" if self.form == "continuous" and self.settings["requantize"] else "")

    @property
    def bitrate(self) -> float:
        """Nominal bits/s of the enhanced representation: its tokens, or 0 for a continuous latent."""
        return float(self.codec.bitrate(self.settings["n_q"])) if self.form == "tokens" else 0.0

    @torch.inference_mode()
    def enhance(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T]`` noisy speech at :attr:`sample_rate` -> ``[B, 1, T]`` enhanced speech."""
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"expected a waveform [B, 1, T], got {tuple(wav.shape)}")
        T = wav.shape[-1]
        gain = level_gain(wav)  # work at the level the network was trained at, give the input's back
        z, codes = self.view.analyse(wav * gain)
        net = self.network
        if self.form == "continuous":
            z_hat = net.denormalise(net(net.normalise(z)))
            y = self.view.synthesize_latent(z_hat, bool(self.settings["requantize"]))
        else:
            n_q = self.settings["n_q"]
            y = self.view.synthesize_codes(net(codes[:, :n_q]).argmax(-1))
        return y[..., :T] / gain

    def describe(self) -> dict[str, Any]:
        return {"form": self.form, "codec": self.codec.codec_name, "codec_fingerprint": self.codec.fingerprint(),
                "sample_rate": self.sample_rate, "bitrate": self.bitrate, **self.settings,
                "parameters": sum(p.numel() for p in self.network.parameters())}

    def save_pretrained(self, directory: str | os.PathLike, results: str | None = None) -> Path:
        """Write the export folder (module docstring) and a model card ``README.md`` (hub front
        matter, a generated description, ``results`` markdown if given; a README.md hasrd did not
        write is kept)."""
        from safetensors.torch import save_file

        from ..io.atomic import atomic_write

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.codec.save_pretrained(directory / CODEC_DIR)
        state = {k: v.detach().cpu().contiguous().clone() for k, v in self.network.state_dict().items()}
        atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata={"kind": "hasrd-enhancer"}))
        payload = {"network": self.network.config, "settings": self.settings,
                   "codec_fingerprint": self.codec.fingerprint()}
        atomic_write(directory / CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(payload, indent=2) + "\n"))
        self.write_model_card(directory, results=results)
        return directory

    def write_model_card(self, directory: str | os.PathLike, repo_id: str | None = None, results: str | None = None) -> bool:
        from ..hub import enhancer_card, write_card

        return write_card(directory, enhancer_card(self.describe(), self.codec.describe(), repo_id=repo_id, results=results))

    def push_to_hub(self, repo_id: str, *, results: str | None = None, private: bool | None = None, token: str | None = None,
                    revision: str | None = None, commit_message: str | None = None, create_repo: bool = True):
        """Upload this enhancer's export folder to the hub as ``repo_id`` (as
        :meth:`hasrd.codecs.Codec.push_to_hub`); ``load_enhancer(repo_id)`` reads it back."""
        from ..hub import push_folder

        return push_folder(lambda d: self.save_pretrained(d, results=results), repo_id,
                           card=lambda d, rid: self.write_model_card(d, repo_id=rid, results=results),
                           private=private, token=token, revision=revision, commit_message=commit_message,
                           create_repo=create_repo)


def load_enhancer(directory: str | os.PathLike, map_location: str = "cpu") -> Enhancer:
    """An :class:`Enhancer` from a :meth:`Enhancer.save_pretrained` folder, or a hub id
    ``org/name`` resolved as for codecs (:func:`hasrd.hub.resolve_model_dir`; eval mode)."""
    from safetensors.torch import load_file

    from ..hub import is_hub_id, resolve_model_dir

    directory = resolve_model_dir(directory, what="enhancer") if is_hub_id(directory) else Path(directory)
    cfg_path = directory / CONFIG_NAME
    if not cfg_path.is_file() or not (directory / WEIGHTS_NAME).is_file() or not (directory / CODEC_DIR).is_dir():
        raise FileNotFoundError(f"{directory}: not an enhancer folder (needs {CONFIG_NAME}, {WEIGHTS_NAME} and {CODEC_DIR}/)")
    payload = json.loads(cfg_path.read_text())
    codec = load_codec(directory / CODEC_DIR, map_location=map_location)
    if payload.get("codec_fingerprint") and codec.fingerprint() != payload["codec_fingerprint"]:
        raise ValueError(f"{directory}: the codec in {CODEC_DIR}/ is not the one this enhancer was trained with")
    network = LatentEnhancer(payload["network"])
    network.load_state_dict(load_file(str(directory / WEIGHTS_NAME), device=map_location))
    enh = Enhancer(codec, network, payload.get("settings"))
    enh.eval()
    return enh
