"""Independent float64 reference implementations, written from docs/algorithms.md with plain Python loops.

Nothing here calls easyr1.algorithms; the tests compare the vectorised code against these.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

EPS = 1e-6


def _groups(group_index, valid):
    members = defaultdict(list)
    for i, g in enumerate(group_index):
        if valid[i]:
            members[g].append(i)
    return members


def outcome_advantage(estimator, scores, group_index, valid, eps=EPS):
    """(B,) list of floats for grpo / dr_grpo / rloo."""
    scores = [float(x) for x in scores]
    valid = [bool(x) for x in valid]
    members = _groups(group_index, valid)
    out = [0.0] * len(scores)
    for idx in members.values():
        n = len(idx)
        if n < 2:
            continue
        vals = [scores[i] for i in idx]
        mean = math.fsum(vals) / n
        std = math.sqrt(math.fsum((x - mean) ** 2 for x in vals) / (n - 1))
        for i in idx:
            if estimator == "grpo":
                out[i] = (scores[i] - mean) / (std + eps)
            elif estimator == "dr_grpo":
                out[i] = scores[i] - mean
            elif estimator == "rloo":
                others = [scores[j] for j in idx if j != i]
                out[i] = scores[i] - math.fsum(others) / len(others)
            else:
                raise ValueError(estimator)
    return out


def _whiten(values, mask):
    picked = [values[i][t] for i in range(len(values)) for t in range(len(values[i])) if mask[i][t]]
    out = [[0.0] * len(row) for row in values]
    if not picked:
        return out
    mean = math.fsum(picked) / len(picked)
    var = math.fsum((x - mean) ** 2 for x in picked) / (len(picked) - 1) if len(picked) > 1 else 0.0
    for i in range(len(values)):
        for t in range(len(values[i])):
            if mask[i][t]:
                out[i][t] = (values[i][t] - mean) / math.sqrt(var + 1e-8)
    return out


def reinforce_plus_plus(scores, valid, mask, gamma, token_rewards=None):
    """(B,T) nested lists: sequence score on the last valid token, discounted return reset outside the mask."""
    B, T = len(mask), len(mask[0]) if mask else 0
    m = [[bool(mask[i][t]) and bool(valid[i]) for t in range(T)] for i in range(B)]
    returns = [[0.0] * T for _ in range(B)]
    for i in range(B):
        rewards = [0.0] * T
        valid_pos = [t for t in range(T) if m[i][t]]
        if valid_pos:
            rewards[valid_pos[-1]] += float(scores[i])
        if token_rewards is not None:
            for t in valid_pos:
                rewards[t] += float(token_rewards[i][t])
        running = 0.0
        for t in reversed(range(T)):
            running = rewards[t] + gamma * running if m[i][t] else 0.0
            returns[i][t] = running
    return _whiten(returns, m)


def reinforce_plus_plus_baseline(scores, group_index, valid, mask):
    B, T = len(mask), len(mask[0]) if mask else 0
    members = _groups(group_index, [bool(v) for v in valid])
    centered = [None] * B
    for idx in members.values():
        if len(idx) < 2:
            continue
        mean = math.fsum(float(scores[i]) for i in idx) / len(idx)
        for i in idx:
            centered[i] = float(scores[i]) - mean
    m = [[centered[i] is not None and bool(mask[i][t]) for t in range(T)] for i in range(B)]
    values = [[centered[i] if centered[i] is not None else 0.0] * T for i in range(B)]
    return _whiten(values, m)


def ppo_token_losses(old, new, adv, mask, lo, hi, dual):
    """Per-token PPO loss and per-token flags, from the formulas, with Python floats."""
    B, T = len(old), len(old[0])
    loss = [[0.0] * T for _ in range(B)]
    clip = [[False] * T for _ in range(B)]
    dual_flag = [[False] * T for _ in range(B)]
    for i in range(B):
        for t in range(T):
            if not mask[i][t]:
                continue
            a = float(adv[i][t])
            d = min(max(float(new[i][t]) - float(old[i][t]), -20.0), 20.0)
            r = math.exp(d)
            l1 = -a * r
            l2 = -a * min(max(r, 1 - lo), 1 + hi)
            lc = max(l1, l2)
            clip[i][t] = l2 > l1
            value = lc
            if dual is not None and a < 0:
                l3 = -a * dual
                value = min(lc, l3)
                dual_flag[i][t] = lc > l3
            loss[i][t] = value
    return loss, clip, dual_flag


def aggregate(loss, mask, mode, norm_length=None):
    B = len(loss)
    T = len(loss[0]) if B else 0
    rows = [[float(loss[i][t]) for t in range(T) if mask[i][t]] for i in range(B)]
    active = [r for r, i in zip(rows, range(B), strict=True) if any(mask[i])]
    if mode == "token-mean":
        n = sum(len(r) for r in rows)
        return math.fsum(x for r in rows for x in r) / n if n else 0.0
    if mode == "seq-mean-token-sum":
        return math.fsum(math.fsum(r) for r in active) / len(active) if active else 0.0
    if mode == "seq-mean-token-mean":
        return math.fsum(math.fsum(r) / (len(r) + 1e-8) for r in active) / len(active) if active else 0.0
    if mode == "seq-mean-token-sum-norm":
        return math.fsum(x for r in rows for x in r) / (norm_length or T)
    raise ValueError(mode)


def kl_value(x, y, kind):
    base = kind.rstrip("+")
    d = float(x) - float(y)
    if base in ("kl", "k1"):
        return d
    if base == "abs":
        return abs(d)
    if base in ("mse", "k2"):
        return 0.5 * d * d
    if base in ("low_var_kl", "k3"):
        k = min(max(-d, -20.0), 20.0)
        return min(max(math.exp(k) - k - 1, -10.0), 10.0)
    raise ValueError(kind)


def entropy(logits_row):
    z = [float(v) for v in logits_row]
    top = max(z)
    exps = [math.exp(v - top) for v in z]
    total = math.fsum(exps)
    probs = [e / total for e in exps]
    logz = top + math.log(total)
    return -math.fsum(p * (v - logz) for p, v in zip(probs, z, strict=True) if p > 0)


def to_lists(t: torch.Tensor):
    return t.detach().to(torch.float64).tolist()
