"""A codec plus an enhancement network: noisy waveform -> codec representation -> clean one -> waveform.

``Enhancer.save_pretrained(DIR)`` writes ``DIR/enhancer.json``, ``DIR/model.safetensors`` (the
network), the codec it works in and a model card ``DIR/README.md``, so a folder is self-contained
(and a hub repository as it is: :meth:`Enhancer.push_to_hub`); :func:`load_enhancer` reads it
back from a folder or a hub id. The codec: a built-in model is **named** (``codec``: its name, with
``codec_fingerprint``), not copied, and loaded from the package, which must hold the same weights
(a one-line refusal otherwise); any other codec is copied into ``DIR/codec/`` (a normal hasrd model
folder).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..codecs import Codec, TokenCodec, load_codec
from ..codecs.latent import CodecView
from .features import level_gain
from .model import LatentEnhancer

CONFIG_NAME = "enhancer.json"
WEIGHTS_NAME = "model.safetensors"
CODEC_DIR = "codec"


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
            if not isinstance(codec, TokenCodec):
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
        from ..codecs import builtin_model_of
        from ..io.saved import save_model_folder

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        builtin = builtin_model_of(self.codec.codec_name, self.codec.fingerprint())
        payload = {"network": self.network.config, "settings": self.settings,
                   "codec_fingerprint": self.codec.fingerprint()}
        if builtin is not None:  # named: the package has it (no second copy of its weights)
            payload["codec"] = builtin
        else:
            self.codec.save_pretrained(directory / CODEC_DIR)
        save_model_folder(directory, CONFIG_NAME, payload, self.network.state_dict(), {"kind": "hasrd-enhancer"})
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
    from ..hub import is_hub_id, resolve_model_dir
    from ..io.saved import read_model_config, read_weights

    directory = resolve_model_dir(directory, what="enhancer") if is_hub_id(directory) else Path(directory)
    payload = read_model_config(directory, CONFIG_NAME, "an enhancer folder")
    named = payload.get("codec")
    if named is None and not (directory / CODEC_DIR).is_dir():
        raise FileNotFoundError(f"{directory}: not an enhancer folder (needs {CONFIG_NAME}, {WEIGHTS_NAME} and "
                                f"{CODEC_DIR}/ or a built-in codec's name)")
    codec = load_codec(named if named is not None else directory / CODEC_DIR, map_location=map_location)
    if payload.get("codec_fingerprint") and codec.fingerprint() != payload["codec_fingerprint"]:
        where = f"the built-in codec {named}" if named is not None else f"the codec in {CODEC_DIR}/"
        raise ValueError(f"{directory}: {where} (fingerprint {codec.fingerprint()}) is not the one this enhancer was "
                         f"trained with ({payload['codec_fingerprint']})")
    network = LatentEnhancer(payload["network"])
    network.load_state_dict(read_weights(directory, map_location))
    enh = Enhancer(codec, network, payload.get("settings"))
    enh.eval()
    return enh
