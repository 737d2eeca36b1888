"""Causal HASRD (model.causal) and the streaming API: streamed output == offline output."""
from __future__ import annotations

import math

import pytest
import torch

from hasrd.codecs import build_codec, load_codec
from hasrd.config import load_config
from hasrd.streaming import StreamingError
from tests.conftest import ROOT, TINY_HUBERT, speechlike, tiny_codec, tiny_config

CAUSAL_TINY = ROOT / "codec_configs" / "debug" / "hasrd_tiny_causal.yaml"


def causal_codec(seed: int = 0):
    torch.manual_seed(seed)
    return build_codec(load_config(CAUSAL_TINY)["model"]).eval()


@pytest.fixture(scope="module")
def codec():
    return causal_codec()


def random_splits(total: int, high: int, gen: torch.Generator) -> list[int]:
    """Random piece lengths in 0..high (zeros included) that add up to ``total``."""
    sizes, left = [], total
    while left > 0:
        n = min(int(torch.randint(0, high + 1, (1,), generator=gen)), left)
        sizes.append(n)
        left -= n
    return sizes


def stream_encode(codec, x, sizes, n_q=None):
    enc = codec.stream_encoder(n_q)
    pieces, pos = [], 0
    for n in sizes:
        c = enc.push(x[..., pos:pos + n])
        assert c.dtype == torch.long and c.shape[:2] == (x.shape[0], enc.n_q)
        # codes come out exactly when their frame is complete, never earlier or later
        assert enc.frames_out == (pos + n) // codec.hop_length
        pieces.append(c)
        pos += n
    pieces.append(enc.flush())
    return torch.cat(pieces, dim=-1)


def stream_decode(codec, codes, sizes):
    dec = codec.stream_decoder()
    pieces, pos = [], 0
    for n in sizes:
        y = dec.push(codes[..., pos:pos + n])
        assert y.shape == (codes.shape[0], 1, n * codec.hop_length)
        pieces.append(y)
        pos += n
    pieces.append(dec.flush())
    return torch.cat(pieces, dim=-1)


# ---- the causal architecture -----------------------------------------------------------------
def test_causal_config_is_the_twin_of_the_cpu_small_config():
    small = load_config(ROOT / "codec_configs" / "hasrd_cpu_small.yaml")
    causal = load_config(ROOT / "codec_configs" / "hasrd_cpu_causal.yaml")
    assert causal["model"].pop("causal") is True
    assert causal == small
    tiny = load_config(CAUSAL_TINY)
    assert tiny["model"].pop("causal") is True and tiny == tiny_config("hasrd")


def test_output_depends_only_on_the_past(codec):
    x = speechlike(0.6)
    hop = codec.hop_length
    y = codec.decode(codec.encode(x))
    for t in (5 * hop, 12 * hop + 137):  # on a frame boundary and inside a frame
        x2 = x.clone()
        x2[..., t:] = 0.3 * torch.randn(x2[..., t:].shape)
        codes, codes2 = codec.encode(x), codec.encode(x2)
        frame = t // hop
        assert torch.equal(codes2[..., :frame], codes[..., :frame])
        assert not torch.equal(codes2[..., frame:], codes[..., frame:])
        y2 = codec.decode(codes2)
        assert torch.equal(y2[..., : frame * hop], y[..., : frame * hop])
        assert not torch.allclose(y2[..., frame * hop:], y[..., frame * hop:])


def test_offline_lengths_match_the_non_causal_codec(codec):
    ref = tiny_codec("hasrd")
    x = speechlike(0.37)
    for n in (1, codec.num_codebooks):
        assert codec.encode(x, n).shape == ref.encode(x, n).shape
    assert codec.decode(codec.encode(x)).shape == ref.decode(ref.encode(x)).shape


def test_causal_codec_trains_and_its_eval_forward_matches_encode_decode():
    c = causal_codec().train()
    x = speechlike(0.3).repeat(2, 1, 1)
    out = c(x)
    assert out.audio.shape == x.shape
    (out.audio.abs().mean() + out.losses["vq"]).backward()
    assert c.encoder.net.block[0].conv.weight_v.grad is not None
    assert c.decoder.net.model[0].conv.weight_v.grad is not None
    c.eval()
    for n in (1, c.num_codebooks):
        y = c.decode(c.encode(x, n))[..., : x.shape[-1]]
        torch.testing.assert_close(c(x, n).audio, y, atol=1e-5, rtol=0)


def test_latency_is_reported_from_the_model(codec):
    assert codec.causal and codec.lookahead_samples == 0
    assert codec.algorithmic_latency() == pytest.approx(codec.hop_length / codec.sample_rate)
    offline = tiny_codec("hasrd")
    assert not offline.causal and offline.lookahead_samples is None
    assert math.isinf(offline.algorithmic_latency())


# ---- streaming == offline ----------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_stream_encoder_equals_encode_on_growing_prefixes(codec, seed):
    gen = torch.Generator().manual_seed(seed)
    x = speechlike(0.5, seed=seed)
    hop = codec.hop_length
    for length in (1, hop - 1, hop, 3 * hop + 71, x.shape[-1]):
        prefix = x[..., :length]
        for n_q in (1, codec.num_codebooks):
            streamed = stream_encode(codec, prefix, random_splits(length, 2 * hop + 50, gen), n_q)
            assert torch.equal(streamed, codec.encode(prefix, n_q))


@pytest.mark.parametrize("seed", [0, 1])
def test_stream_decoder_equals_decode_on_growing_prefixes(codec, seed):
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, min(codec.codebook_sizes), (1, codec.num_codebooks, 27), generator=gen)
    for frames in (1, 2, 9, 27):
        prefix = codes[..., :frames]
        for n_q in (1, codec.num_codebooks):
            streamed = stream_decode(codec, prefix[:, :n_q], random_splits(frames, 4, gen))
            torch.testing.assert_close(streamed, codec.decode(prefix[:, :n_q]), atol=1e-5, rtol=0)


def test_end_to_end_stream_with_a_batch(codec):
    gen = torch.Generator().manual_seed(3)
    x = torch.cat([speechlike(0.45, seed=1), speechlike(0.45, seed=2)], dim=0)  # [2, 1, T]
    enc, dec = codec.stream_encoder(), codec.stream_decoder()
    audio, pos = [], 0
    for n in random_splits(x.shape[-1], 900, gen):
        audio.append(dec.push(enc.push(x[..., pos:pos + n])))
        pos += n
    audio.append(dec.push(enc.flush()))
    audio.append(dec.flush())
    streamed = torch.cat(audio, dim=-1)
    torch.testing.assert_close(streamed, codec.decode(codec.encode(x)), atol=1e-5, rtol=0)
    # each item of the batch streams as it would alone
    torch.testing.assert_close(streamed[1:], codec.decode(codec.encode(x[1:])), atol=1e-5, rtol=0)


def test_state_does_not_grow_with_the_prefix(codec):
    """Per-layer state: what a stream keeps after 1 s and after 3 s of input is the same size."""
    def state_size(state):
        if state is None:
            return 0
        if torch.is_tensor(state):
            return state.numel()
        return sum(state_size(s) for s in state)

    enc, dec = codec.stream_encoder(), codec.stream_decoder()
    hop, sizes = codec.hop_length, []
    x = speechlike(3.0)
    for second in range(3):
        for i in range(0, 16000, 4 * hop):
            dec.push(enc.push(x[..., second * 16000 + i: second * 16000 + i + 4 * hop]))
        sizes.append((state_size(enc._state), state_size(dec._state)))
    assert sizes[0] == sizes[1] == sizes[2]
    assert sizes[0][0] > 0 and sizes[0][1] > 0


def test_saved_causal_model_streams_after_reload(codec, tmp_path):
    codec.save_pretrained(tmp_path / "m")
    loaded = load_codec(tmp_path / "m")
    assert loaded.causal
    x = speechlike(0.3)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(stream_encode(loaded, x, random_splits(x.shape[-1], 500, gen)), codec.encode(x))


# ---- misuse ------------------------------------------------------------------------------------
def test_non_causal_codecs_refuse_to_stream():
    for name in ("hasrd", "hcodec"):
        c = tiny_codec(name)
        with pytest.raises(StreamingError, match="not causal"):
            c.stream_encoder()
        with pytest.raises(StreamingError, match="not causal"):
            c.stream_decoder()


def test_causal_needs_a_conv_encoder_and_a_hasrd_codec():
    cfg = load_config(CAUSAL_TINY)["model"]
    cfg["encoder"] = {"type": "ssl", "arch": "hubert", "config": TINY_HUBERT, "trainable": "frozen"}
    with pytest.raises(ValueError, match="conv encoder"):
        build_codec(cfg)
    hc = tiny_config("hcodec")["model"]
    hc["causal"] = True
    with pytest.raises(ValueError, match="no causal variant"):
        build_codec(hc)


def test_stream_misuse_is_refused(codec):
    enc = codec.stream_encoder(2)
    enc.push(torch.zeros(1, 1, 100))
    with pytest.raises(StreamingError, match="batch"):
        enc.push(torch.zeros(2, 1, 100))
    with pytest.raises(ValueError, match=r"\[B, 1, n\]"):
        enc.push(torch.zeros(100))
    enc.flush()
    with pytest.raises(StreamingError, match="flushed"):
        enc.push(torch.zeros(1, 1, 100))
    with pytest.raises(ValueError, match="n_q"):
        codec.stream_encoder(codec.num_codebooks + 1)
    dec = codec.stream_decoder()
    with pytest.raises(ValueError, match="n_q"):
        dec.push(torch.zeros(1, codec.num_codebooks + 1, 2, dtype=torch.long))
    training = causal_codec().train()
    with pytest.raises(StreamingError, match="eval"):
        training.stream_encoder()


def test_a_codec_prepared_for_inference_still_streams():
    """prepare_for_inference rewrites the decoder (folded weights, InferenceSnake, a traced copy
    for offline decode); the streaming decoder steps the rewritten layers and matches."""
    codec = causal_codec(5)
    gen = torch.Generator().manual_seed(5)
    codes = torch.randint(0, min(codec.codebook_sizes), (1, codec.num_codebooks, 12), generator=gen)
    offline = codec.decode(codes)
    codec.prepare_for_inference()
    torch.testing.assert_close(codec.decode(codes), offline, atol=1e-5, rtol=0)
    torch.testing.assert_close(stream_decode(codec, codes, random_splits(12, 3, gen)), offline, atol=1e-5, rtol=0)
