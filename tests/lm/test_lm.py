"""The token LM: delay pattern, cached vs uncached generation, overfitting, task tokens, sampling
seeds and input validation. Tiny models, one thread, a few seconds in all."""
from __future__ import annotations

import pytest
import torch

from hasrd.lm import LAYOUT, TokenLM, delay, delay_features, step_positions, undelay, valid_mask
from hasrd.lm.metrics import input_use
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
    cond, target = torch.randn(1, 8, 8), torch.randint(0, 16, (1, 3, 8))
    losses = overfit(model, ["vc"], cond, target)
    assert_learns(losses, factor=0.3)
    out = model.eval().generate(["vc"], cond, 8, greedy=True)
    assert (out == target).float().mean().item() >= 0.95, (out, target)


def test_task_token_selects_target():
    model = tiny()
    cond = torch.randn(1, 8, 8).expand(2, -1, -1)
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


def _sharpened(**over) -> TokenLM:
    """A tiny model whose backbone weights are scaled up: at the default initialisation the
    attention is nearly uniform and a position shift barely moves the logits."""
    model = tiny(ref_dim=6, text_dim=5, **over)
    with torch.no_grad():
        for p in model.backbone.parameters():
            if p.dim() == 2:
                p.mul_(3.0)
    return model.eval()


def _batch(items, ref_dim=6):
    """Items ``(task, cond [F, 8], codes [3, F], ref [R, 6] or None)`` -> padded batch arguments."""
    B, Fm = len(items), max(c.shape[0] for _, c, _, _ in items)
    Rm = max(1 if r is None else r.shape[0] for *_, r in items)
    cond, cmask = torch.zeros(B, Fm, 8), torch.zeros(B, Fm, dtype=torch.bool)
    targets, ref, rmask = torch.zeros(B, 3, Fm, dtype=torch.long), torch.zeros(B, Rm, ref_dim), torch.zeros(B, Rm, dtype=torch.bool)
    for b, (_, c, t, r) in enumerate(items):
        cond[b, : c.shape[0]], cmask[b, : c.shape[0]], targets[b, :, : t.shape[1]] = c, True, t
        if r is not None:
            ref[b, : r.shape[0]], rmask[b, : r.shape[0]] = r, True
    lengths = torch.tensor([c.shape[0] for _, c, _, _ in items])
    return [task for task, *_ in items], cond, targets, dict(cond_mask=cmask, ref=ref, ref_mask=rmask,
                                                             target_lengths=lengths)


def _items():
    g = torch.Generator().manual_seed(3)
    spec = [("se", 5, None), ("tse", 9, 4), ("vc", 7, 9)]
    return [(task, torch.randn(F, 8, generator=g), torch.randint(0, 16, (3, F), generator=g),
             None if R is None else torch.randn(R, 6, generator=g)) for task, F, R in spec]


def test_item_logits_same_alone_and_in_padded_batch():
    """Padding (of the condition, the ref, the targets) moves no item's positions: each item's logits
    in a mixed batch are its logits alone."""
    model = _sharpened()
    items = _items()
    text = torch.randn(3, 5)
    tasks, cond, targets, kw = _batch(items)
    together = model(tasks, cond, targets, text=text, **kw)["logits"]
    for b, item in enumerate(items):
        t1, c1, g1, k1 = _batch([item])
        k1["target_lengths"] = None
        alone = model(t1, c1, g1, text=text[b:b + 1], **k1)["logits"][0]
        T = alone.shape[1]
        assert torch.allclose(together[b, :, :T], alone, atol=1e-4), (b, (together[b, :, :T] - alone).abs().max())


def _generate_logits(model, *args, **kw):
    """``model.generate``'s codes and the logits of every step ``[steps, B, K * V]`` (read at the heads)."""
    seen = []
    handle = model.heads.register_forward_hook(lambda mod, inp, out: seen.append(out[:, -1].clone()))
    try:
        codes = model.generate(*args, **kw)
    finally:
        handle.remove()
    return codes, torch.stack(seen)


@pytest.mark.parametrize("use_cache", [True, False])
def test_generation_same_alone_and_in_batch(use_cache):
    """Cached and uncached generation: every step's logits of an item in a padded batch are its
    logits alone (the positions of the cached steps follow each item's own prefix)."""
    model = _sharpened()
    items = _items()
    text = torch.randn(3, 5)
    tasks, cond, _, kw = _batch(items)
    kw.pop("target_lengths")
    out, logits = _generate_logits(model, tasks, cond, 9, text=text, greedy=True, use_cache=use_cache, **kw)
    for b, item in enumerate(items):
        t1, c1, _, k1 = _batch([item])
        k1.pop("target_lengths")
        alone, alone_logits = _generate_logits(model, t1, c1, 9, text=text[b:b + 1], greedy=True, use_cache=use_cache, **k1)
        assert torch.equal(out[b], alone[0]), b
        assert torch.allclose(logits[:, b], alone_logits[:, 0], atol=1e-4), (b, (logits[:, b] - alone_logits[:, 0]).abs().max())


@pytest.mark.parametrize("K,F", [(1, 4), (3, 5), (4, 2)])
def test_delay_features_matches_delay(K, F):
    h = torch.randn(2, F, 6)
    out = delay_features(h, K)
    assert out.shape == (2, F + K - 1, K, 6)
    valid = valid_mask(K, F)  # [K, T]
    for k in range(K):
        for t in range(F + K - 1):
            want = h[:, t - k] if valid[k, t] else torch.zeros(2, 6)
            assert torch.equal(out[:, t, k], want), (k, t)


def test_condition_frame_reaches_its_step_and_not_before():
    """With no context in the condition encoder, condition frame f enters at delayed step f (where
    codebook 0 of frame f is emitted) and at no earlier step: the alignment the delay pattern needs."""
    model = tiny(cond_layers=0, cond_conv_layers=0).eval()
    cond, targets = torch.randn(1, 8, 8), torch.randint(0, 16, (1, 3, 8))
    base = model(["se"], cond, targets)["logits"]
    for f in (0, 3, 7):
        moved = cond.clone()
        moved[0, f] += 3.0
        logits = model(["se"], moved, targets)["logits"]
        assert torch.equal(logits[:, :, :f], base[:, :, :f]), f
        assert not torch.allclose(logits[:, 0, f], base[:, 0, f]), f


def test_aligned_model_learns_a_framewise_map_to_unseen_sequences():
    """Each target frame is a function of its own condition frame: trained on 32 random sequences,
    the model predicts unseen ones from their input (true condition), and not from another item's
    (shuffled): the gap the held-out validation reports."""
    g = torch.Generator().manual_seed(0)

    def data(n):
        codes = torch.randint(0, 16, (n, 12), generator=g)
        cond = torch.nn.functional.one_hot(codes, 16).float() + 0.1 * torch.randn(n, 12, 16, generator=g)
        return cond, codes[:, None].expand(-1, 2, -1).contiguous()

    model = tiny(n_codebooks=2, cond_dim=16, cond_layers=1, cond_conv_layers=1)
    cond, targets = data(32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(300):
        i = torch.randint(0, 32, (8,), generator=g)
        loss = model(["se"] * 8, cond[i], targets[i])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    cond, targets = data(8)
    batch = {"task": torch.zeros(8, dtype=torch.long), "cond": cond, "cond_mask": torch.ones(8, 12, dtype=torch.bool),
             "targets": targets, "target_lengths": torch.full((8,), 12)}
    r = input_use(model, batch, input_codes=targets)
    acc, shuf = r["correct"].sum() / r["count"].sum(), r["correct_shuf"].sum() / r["count"].sum()
    assert acc >= 0.9 and shuf <= 0.3, (float(acc), float(shuf))
    assert torch.equal(r["correct_copy"], r["count"])  # the input's own codes are the answer here
    assert float(r["loss_shuf"]) > float(r["loss"])


def test_token_dropout_only_in_training():
    cond, targets = torch.randn(2, 6, 8), torch.randint(0, 16, (2, 3, 6))
    plain, dropping = tiny().eval(), tiny(token_dropout=0.5).eval()
    assert torch.equal(plain(["se", "se"], cond, targets)["logits"], dropping(["se", "se"], cond, targets)["logits"])
    plain.train(), dropping.train()
    plain.drop.p = dropping.drop.p = 0.0
    torch.manual_seed(1)
    a = plain(["se", "se"], cond, targets)["logits"]
    torch.manual_seed(1)
    b = dropping(["se", "se"], cond, targets)["logits"]
    assert not torch.allclose(a, b)


def test_a_model_of_another_layout_is_refused():
    with pytest.raises(ValueError, match="layout") as e:
        tiny(layout=LAYOUT - 1)
    assert "\n" not in str(e.value)
