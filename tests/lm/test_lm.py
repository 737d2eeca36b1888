"""The token LM: delay pattern, cached vs uncached generation, overfitting, task tokens, sampling
seeds and input validation. Tiny models, one thread, a few seconds in all."""
from __future__ import annotations

import pytest
import torch

from hasrd.lm import TokenLM, delay, step_positions, undelay, valid_mask
from tests.conftest import assert_learns

TINY = dict(n_codebooks=3, codebook_size=16, cond_dim=8, tasks=["se", "tse", "ss", "vc", "lass"],
            d_model=32, layers=2, heads=2, ffn=64, max_positions=256)


def tiny(**over) -> TokenLM:
    torch.manual_seed(0)
    return TokenLM({**TINY, **over})


def overfit(model: TokenLM, tasks: list[str], cond: torch.Tensor, targets: torch.Tensor, steps: int = 250,
            lr: float = 3e-3, **kw) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(tasks, cond, targets, **kw)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("K,F", [(1, 1), (1, 7), (2, 1), (3, 5), (4, 9), (8, 3)])
def test_delay_round_trip(K, F):
    codes = torch.randint(0, 50, (2, K, F))
    d = delay(codes, pad_id=50)
    assert d.shape == (2, K, F + K - 1)
    assert torch.equal(undelay(d), codes)
    mask = valid_mask(K, F)
    assert torch.equal(d != 50, mask[None].expand_as(d))  # pad exactly where the pattern says
    for k in range(K):
        assert torch.equal(d[:, k, k:k + F], codes[:, k])
    for t in range(F + K - 1):
        pos = step_positions(t, K, F)
        assert [k for k, _ in pos] == mask[:, t].nonzero().flatten().tolist()
        for k, f in pos:
            assert torch.equal(d[:, k, t], codes[:, k, f])


def test_cached_equals_uncached():
    model = tiny(ref_dim=6, text_dim=5).eval()
    cond, ref, text = torch.randn(2, 7, 8), torch.randn(2, 4, 6), torch.randn(2, 5)
    cond_mask = torch.ones(2, 7, dtype=torch.bool)
    cond_mask[1, 5:] = False
    kw = dict(ref=ref, text=text, cond_mask=cond_mask)
    a = model.generate(["se", "tse"], cond, 10, greedy=True, **kw)
    b = model.generate(["se", "tse"], cond, 10, greedy=True, use_cache=False, **kw)
    assert a.shape == (2, 3, 10) and torch.equal(a, b)
    s1 = model.generate(["se", "tse"], cond, 10, seed=7, **kw)
    s2 = model.generate(["se", "tse"], cond, 10, seed=7, use_cache=False, **kw)
    assert torch.equal(s1, s2)
    s3 = model.generate(["se", "tse"], cond, 10, seed=7, top_k=4, top_p=0.8, temperature=0.7, **kw)
    s4 = model.generate(["se", "tse"], cond, 10, seed=7, top_k=4, top_p=0.8, temperature=0.7, use_cache=False, **kw)
    assert torch.equal(s3, s4)
    # teacher forcing on the greedy output scores its own tokens highest: forward and generate agree
    logits = model(["se", "tse"], cond, a, **kw)["logits"]
    assert torch.equal(undelay(logits).argmax(-1), a)


def test_overfits_one_pair():
    model = tiny()
    cond, target = torch.randn(1, 6, 8), torch.randint(0, 16, (1, 3, 8))
    losses = overfit(model, ["vc"], cond, target)
    assert_learns(losses, factor=0.3)
    out = model.eval().generate(["vc"], cond, 8, greedy=True)
    assert (out == target).float().mean().item() >= 0.95, (out, target)


def test_task_token_selects_target():
    model = tiny()
    cond = torch.randn(1, 6, 8).expand(2, -1, -1)
    targets = torch.randint(0, 16, (2, 3, 8))
    while torch.equal(targets[0], targets[1]):
        targets = torch.randint(0, 16, (2, 3, 8))
    losses = overfit(model, ["se", "ss"], cond, targets, steps=300)
    assert_learns(losses, factor=0.3)
    model.eval()
    se = model.generate(["se"], cond[:1], 8, greedy=True)[0]
    ss = model.generate([model.task_id("ss")], cond[:1], 8, greedy=True)[0]
    assert (se == targets[0]).float().mean().item() >= 0.95
    assert (ss == targets[1]).float().mean().item() >= 0.95
    assert not torch.equal(se, ss)


def test_seeds():
    model = tiny().eval()
    cond = torch.randn(2, 5, 8)
    a = model.generate(["se", "se"], cond, 12, seed=1, temperature=1.0)
    assert torch.equal(a, model.generate(["se", "se"], cond, 12, seed=1, temperature=1.0))
    assert not torch.equal(a, model.generate(["se", "se"], cond, 12, seed=2, temperature=1.0))
    assert int(a.min()) >= 0 and int(a.max()) < 16


def test_validation():
    model = tiny()
    cond, tgt = torch.randn(2, 5, 8), torch.randint(0, 16, (2, 3, 4))
    bad = [
        lambda: model.task_id("tts"),
        lambda: model(["se", "nope"], cond, tgt),
        lambda: model(["se"], cond, tgt),  # one task for a batch of two
        lambda: model(["se", "se"], torch.randn(2, 5, 9), tgt),  # cond_dim
        lambda: model(["se", "se"], cond, torch.randint(0, 16, (2, 4, 4))),  # K
        lambda: model(["se", "se"], cond, torch.full((2, 3, 4), 16)),  # token out of range
        lambda: model(["se", "se"], cond, -tgt - 1),
        lambda: model(["se", "se"], cond, tgt, ref=torch.randn(2, 3, 4)),  # no ref input
        lambda: model(["se", "se"], cond, tgt, text=torch.randn(2, 4)),  # no text input
        lambda: model(["se", "se"], cond, tgt, cond_mask=torch.ones(2, 4, dtype=torch.bool)),
        lambda: model.generate(["se", "se"], torch.randn(2, 5), 4),
        lambda: model.generate(["se", "se"], cond, 300),  # beyond max_positions
        lambda: model.generate(["se", "se"], cond, 4, temperature=0.0),
    ]
    for fn in bad:
        with pytest.raises(ValueError) as e:
            fn()
        assert "\n" not in str(e.value)
    assert model.task_id("lass") == 4
