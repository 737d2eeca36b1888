import math

import pytest
import torch

from hasrd.quantize import HierarchicalQuantizer, ResidualQuantizer, codebook_metrics, sample_n_q


def rq(**kw):
    torch.manual_seed(0)
    return ResidualQuantizer(8, 3, 16, kmeans_init=False, threshold_ema_dead_code=0, **kw)


def test_straight_through_gradient_is_identity():
    q = rq()
    x = torch.randn(2, 8, 10, requires_grad=True)
    g = torch.randn(2, 8, 10)
    out = q(x)
    (out.x * g).sum().backward()
    assert torch.allclose(x.grad, g, atol=1e-6)


def test_gradient_reaches_input_through_masked_items():
    q = rq()
    x = torch.randn(2, 8, 10, requires_grad=True)
    out = q(x, n_q=torch.tensor([1, 3]))
    out.x.sum().backward()
    assert torch.all(x.grad == 1)


def test_per_item_mask_equals_prefix_decode():
    q = rq().eval()
    x = torch.randn(3, 8, 10)
    n = torch.tensor([1, 2, 3])
    out = q(x, n_q=n)
    for i in range(3):
        expect = q.decode(out.codes[i : i + 1, : n[i]])
        assert torch.allclose(out.x[i : i + 1], expect, atol=1e-6)


def test_more_codebooks_reduce_error():
    q = rq().train()
    x = torch.randn(4, 8, 200)
    for _ in range(20):  # let the EMA codebooks fit
        q(x)
    q.eval()
    errs = [float(((q.decode(q.encode(x, n)) - x) ** 2).mean()) for n in (1, 2, 3)]
    assert errs[0] > errs[1] > errs[2]


def test_sample_n_q_never_drops_the_first_codebook():
    n = sample_n_q(10000, 8, dropout=1.0, generator=torch.Generator().manual_seed(0))
    assert n.min() == 1 and n.max() == 8
    assert set(n.tolist()) == set(range(1, 9))
    assert torch.all(sample_n_q(100, 8, dropout=0.0) == 8)


def test_hierarchical_prefix_semantics():
    torch.manual_seed(0)
    hq = HierarchicalQuantizer(8, 8, 1, 3, 16, residual=True, kmeans_init=False, threshold_ema_dead_code=0).eval()
    x = torch.randn(2, 8, 12)
    codes = hq.encode(x, n_q=4)
    assert codes.shape == (2, 4, 12)
    assert torch.equal(hq.encode(x, n_q=2), codes[:, :2])
    sem, ac = hq.decode(codes[:, :1])
    assert ac is None  # semantic codebook alone
    sem_out, ac_out = hq(x, n_q=torch.tensor([1, 1]))
    assert torch.allclose(ac_out.x, torch.zeros_like(ac_out.x))  # acoustic part masked out
    assert torch.allclose(sem_out.x, sem, atol=1e-6)


def test_uninitialised_kmeans_codebook_refuses_to_encode():
    q = ResidualQuantizer(8, 2, 16, kmeans_init=True).eval()
    with pytest.raises(RuntimeError, match="not initialised"):
        q.encode(torch.randn(1, 8, 5), 2)
    q.train()
    q(torch.randn(2, 8, 20))  # first training batch runs k-means
    q.eval()
    assert q.encode(torch.randn(1, 8, 5), 2).shape == (1, 2, 5)


def test_codebook_metrics_known_values():
    K = 16
    uniform = codebook_metrics(torch.arange(K).repeat(4), K, "c")
    assert math.isclose(float(uniform["c/perplexity"]), 1.0, rel_tol=1e-5)
    assert math.isclose(float(uniform["c/usage"]), 1.0)
    dead = codebook_metrics(torch.zeros(64, dtype=torch.long), K, "c")
    assert math.isclose(float(dead["c/perplexity"]), 1 / K, rel_tol=1e-5)
    assert math.isclose(float(dead["c/usage"]), 1 / K)


def test_factorised_codes_decode_to_what_forward_produced():
    """codebook_dim != dim (project in/out): decode(encode(x)) equals the eval forward's output."""
    from hasrd.quantize.rvq import ResidualQuantizer

    torch.manual_seed(0)
    q = ResidualQuantizer(16, 3, codebook_size=32, codebook_dim=4, kmeans_init=True)
    x = torch.randn(2, 16, 40)
    q.train()
    q(x)  # k-means initialisation
    q.eval()
    with torch.no_grad():
        out = q(x)
        codes = q.encode(x, 3)
        assert torch.equal(codes, out.codes)
        torch.testing.assert_close(q.decode(codes), out.x, atol=1e-5, rtol=1e-5)
