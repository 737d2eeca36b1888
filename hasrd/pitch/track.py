"""F0 and voicing at the codec's frames: probabilistic YIN with an HMM, in batched torch + numpy.

:func:`track` is the encoder-side tracker of the codec's pitch stream (project issue 45): per
frame of ``hop`` samples (frame ``f`` centred on sample ``f * hop + hop / 2``, the codec's frames)
it gives an F0 in Hz and a voicing probability in ``[0, 1]``. How it was chosen, with the numbers
of every candidate: docs/pitch.md, "The tracker".

The method is pYIN's (Mauch & Dixon, 2014) at the codec's frame rate:

1. the cumulative-mean-normalised difference function (YIN's ``d'``) of a window of
   ``window_periods`` periods of ``fmin`` around each frame centre, one FFT cross-correlation per
   frame, batched;
2. every local minimum (trough) of ``d'`` between the lags of ``fmax`` and ``fmin`` gets a
   probability: the YIN threshold is drawn from a Beta(2, 18) prior, and under each threshold the
   troughs below it get a Boltzmann prior on their rank (the first, shortest-lag one most
   likely); the troughs' probabilities add up to the frame's voiced probability ``p_v``;
3. a hidden Markov model over (voiced, unvoiced) x pitch bins (``resolution`` semitones): voiced
   observations are the troughs' probabilities in their bins, the unvoiced observation is
   ``(1 - p_v) * unvoiced_weight`` in every bin; the pitch moves between frames by a triangular
   kernel of ``max_step`` semitones, the voicing switches with ``switch_prob``. Unlike pYIN,
   which takes the Viterbi path, the forward-backward posterior is used: the voicing output is
   the posterior probability of the voiced states, the F0 the most probable voiced bin refined
   to the trough (parabolic interpolation) in it;
4. frames quieter than ``silence_db`` below the loudest of their clip, or below ``floor_db``
   dBFS, are unvoiced whatever their periodicity;
5. in unvoiced frames the F0 is interpolated (linearly in log F0) between the neighbouring
   voiced frames and held before the first and after the last, so the contour is always defined;
   a clip with no voiced frame gets the middle of the range (``sqrt(fmin * fmax)``) throughout.

No weights and no dependency beyond torch and numpy; runs on any device (the HMM on the CPU).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

#: the pitch range searched (Hz); the codec's pitch code covers a narrower 60-450 Hz
FMIN, FMAX = 50.0, 500.0


def normalised_difference(seg: torch.Tensor, window: int) -> torch.Tensor:
    """YIN's cumulative mean normalised difference of segments ``seg [..., L]`` for the lags
    ``0 .. L - window - 1``: ``d(tau) = sum_{j < window} (x_j - x_{j+tau})^2`` (by one FFT
    correlation and running sums), each lag divided by the mean of the lags up to it."""
    W, length = window, seg.shape[-1]
    n_lags = length - W
    # r[tau] for tau < n_lags only reads b[j + tau] with j + tau < length: no wrap-around at n >= length
    n = 1 << int(math.ceil(math.log2(length)))
    r = torch.fft.irfft(torch.fft.rfft(seg, n) * torch.fft.rfft(seg[..., :W], n).conj(), n)[..., :n_lags]
    sq = F.pad(seg ** 2, (1, 0)).cumsum(-1)
    taus = torch.arange(n_lags, device=seg.device)
    e0 = sq[..., W:W + 1]
    e_tau = sq[..., W + taus] - sq[..., taus]
    d = (e0 + e_tau - 2 * r).clamp_min(0.0)
    cum = d[..., 1:].cumsum(-1)
    cmnd = torch.ones_like(d)
    cmnd[..., 1:] = d[..., 1:] * taus[1:] / cum.clamp_min(1e-12)
    return cmnd


def _cmnd(xp: torch.Tensor, pad_l: int, c0: int, c1: int, hop: int, tau_max: int, window: int, offset: int):
    """YIN's cumulative mean normalised difference of the frames ``c0..c1-1`` of a clip padded
    with ``pad_l`` zeros on the left (``xp [B, T']``), each frame ``window`` samples integrated,
    its segment starting ``offset`` samples before the frame's centre:
    ``(cmnd [B, c1 - c0, tau_max + 2], level_db [B, c1 - c0])``."""
    W = window
    length = W + tau_max + 2
    centre = torch.arange(c0, c1, device=xp.device) * hop + hop // 2
    idx = (centre - offset + pad_l)[:, None] + torch.arange(length, device=xp.device)[None, :]
    seg = xp[:, idx]  # [B, F, length]
    seg = seg - seg[..., :W].mean(-1, keepdim=True)
    cmnd = normalised_difference(seg, W)
    level = 10 * torch.log10(seg[..., :W].pow(2).mean(-1) + 1e-12)
    return cmnd, level


def _beta_probs(n_thresholds: int, a: float, b: float) -> np.ndarray:
    """Probability of each of the thresholds ``(k + 1) / n`` under Beta(a, b) (mass of
    ``(k / n, (k + 1) / n]``), without scipy: the regularised incomplete beta function for
    integer a, b as a binomial sum."""
    edges = np.linspace(0.0, 1.0, n_thresholds + 1)
    a, b = int(a), int(b)
    n = a + b - 1
    cdf = np.zeros_like(edges)
    for j in range(a, n + 1):
        cdf += math.comb(n, j) * edges ** j * (1 - edges) ** (n - j)
    return np.diff(cdf)


def _trough_probs(cmnd: torch.Tensor, tau_min: int, tau_max: int, n_troughs: int = 8, n_thresholds: int = 100,
                  beta: tuple[int, int] = (2, 18), boltzmann: float = 2.0, no_trough_prob: float = 0.01):
    """pYIN's observation from ``cmnd [B, F, tau_max + 2]``: ``(prob [B, F, M], lag [B, F, M])``,
    the probabilities of the ``M = n_troughs`` deepest troughs between ``tau_min`` and
    ``tau_max`` (0 for a missing one) and their parabolically refined lags. (pYIN weighs every
    trough; past the few deepest, the Boltzmann prior on the rank leaves them next to nothing.)"""
    mid = cmnd[..., tau_min:tau_max + 1]
    left, right = cmnd[..., tau_min - 1:tau_max], cmnd[..., tau_min + 1:tau_max + 2]
    trough = (mid < left) & (mid <= right)
    inf = torch.full_like(mid, float("inf"))
    m = min(n_troughs, mid.shape[-1])
    depth, pos = torch.where(trough, mid, inf).topk(m, -1, largest=False)
    pos, order = pos.sort(-1)  # by lag, for the ranks
    valid = depth.gather(-1, order).isfinite()
    y0, y1, y2 = left.gather(-1, pos), mid.gather(-1, pos), right.gather(-1, pos)
    den = y0 - 2 * y1 + y2
    shift = torch.where(den.abs() > 1e-9, 0.5 * (y0 - y2) / den, torch.zeros_like(den)).clamp(-1, 1)
    lag = (pos + tau_min).to(cmnd.dtype) + shift
    value = (y1 - 0.25 * (y0 - y2) * shift).clamp_min(0.0)  # the parabola's minimum
    bp = torch.as_tensor(_beta_probs(n_thresholds, *beta), dtype=cmnd.dtype, device=cmnd.device)
    keep = int((bp.cumsum(0) < 1 - 1e-6).sum()) + 1  # the thresholds that carry mass
    thr = torch.arange(1, keep + 1, device=cmnd.device, dtype=cmnd.dtype) / n_thresholds
    bp = bp[:keep]
    below = valid[..., None] & (value[..., None] < thr)  # [B, F, M, K]
    belowf = below.to(cmnd.dtype)
    rank = belowf.cumsum(-2)  # 1 for the first trough under the threshold
    count = rank[..., -1:, :]
    lam = boltzmann
    pmf = (1 - math.exp(-lam)) * torch.exp(-lam * (rank - 1)) / (1 - torch.exp(-lam * count)).clamp_min(1e-12)
    prob = (pmf * belowf) @ bp  # [B, F, M]
    # thresholds with no trough under them: their mass, times no_trough_prob, to the deepest
    none_mass = (count[..., 0, :] == 0).to(cmnd.dtype) @ bp  # [B, F]
    deepest = torch.where(valid, value, torch.full_like(value, float("inf"))).argmin(-1, keepdim=True)
    extra = (no_trough_prob * none_mass * valid.any(-1).to(cmnd.dtype))[..., None]
    prob = prob.scatter_add(-1, deepest, extra)
    return prob, torch.where(valid, lag, torch.ones_like(lag) * tau_max)


def _transition(n_bins: int, width: int) -> np.ndarray:
    """Row-normalised triangular pitch transition (``width`` bins either side)."""
    d = np.abs(np.arange(n_bins)[:, None] - np.arange(n_bins)[None, :])
    t = np.clip(width + 1 - d, 0, None).astype(np.float64)
    return t / t.sum(1, keepdims=True)


def _forward_backward(obs_v: np.ndarray, obs_u: np.ndarray, trans: np.ndarray, switch: float):
    """Posterior of the voiced states ``[B, F, N]`` of the (voiced, unvoiced) x N-bin HMM, with
    voiced observations ``obs_v [B, F, N]`` and the unvoiced observation ``obs_u [B, F]`` in
    every bin (scaled forward-backward)."""
    B, Fr, N = obs_v.shape
    stay = 1.0 - switch
    alpha_v = np.empty_like(obs_v)
    alpha_u = np.empty((B, Fr, N))
    av = np.full((B, N), 0.5 / N) * obs_v[:, 0]
    au = np.full((B, N), 0.5 / N) * obs_u[:, 0, None]
    for t in range(Fr):
        if t:
            pv, pu = av @ trans, au @ trans
            av = (stay * pv + switch * pu) * obs_v[:, t]
            au = (switch * pv + stay * pu) * obs_u[:, t, None]
        s = av.sum(1, keepdims=True) + au.sum(1, keepdims=True) + 1e-300
        av, au = av / s, au / s
        alpha_v[:, t], alpha_u[:, t] = av, au
    post_v = np.empty_like(obs_v)
    bv = np.ones((B, N))
    bu = np.ones((B, N))
    for t in range(Fr - 1, -1, -1):
        if t < Fr - 1:
            ov, ou = bv * obs_v[:, t + 1], bu * obs_u[:, t + 1, None]
            # trans is symmetric: the backward step is the same product
            bv, bu = (stay * ov + switch * ou) @ trans, (switch * ov + stay * ou) @ trans
            s = bv.sum(1, keepdims=True) + bu.sum(1, keepdims=True) + 1e-300
            bv, bu = bv / s, bu / s
        gv, gu = alpha_v[:, t] * bv, alpha_u[:, t] * bu
        s = gv.sum(1, keepdims=True) + gu.sum(1, keepdims=True) + 1e-300
        post_v[:, t] = gv / s
    return post_v


def _fill_unvoiced(f0: np.ndarray, voiced: np.ndarray, default: float) -> np.ndarray:
    """F0 of unvoiced frames interpolated in log between voiced neighbours, held at the ends;
    ``default`` throughout a clip with no voiced frame."""
    out = f0.copy()
    for b in range(f0.shape[0]):
        v = voiced[b]
        if not v.any():
            out[b] = default
        elif not v.all():
            idx = np.flatnonzero(v)
            out[b] = np.exp(np.interp(np.arange(f0.shape[1]), idx, np.log(f0[b, idx])))
    return out


@torch.no_grad()
def track(audio: np.ndarray | torch.Tensor, sample_rate: int, hop: int = 320, *, fmin: float = FMIN,
          fmax: float = FMAX, window_periods: float = 2.0, resolution: float = 0.25, max_step: float = 2.5,
          switch_prob: float = 0.05, unvoiced_weight: float = 3e-4, silence_db: float = 50.0,
          floor_db: float = -75.0, chunk_frames: int = 256) -> tuple:
    """F0 (Hz) and voicing probability of ``audio [T]`` or ``[B, T]`` at ``sample_rate``, every
    ``hop`` samples: ``(f0 [..., F], voicing [..., F])``, ``F = ceil(T / hop)``, frame ``f``
    centred on sample ``f * hop + hop / 2``. Same type as the input: numpy arrays (float32) for a
    numpy input, tensors on the input's device for a tensor.

    ``voicing`` is the posterior probability that the frame is voiced (call it voiced above 0.5).
    ``f0`` is defined everywhere: in unvoiced frames it is interpolated between the voiced ones.
    The keyword arguments are the method's settings (module docstring); the defaults are the
    ones measured in docs/pitch.md.
    """
    is_tensor = isinstance(audio, torch.Tensor)
    x = audio if is_tensor else torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if x.dim() not in (1, 2):
        raise ValueError(f"audio must be [T] or [B, T], got shape {tuple(x.shape)}")
    single = x.dim() == 1
    x = x.reshape(1 if single else x.shape[0], -1).float()
    B, T = x.shape
    frames = -(-T // hop)
    if frames == 0:
        f0 = voicing = torch.zeros(B, 0)
    else:
        f0, voicing = _track(x, sample_rate, hop, frames, fmin, fmax, window_periods, resolution, max_step,
                             switch_prob, unvoiced_weight, silence_db, floor_db, chunk_frames)
    if single:
        f0, voicing = f0[0], voicing[0]
    if is_tensor:
        return f0.to(audio.device), voicing.to(audio.device)
    return f0.numpy(), voicing.numpy()


def _track(x, sample_rate, hop, frames, fmin, fmax, window_periods, resolution, max_step, switch_prob,
           unvoiced_weight, silence_db, floor_db, chunk_frames):
    B, T = x.shape
    tau_min = max(2, int(math.floor(sample_rate / fmax)))
    tau_max = int(math.ceil(sample_rate / fmin))
    window = max(tau_max, int(round(window_periods * tau_max)))
    length = window + tau_max + 2
    # d(tau) compares samples j and j + tau for j in [0, window): centre that span on the frame's
    # centre for a mid-range period (the geometric mean of the range), so that a gliding F0 is
    # measured where the frame is
    tau_mid = sample_rate / math.sqrt(fmin * fmax)
    offset = int(round((window + tau_mid) / 2))
    pad_l = max(0, offset - hop // 2)
    pad_r = max(0, (frames - 1) * hop + hop // 2 - offset + length - T)
    xp = F.pad(x, (pad_l, pad_r))
    n_per_semi = 1.0 / resolution
    n_bins = int(math.floor(12 * n_per_semi * math.log2(fmax / fmin))) + 1
    probs, bins, lags, levels = [], [], [], []
    for c0 in range(0, frames, chunk_frames):
        c1 = min(frames, c0 + chunk_frames)
        cm, lev = _cmnd(xp, pad_l, c0, c1, hop, tau_max, window, offset)
        prob, lag = _trough_probs(cm, tau_min, tau_max)
        b = torch.round(12 * n_per_semi * torch.log2(sample_rate / lag / fmin)).long().clamp(0, n_bins - 1)
        probs.append(prob.double().cpu())
        bins.append(b.cpu())
        lags.append(lag.double().cpu())
        levels.append(lev.double().cpu())
    prob, b, lag, level = torch.cat(probs, 1), torch.cat(bins, 1), torch.cat(lags, 1), torch.cat(levels, 1)
    loud = (level > level.amax(1, keepdim=True) - silence_db) & (level > floor_db)
    prob = prob * loud[..., None]
    obs_v = torch.zeros(B, frames, n_bins, dtype=torch.float64).scatter_add_(-1, b, prob).numpy()
    p_v = obs_v.sum(-1)
    # a quiet frame has no voiced observation: its unvoiced one is a constant (the forward pass
    # normalises every frame, so its value does not matter)
    obs_u = np.where(loud.numpy(), (1.0 - p_v).clip(0.0, 1.0) * unvoiced_weight, 1.0)
    trans = _transition(n_bins, max(1, int(round(max_step * n_per_semi))))
    post_v = _forward_backward(obs_v, obs_u, trans, switch_prob)
    voicing = post_v.sum(-1).clip(0.0, 1.0)
    best = torch.from_numpy(post_v.argmax(-1))  # [B, F]
    # the F0: the likeliest trough within a bin of the best bin, refined; else the bin's centre
    near = ((b - best[..., None]).abs() <= 1) & (prob > 0)  # [B, F, M]
    pick = torch.where(near, prob, torch.full_like(prob, -1.0)).argmax(-1, keepdim=True)
    has = near.any(-1)
    lag_best = lag.gather(-1, pick)[..., 0]
    freqs = fmin * 2.0 ** (torch.arange(n_bins, dtype=torch.float64) / (12 * n_per_semi))
    f0 = torch.where(has, sample_rate / lag_best, freqs[best]).numpy()
    f0 = _fill_unvoiced(f0, voicing > 0.5, math.sqrt(fmin * fmax))
    return torch.from_numpy(f0.astype(np.float32)), torch.from_numpy(voicing.astype(np.float32))
