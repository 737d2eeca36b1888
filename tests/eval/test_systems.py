import shutil

import numpy as np
import pytest

from hasrd.eval.metrics import align, si_sdr
from hasrd.eval.systems import (
    Codec2System,
    DacSystem,
    EncodecSystem,
    HasrdSystem,
    OpusSystem,
    ReferenceSystem,
    SystemUnavailable,
    load_hasrd_model,
    parse_baseline,
    parse_bitrate,
)

have = lambda *tools: all(shutil.which(t) for t in tools)  # noqa: E731


def test_reference_is_the_identity(speech):
    s = ReferenceSystem(16000)
    out, payload = s.process(speech, 16000)
    np.testing.assert_array_equal(out, speech)
    assert payload == 2 * speech.size and s.bitrate_nominal == 256000


def test_parse_bitrate():
    assert parse_bitrate("6000") == 6000
    assert parse_bitrate("6k") == parse_bitrate("6kbps") == parse_bitrate("6 kbit/s") == 6000
    assert parse_bitrate("1.5kbps") == 1500
    with pytest.raises(ValueError):
        parse_bitrate("fast")


def test_malformed_specs_are_errors():
    for spec in ("codec2:999", "opus:3000", "mp3:128000", "codec2:", "encodec:5000"):
        with pytest.raises(ValueError):
            parse_baseline(spec)


@pytest.mark.skipif(not have("c2enc", "c2dec"), reason="codec2 tools not installed")
def test_codec2_runs_and_measures(speech):
    s = parse_baseline("codec2:3200")
    assert isinstance(s, Codec2System) and s.bitrate_nominal == 3200
    out, payload = s.process(speech, 16000)
    assert out.shape == speech.shape and np.abs(out).max() > 0.01
    seconds = speech.size / 16000
    assert abs(payload * 8 / seconds - 3200) < 200  # 8 bytes per 20 ms frame
    _, lag = align(speech, out)
    assert 0 < lag < 1600  # codec2 delays its output; the evaluator measures it


@pytest.mark.skipif(not have("opusenc", "opusdec"), reason="opus-tools not installed")
def test_opus_runs(speech):
    s = parse_baseline("opus:12k")
    assert isinstance(s, OpusSystem) and s.bitrate_nominal == 12000
    out, payload = s.process(speech, 16000)
    aligned, lag = align(speech, out)
    assert abs(lag) < 80 and si_sdr(speech, aligned) > 0 and payload > 0


def test_missing_tool_is_a_skip_not_a_crash(monkeypatch, tmp_path):
    with pytest.raises(SystemUnavailable, match="no-such-c2enc"):
        Codec2System("3200", enc_tool="no-such-c2enc")
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no codec tools at all
    for spec in ("codec2:1200", "opus:6000"):
        with pytest.raises(SystemUnavailable, match="not found on PATH"):
            parse_baseline(spec)


def test_neural_baselines_without_weights_skip(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(SystemUnavailable, match="encodec:1500@"):
        parse_baseline("encodec:1500")
    with pytest.raises(SystemUnavailable, match="missing"):
        parse_baseline(f"encodec:1500@{tmp_path}/nope.th")
    with pytest.raises(SystemUnavailable, match="dac:8000@"):
        parse_baseline("dac:8kbps")


def test_dac_from_local_weights(tmp_path, speech):
    dac = pytest.importorskip("dac")
    model = dac.DAC(encoder_dim=8, encoder_rates=[2, 4], latent_dim=16, decoder_dim=16, decoder_rates=[4, 2],
                    n_codebooks=4, codebook_size=64, codebook_dim=4, sample_rate=16000)
    path = tmp_path / "tiny_dac.pth"
    model.save(str(path))
    s = parse_baseline(f"dac:30k@{path}")  # 2000 frames/s x 6 bits: 12 kbit/s a codebook -> 2 fit
    assert isinstance(s, DacSystem) and s.n_q == 2 and s.bitrate_nominal == 24000
    out, payload = s.process(speech[:8000], 16000)
    assert out.shape == (8000,) and payload == 8000 // 8 * 2 * 6 // 8


def test_encodec_from_local_weights(tmp_path, speech):
    torch = pytest.importorskip("torch")
    encodec = pytest.importorskip("encodec")
    path = tmp_path / "encodec_random.th"
    torch.save(encodec.EncodecModel.encodec_model_24khz(pretrained=False).state_dict(), path)
    s = parse_baseline(f"encodec:1500@{path}")
    assert isinstance(s, EncodecSystem) and s.bitrate_nominal == 1500
    out, payload = s.process(speech[:3200], 16000)  # 0.2 s
    assert out.shape == (3200,) and 0 < payload < 200


def test_hasrd_system_all_n_q_share_one_encode(tiny_model_dir, speech):
    m = load_hasrd_model(str(tiny_model_dir))
    rates = []
    for n in (1, 2, 4):
        s = HasrdSystem(m, n)
        out, payload = s.process(speech, 16000)
        assert out.shape == speech.shape and np.isfinite(out).all()
        assert s.bitrate_nominal == m.codec.bitrate(n)
        rates.append(payload)
    assert rates[0] < rates[1] < rates[2]  # token files grow with n_q
    codes, _ = m.codes(speech, 16000)
    assert codes.shape[0] == m.codec.num_codebooks
    with pytest.raises(ValueError):
        HasrdSystem(m, m.codec.num_codebooks + 1)


def test_unquantised_bound_is_the_decoder_on_the_encoder_output(tiny_model_dir, speech):
    import torch

    from hasrd.eval.systems import UnquantisedSystem, model_systems

    m = load_hasrd_model(str(tiny_model_dir))
    bound = UnquantisedSystem(m)
    out, payload = bound.process(speech, 16000)
    assert out.shape == speech.shape and np.isfinite(out).all()
    codec = m.codec
    with torch.inference_mode():
        wav = torch.from_numpy(speech.astype(np.float32)).view(1, 1, -1)
        z = codec.encoder(codec.pad_to_hop(wav))
        want = codec.decoder(z)[0, 0, : speech.size].numpy()
        quantised = codec.decode(codec.encode(wav))[0, 0, : speech.size].numpy()
    np.testing.assert_allclose(out, want, atol=1e-5)
    assert not np.allclose(out, quantised, atol=1e-3)  # it skips the codebooks
    assert bound.bitrate_nominal == z.shape[1] * codec.frame_rate * 16 and payload == 2 * z.numel()
    rows, skipped = model_systems(m, [1, 2], bound=True)
    assert [r.name for r in rows][-1] == "hasrd:tiny@unquantised" and not skipped
    assert all(r.kind != "hasrd-bound" for r in model_systems(m, [1, 2])[0])
