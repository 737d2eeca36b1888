import numpy as np
import pytest
import torch

from hasrd.nn import FrameRateError, resample_frames
from hasrd.teachers import KMeansUnits, MFCCTeacher, SSLTeacher, build_teacher
from tests.conftest import TINY_HUBERT, speechlike


def test_resample_frames_asserts_on_mismatch():
    x = torch.randn(1, 50, 4)
    assert resample_frames(x, 50, 50, 50) is x
    with pytest.raises(FrameRateError):
        resample_frames(x, 50, 25, 30)
    with pytest.raises(FrameRateError):
        resample_frames(x, 50, 50, 48)  # would be silent truncation


def test_resample_frames_50_to_25_averages_pairs():
    x = torch.arange(8.0).view(1, 8, 1)
    y = resample_frames(x, 50, 25, 4)
    assert torch.allclose(y.view(-1), torch.tensor([0.5, 2.5, 4.5, 6.5]))
    units = torch.tensor([[3, 3, 1, 2, 5, 5, 7, 7]])
    u = resample_frames(units, 50, 25, 4, mode="nearest")
    assert u.shape == (1, 4) and u[0, 0] == 3 and u[0, 2] == 5 and u[0, 3] == 7


def test_resample_frames_upsamples_by_interpolation():
    x = torch.randn(2, 10, 3)
    y = resample_frames(x, 25, 50, 20)
    assert y.shape == (2, 20, 3)


def test_mfcc_teacher_frames_and_targets():
    t = MFCCTeacher()
    x = speechlike(1.0)
    f = t.features(x)
    assert f.shape == (1, 50, 39)
    assert torch.allclose(f.mean(1), torch.zeros(39), atol=1e-4)  # per-utterance CMVN
    tg = t.targets(x, 25, 25.0)
    assert tg["features"].shape == (1, 25, 39) and "units" not in tg
    with pytest.raises(FrameRateError):
        t.targets(x, 24, 50.0)


def test_kmeans_units_fit_save_load(tmp_path):
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0, 0], [20, 0, 0], [0, 20, 0], [0, 0, 20]], dtype=float)
    data = np.concatenate([c + rng.normal(size=(100, 3)) for c in centers]).astype(np.float32)
    km = KMeansUnits.fit(data, 4)
    labels = km(torch.from_numpy(data).unsqueeze(0))[0].numpy()
    for k in range(4):  # each true cluster maps to one unit
        assert len(set(labels[k * 100 : (k + 1) * 100])) == 1
    km.save(tmp_path / "km.safetensors")
    t = build_teacher({"type": "mfcc", "kmeans": str(tmp_path / "km.safetensors"), "n_mfcc": 1, "deltas": True})
    assert t.n_units == 4


@pytest.mark.parametrize("arch", ["hubert", "wavlm"])
def test_ssl_teacher_from_pretrained_and_layer_average(arch, tmp_path):
    from transformers import HubertConfig, HubertModel, WavLMConfig, WavLMModel

    cfg_cls, model_cls = (HubertConfig, HubertModel) if arch == "hubert" else (WavLMConfig, WavLMModel)
    torch.manual_seed(0)
    ref = model_cls(cfg_cls(**TINY_HUBERT)).eval()
    ref.save_pretrained(tmp_path)
    x = speechlike(0.4)
    one = SSLTeacher(arch, pretrained=str(tmp_path), layers=1)
    avg = SSLTeacher(arch, pretrained=str(tmp_path), layers=[1, 2])
    f1, fa = one.features(x), avg.features(x)
    assert f1.shape == (1, 20, 32) and one.frame_rate == 50
    with torch.no_grad():
        import torch.nn.functional as F

        hs = ref(F.pad(x[:, 0], (40, 40)), output_hidden_states=True).hidden_states
    assert torch.allclose(f1, hs[1], atol=1e-5)
    assert torch.allclose(fa, (hs[1] + hs[2]) / 2, atol=1e-5)
    assert one.targets(x, 10, 25.0)["features"].shape == (1, 10, 32)
    assert not any(p.requires_grad for p in one.parameters())
