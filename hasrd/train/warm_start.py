"""Warm start (``train.init_from``, ``train.init_only``): a codec run starting from a
``save_pretrained`` folder's weights with a fresh optimizer, and the architecture comparison that
says whether the weights fit."""
from __future__ import annotations

import json
from pathlib import Path

from .config import TrainingError


def warm_start(codec, directory: Path, parts: list[str] | None = None, say=print) -> set[str]:
    """Load ``directory``'s weights into ``codec`` (same architecture; optimizer state fresh).

    Used to continue training across machines that keep no checkpoints: the exported model is
    small enough to commit, the optimizer state is not. Codebooks come with their weights, so
    k-means initialisation is not run again. Also how a continuous codec's stage 2 starts from
    its stage-1 export (``model.stage`` is not part of the architecture, see :func:`architecture`).

    ``parts`` (``train.init_only``): load only these top-level parts (e.g. ``encoder``,
    ``quantizer``, ``semantic_head``) and require only their config sections to match; the
    others (a new ``decoder``) start from scratch. Returns the names of the weights loaded.
    """
    from safetensors.torch import load_file

    from ..codecs.persist import CONFIG_NAME
    from ..io.saved import WEIGHTS_NAME

    if not (directory / WEIGHTS_NAME).is_file():
        raise TrainingError(f"train.init_from: {directory} has no {WEIGHTS_NAME}")
    stored = json.loads((directory / CONFIG_NAME).read_text())["model"]
    mine = codec.config
    own = dict(codec.named_children())
    if parts:
        unknown = set(parts) - set(own)
        if unknown:
            raise TrainingError(f"train.init_only names unknown parts {sorted(unknown)}; use {sorted(own)}")
        skip = set(own) - set(parts)  # config sections of the parts not loaded need not match
        stored = {k: v for k, v in stored.items() if k not in skip}
        mine = {k: v for k, v in mine.items() if k not in skip}
    if architecture(stored) != architecture(mine):
        raise TrainingError(f"train.init_from: {directory} holds a different architecture than model")
    state = load_file(str(directory / WEIGHTS_NAME))
    if parts:
        state = {k: v for k, v in state.items() if k.split(".", 1)[0] in parts}
    missing, unexpected = codec.load_state_dict(state, strict=False)
    # heads the decoder names new (a pitch head gained with decoder.source) start from scratch
    decoder = getattr(codec, "decoder", None)  # a pitch codec has a synthesiser, not a decoder module
    new = tuple(f"decoder.{p}" for p in getattr(decoder, "warm_start_new", ()))
    missing = [k for k in missing if not codec.is_optional_weight(k) and not k.startswith(new)
               and (not parts or k.split(".", 1)[0] in parts)]
    if missing or unexpected:
        raise TrainingError(f"train.init_from: {directory}: weights do not match (missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]})")
    say(f"warm start from {directory}" + (f" ({', '.join(parts)})" if parts else ""))
    return set(state)


def architecture(model_cfg: dict) -> str:
    """The architecture part of a model config (training-only knobs such as dropout ignored).

    A continuous codec's ``stage``, ``freeze`` and ``anchor`` are training-only too: a stage-2
    config warm-starts from its stage-1 export (the frozen ``anchor_*`` copies it adds are
    optional weights, filled by ``Codec.prepare_training``). An iSTFT decoder's ``phase`` only
    says how the head's outputs are read (the weights have the same shapes), so a decoder can be
    warm-started across a change of it: the head's phase outputs then learn their new meaning.
    Its ``source`` likewise re-reads the head (the phase half becomes the harmonic share); the
    pitch head it adds starts from scratch (``warm_start_new``), and so does the share head of
    ``aperiodic: phase``, under which the head keeps its meaning. ``pitch_forcing`` is a
    training-only switch (what drives the sources while training) and changes no weight; so is a
    pitch codec's ``render_in_training`` (whether a step also renders audio for waveform losses), and an
    envelope codec's ``loss_bands`` (how its loss weighs the bands) and ``pitch_input`` (its decoder
    reads the sent pitch too: :class:`hasrd.pitch.envelope.EnvelopeNet` loads narrower input
    weights with the new inputs' weights at zero, so the warm-started model starts as it was).
    """
    cfg = json.loads(json.dumps(model_cfg))
    cfg.get("quantizer", {}).pop("dropout", None)
    if isinstance(cfg.get("decoder"), dict):
        for key in ("phase", "source", "aperiodic", "pitch_forcing"):
            cfg["decoder"].pop(key, None)
    for key in ("stage", "freeze", "anchor", "render_in_training"):
        cfg.pop(key, None)
    for section in (cfg, cfg.get("base")):  # an envelope codec's, its own or as a pitch codec's base
        if isinstance(section, dict):
            section.pop("loss_bands", None)
            section.pop("pitch_input", None)  # the decoder's added pitch inputs start at zero weight
    for enc in ("encoder", "semantic_encoder", "acoustic_encoder"):
        if isinstance(cfg.get(enc), dict):
            cfg[enc].pop("pretrained", None)
            cfg[enc].pop("trainable", None)
    return json.dumps(cfg, sort_keys=True)
