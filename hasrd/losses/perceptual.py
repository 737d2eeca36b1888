"""Differentiable stand-ins for two of the evaluator's judges, as training losses.

``stoi``: the negative short-time objective intelligibility of ``torch_stoi`` (Pariente's
PyTorch port of Taal et al.'s STOI: 1/3-octave band envelopes of 384 ms segments at 10 kHz,
silent frames left out of the mean). ``pesq``: the symmetric + asymmetric disturbance of
``torch_pesq`` (a PyTorch port of ITU-T P.862's perceptual model without its time alignment
and MOS mapping; 0 for identical signals). Both compare the decoded crop with the input crop,
which the codec does not delay.

They optimise approximations of metrics the evaluator reports (``stoi``, ``pesq_wb``), so a
model trained with them must also be judged by what they do not see (DNSMOS, ASR WER, speaker
similarity) and on speech it was not trained on; docs/default_model.md says where they were used.
Both packages are imported only when a config names the term in ``loss_weights``.
"""
from __future__ import annotations

import torch
from torch import nn


def _require(module: str, package: str):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"loss_weights names a term that needs {package}: pip install '{package}' "
                          "(or the project's [train] extra)") from None


class StoiLoss(nn.Module):
    """Negative STOI of ``pred`` against ``target`` (``(B, 1, T)`` or ``(B, T)``), batch mean in [-1, 0].

    STOI correlates 30-frame (384 ms) segments of 256-sample frames (hop 128) at 10 kHz, and
    ``torch_stoi`` drops the last frame, so a signal needs 4096 samples at 10 kHz:
    :attr:`min_samples` at ``sample_rate``. Silent frames are masked, not cut, so this depends
    on the length alone.
    """

    def __init__(self, sample_rate: int):
        super().__init__()
        torch_stoi = _require("torch_stoi", "torch-stoi")
        self.loss = torch_stoi.NegSTOILoss(sample_rate, use_vad=True, extended=False)
        self.min_samples = (30 * 128 + 256 - 1) * sample_rate // 10000 + 1

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape[-1] < self.min_samples:
            raise ValueError(f"the STOI loss needs signals of {self.min_samples} samples at least, got {target.shape[-1]}")
        return self.loss(pred.float().flatten(1), target.float().flatten(1)).mean()


class PesqLoss(nn.Module):
    """P.862 disturbance of ``pred`` against ``target`` (0 when equal), batch mean."""

    def __init__(self, sample_rate: int):
        super().__init__()
        torch_pesq = _require("torch_pesq", "torch-pesq")
        self.loss = torch_pesq.PesqLoss(1.0, sample_rate=sample_rate)
        self.dither = 1e-5

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = pred.float().flatten(1), target.float().flatten(1)
        # the loudness model's power law has an infinite slope at zero power: a crop with digital
        # silence gives a finite loss with NaN gradients. The same fixed noise floor (-100 dBFS)
        # added to both signals keeps every band's power above zero.
        g = torch.Generator(device="cpu").manual_seed(0)
        floor = self.dither * torch.randn(target.shape[-1], generator=g).to(target.device)
        return self.loss(target + floor, pred + floor).mean()
