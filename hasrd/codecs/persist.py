"""How a codec is saved and loaded: ``config.json`` (the codec's name and whole model config) and
``model.safetensors`` (weights stored as float32, float16 or bfloat16), the layout of a Hugging
Face hub model repository, with a model card. :class:`PersistedCodec` gives every
:class:`hasrd.codecs.Codec` these methods."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .registry import codec_class

CONFIG_NAME = "config.json"
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def storage_tensor(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` cast to ``dtype`` for storage, unless it is not floating point or some finite value
    would overflow."""
    if not t.is_floating_point() or t.dtype == dtype:
        return t
    cast = t.to(dtype)
    return cast if torch.equal(torch.isfinite(cast), torch.isfinite(t)) else t


def strip_pretrained(cfg: Any) -> Any:
    """A model config with every ``pretrained`` source set to None: a saved folder's weights hold
    what they loaded, so rebuilding it never fetches them again."""
    if isinstance(cfg, dict):
        return {k: (None if k == "pretrained" else strip_pretrained(v)) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [strip_pretrained(v) for v in cfg]
    return cfg


class PersistedCodec:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` and the model card (a mixin of
    :class:`hasrd.codecs.Codec`; it uses ``codec_name``, ``config``, ``describe``,
    ``inference_state_dict`` and ``is_optional_weight``)."""

    def save_pretrained(self, directory: str | os.PathLike, dtype: str = "float32", results: str | None = None) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a model card ``README.md`` into
        ``directory`` (atomically each): the layout of a Hugging Face hub model repository.

        ``dtype``: how floating-point weights are stored, one of :data:`STORAGE_DTYPES`.
        ``float16`` halves the file; :meth:`from_pretrained` loads it back into a float32 model.
        A tensor whose values do not fit the storage type (e.g. a large running count) stays
        float32. Integer and boolean buffers are stored as they are.

        The card has the hub's YAML front matter (``library_name: hasrd``, tags ``audio``,
        ``speech``, ``codec``) and a description generated from :meth:`describe`; ``results``
        (markdown, e.g. a measured table) is added under "Results". A ``README.md`` already in
        ``directory`` that hasrd did not write is kept as it is.
        """
        from ..io.saved import save_model_folder

        if dtype not in STORAGE_DTYPES:
            raise ValueError(f"dtype {dtype!r}: use one of {list(STORAGE_DTYPES)}")
        if self._inference_only:
            raise RuntimeError("a codec prepared for inference has folded weights that a fresh model "
                               "cannot load; save it before calling prepare_for_inference()")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = self.inference_state_dict()
        # safetensors refuses tensors that share memory: clone so each is its own.
        state = {k: storage_tensor(v.clone(), STORAGE_DTYPES[dtype]) for k, v in state.items()}
        payload = {"codec": self.codec_name, "model": self.config}
        save_model_folder(directory, CONFIG_NAME, payload, state, {"codec": self.codec_name, "dtype": dtype})
        self.write_model_card(directory, results=results)
        return directory

    def write_model_card(self, directory: str | os.PathLike, repo_id: str | None = None, results: str | None = None) -> bool:
        """(Re)write ``directory/README.md``, the model card (see :meth:`save_pretrained`); False
        when a README.md that hasrd did not write is there and was kept."""
        from ..hub import codec_card, write_card

        return write_card(directory, codec_card(self.describe(), repo_id=repo_id, results=results))

    def push_to_hub(self, repo_id: str, *, dtype: str = "float32", results: str | None = None, private: bool | None = None,
                    token: str | None = None, revision: str | None = None, commit_message: str | None = None,
                    create_repo: bool = True):
        """Upload this codec to the Hugging Face hub as ``repo_id`` (``org/name``): the folder
        :meth:`save_pretrained` writes (card naming ``repo_id``), saved to a temporary folder and
        sent with ``huggingface_hub.HfApi().upload_folder`` (the repository is created first unless
        ``create_repo=False``). Needs the network and a token (``hf auth login`` or ``token=``).
        Returns ``upload_folder``'s commit info. ``load_codec(repo_id)`` reads it back."""
        from ..hub import push_folder

        return push_folder(lambda d: self.save_pretrained(d, dtype=dtype, results=results), repo_id,
                           card=lambda d, rid: self.write_model_card(d, repo_id=rid, results=results),
                           private=private, token=token, revision=revision, commit_message=commit_message,
                           create_repo=create_repo)

    @staticmethod
    def from_pretrained(directory: str | os.PathLike, map_location: str = "cpu"):
        """Rebuild a codec from a :meth:`save_pretrained` folder alone, or from a hub id
        ``org/name`` (:func:`hasrd.hub.resolve_model_dir`: an existing local folder wins; a hub id is
        looked up in the local hub cache, downloaded only when online and ``HF_HUB_OFFLINE`` is unset)."""
        from ..hub import resolve_model_dir
        from ..io.saved import read_model_config, read_weights

        directory = resolve_model_dir(directory)
        payload = read_model_config(directory, CONFIG_NAME, "a hasrd model folder")
        model_cfg = dict(payload["model"])
        # The stored config describes the full architecture: never fetch pretrained SSL weights
        # again, the safetensors file holds them.
        model_cfg = strip_pretrained(model_cfg)
        model = codec_class(payload["codec"]).from_config(model_cfg)
        state = read_weights(directory, map_location)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not model.is_optional_weight(k)]
        if missing or unexpected:
            raise ValueError(f"{directory}: weights do not match the config (missing {missing[:5]}, unexpected {unexpected[:5]})")
        model.eval()
        return model

