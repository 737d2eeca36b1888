"""Neural baselines run through their own Python packages, from local weights only: EnCodec 24 kHz
(``encodec``) and the Descript Audio Codec (``dac``). Missing weights raise :class:`SystemUnavailable`."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hasrd.io.audio import resample

from .base import System, SystemUnavailable, fit_length, mono

ENCODEC_CHECKPOINT = "encodec_24khz-d7cc33bc.th"
ENCODEC_BANDWIDTHS = (1.5, 3.0, 6.0, 12.0, 24.0)


class EncodecSystem(System):
    """EnCodec 24 kHz (causal) at a target bandwidth; payload = bytes of ``encodec.compress``
    (its own container, no entropy-coding LM)."""

    kind = "encodec"

    def __init__(self, bps: float, weights: str | None = None):
        bw = bps / 1000.0
        if not any(abs(bw - b) < 1e-6 for b in ENCODEC_BANDWIDTHS):
            raise ValueError(f"encodec bitrate {bps:g} not one of {[int(b * 1000) for b in ENCODEC_BANDWIDTHS]}")
        self.name = f"encodec:{int(bps)}"
        self.family = "encodec"
        self.bitrate_nominal = float(bps)
        path = Path(weights) if weights else _torch_hub_file(ENCODEC_CHECKPOINT)
        if path is None or not path.is_file():
            raise SystemUnavailable(
                f"{self.name}: no local EnCodec weights ({'missing ' + str(path) if weights else 'none in the torch hub cache'}); "
                f"this machine cannot download them - pass encodec:{int(bps)}@/path/to/{ENCODEC_CHECKPOINT}"
            )
        import torch
        from encodec import EncodecModel

        model = EncodecModel.encodec_model_24khz(pretrained=False)
        model.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
        model.name = "encodec_24khz"  # pretrained=False names it 'unset'; these are the real weights
        model.set_target_bandwidth(bw)
        self.model = model.eval()

    def process(self, audio, sample_rate):
        import torch
        from encodec import compress

        audio = mono(audio)
        sr = self.model.sample_rate
        x = torch.from_numpy(resample(audio, sample_rate, sr)).float().view(1, -1)
        with torch.inference_mode():
            payload = len(compress(self.model, x, use_lm=False))
            y = self.model.decode(self.model.encode(x.unsqueeze(0)))[0, 0].numpy()
        return fit_length(resample(y, sr, sample_rate), audio.size), payload


def _torch_hub_file(name: str) -> Path | None:
    try:
        import torch

        p = Path(torch.hub.get_dir()) / "checkpoints" / name
        return p if p.is_file() else None
    except Exception:  # pragma: no cover
        return None


class DacSystem(System):
    """Descript Audio Codec from a local ``.pth``; payload = bit-packed codes
    (``frames * n_q * ceil(log2 K)`` bits, rounded up to bytes; DAC has no compact container)."""

    kind = "dac"

    def __init__(self, bps: float, weights: str | None = None):
        path = Path(weights) if weights else _dac_cache_file()
        label = f"dac:{int(bps)}"
        if path is None or not path.is_file():
            raise SystemUnavailable(
                f"{label}: no local DAC weights ({'missing ' + str(path) if weights else 'none in ~/.cache/descript/dac'}); "
                f"this machine cannot download them - pass dac:{int(bps)}@/path/to/weights.pth"
            )
        import warnings

        import dac

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = dac.DAC.load(str(path)).eval()
        fr = self.model.sample_rate / self.model.hop_length
        self.bits_per_code = (int(self.model.codebook_size) - 1).bit_length()
        per_cb = fr * math.log2(self.model.codebook_size)
        self.n_q = max(1, min(int(self.model.n_codebooks), int(bps // per_cb + 1e-9)))
        self.bitrate_nominal = self.n_q * per_cb
        self.name = f"dac:{int(bps)}"
        self.family = "dac"

    def process(self, audio, sample_rate):
        import torch

        audio = mono(audio)
        m = self.model
        x = resample(audio, sample_rate, m.sample_rate)
        wav = torch.from_numpy(np.ascontiguousarray(x)).float().view(1, 1, -1)
        with torch.inference_mode():
            wav = m.preprocess(wav, m.sample_rate)
            _, codes, *_ = m.encode(wav, n_quantizers=self.n_q)
            codes = codes[:, : self.n_q]
            z, _, _ = m.quantizer.from_codes(codes)
            y = m.decode(z)[0, 0].numpy()[: x.size]
        payload = (codes.shape[-1] * self.n_q * self.bits_per_code + 7) // 8
        return fit_length(resample(y, m.sample_rate, sample_rate), audio.size), int(payload)


def _dac_cache_file() -> Path | None:
    folder = Path.home() / ".cache" / "descript" / "dac"
    found = sorted(folder.glob("weights_*.pth")) if folder.is_dir() else []
    found.sort(key=lambda p: ("16khz" not in p.name, p.name))
    return found[0] if found else None
