"""The 'stronger local weights' paths of the judges, with tiny random transformers models."""
import json

import numpy as np
import pytest

from hasrd.eval import judges


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    tr = pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("hf")
    small = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                 conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=8,
                 num_conv_pos_embedding_groups=2)
    fe = tr.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True)
    asr = d / "asr"
    asr.mkdir()
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz'")}}
    (asr / "vocab.json").write_text(json.dumps(vocab))
    tok = tr.Wav2Vec2CTCTokenizer(str(asr / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|")
    tr.Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok).save_pretrained(asr)
    tr.Wav2Vec2ForCTC(tr.Wav2Vec2Config(vocab_size=len(vocab), pad_token_id=0, **small)).save_pretrained(asr)
    spk = d / "spk"
    fe.save_pretrained(spk)
    tr.WavLMForXVector(tr.WavLMConfig(tdnn_dim=(8, 8), tdnn_kernel=(3, 1), tdnn_dilation=(1, 1), xvector_output_dim=8,
                                      num_buckets=16, max_bucket_distance=32, **small)).save_pretrained(spk)
    return d


def test_local_transformers_asr_and_speaker(tiny_hf, speech):
    asr = judges.make_asr(str(tiny_hf / "asr"))
    assert asr.name == "hf:asr" and isinstance(asr.transcribe(speech), str)
    spk = judges.make_speaker(str(tiny_hf / "spk"))
    a, b = spk.embed(speech), spk.embed(speech[::-1].copy())
    assert a.shape == (8,) and judges.cosine(a, a) == pytest.approx(1.0)
    assert -1.0 <= judges.cosine(a, b) <= 1.0


def test_judge_folders_must_exist(tmp_path):
    with pytest.raises(judges.JudgeUnavailable, match="local weights only"):
        judges.make_asr(str(tmp_path / "whisper-small"))
    with pytest.raises(judges.JudgeUnavailable, match="local weights only"):
        judges.make_speaker(str(tmp_path / "wavlm"))
    with pytest.raises(judges.JudgeUnavailable):
        judges.load_hook("no_such_module_xyz:score")
    assert judges.make_asr("none") is None and judges.make_speaker(None) is None


def test_default_judges_offline(speech):
    """The wheel-shipped judges load without a network and give sane values on real speech."""
    pytest.importorskip("speechmos")
    pytest.importorskip("pocketsphinx")
    mos = judges.make_mos("dnsmos").score(speech)
    assert 1.0 < mos["dnsmos_ovrl"] < 5.0 and 1.0 < mos["dnsmos_p808"] < 5.0
    asr = judges.make_asr("pocketsphinx")
    first = asr.transcribe(speech)
    assert first.split()[-2:] == ["of", "clubs"]
    asr.transcribe(np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 0.3)
    assert asr.transcribe(speech) == first  # no state carried over from the previous utterance
    assert np.isnan(judges.make_mos("dnsmos").score(np.zeros(16000, np.float32))["dnsmos_ovrl"])
