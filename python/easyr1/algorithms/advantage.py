"""Outcome advantages for the GRPO family, with a registry by name (config key ``algorithm.adv_estimator``).

Shapes: ``B`` responses, ``T`` response tokens.

* Outcome estimators (``grpo``, ``dr_grpo``, ``rloo``) return one advantage per response, shape (B,). Spread it over
  the valid tokens with :func:`broadcast_to_tokens` (``A_i · m_it``).
* Token-level estimators (``reinforce_plus_plus``, ``reinforce_plus_plus_baseline``) need ``response_mask`` (B,T)
  and return (B,T), already zero on padding. Their sequence reward sits on the **last valid token only** (see
  :func:`place_sequence_reward`), never on padding.

Validity: ``valid`` (B,) marks samples whose score is real (editor, judge and parser all succeeded). Group
statistics use valid samples only; invalid samples get advantage 0 and their scores are never read (NaN is fine).
For the group-relative estimators, a group with fewer than 2 valid samples gets advantage 0 for every sample. Those
samples must also be left out of the loss (KL and entropy terms included) — :func:`effective_sample_mask` returns the
(B,) mask of samples that take part; AND it into the token mask the actor uses.

Deliberate difference from verl: verl gives a lone response (group of size 1) mean 0 and std 1, i.e. ``A = s``. A
single response carries no group-relative signal, so here it contributes nothing (advantage 0, excluded).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import torch

from easyr1.core.registries import ESTIMATORS, EstimatorFacts

from .groups import group_stats
from .masking import as_bool_mask, masked_whiten

GRPO_EPS = 1e-6
"""Default ε added to the group std by ``grpo`` (config ``algorithm.norm_eps``)."""

KNOWN_OPTS = frozenset({"eps", "gamma", "response_mask", "token_rewards"})


@dataclass
class AdvantageInputs:
    """What an estimator receives (all float tensors are float64; invalid scores are already replaced by 0)."""

    scores: torch.Tensor
    """(B,) sequence scores, plus ``Σ_t token_rewards`` for outcome estimators when token rewards were given."""
    group_index: torch.Tensor | Sequence[Hashable] | None
    """(B,) group label per sample (ints, strings, uids)."""
    valid: torch.Tensor
    """(B,) bool validity."""
    response_mask: torch.Tensor | None
    """(B,T) bool response mask, or None."""
    token_rewards: torch.Tensor | None
    """(B,T) extra per-token rewards (e.g. the KL reward penalty), zero on padding, or None."""
    eps: float
    """ε of the ``grpo`` std normalisation."""
    gamma: float
    """Discount of the token-level return."""


@dataclass(frozen=True)
class AdvantageEstimator:
    """A registered estimator: the function and how its output and validity are shaped."""

    name: str
    fn: Callable[[AdvantageInputs], torch.Tensor]
    token_level: bool
    """Returns (B,T) and needs ``response_mask``; otherwise returns (B,)."""
    min_valid_per_group: int
    """Groups with fewer valid samples contribute nothing (1 means groups are not used)."""


class _EstimatorTable(Mapping[str, AdvantageEstimator]):
    """Read-only view of :data:`easyr1.core.registries.ESTIMATORS` with the functions loaded."""

    def __getitem__(self, name: str) -> AdvantageEstimator:
        if name not in ESTIMATORS:
            raise KeyError(name)
        return get_advantage_estimator(name)

    def __iter__(self) -> Iterator[str]:
        return iter(ESTIMATORS)

    def __len__(self) -> int:
        return len(ESTIMATORS)


ADVANTAGE_ESTIMATORS: Mapping[str, AdvantageEstimator] = _EstimatorTable()
"""Registry view: estimator name → :class:`AdvantageEstimator`. The names and their facts are declared once, in
:data:`easyr1.core.registries.ESTIMATORS` (which the config validates against without importing torch)."""


def register_advantage_estimator(
    name: str, *, token_level: bool = False, min_valid_per_group: int = 2
) -> Callable[[Callable[[AdvantageInputs], torch.Tensor]], Callable[[AdvantageInputs], torch.Tensor]]:
    """Decorator registering ``fn(inputs: AdvantageInputs) -> Tensor`` under ``name`` (plugins and tests; the
    built-in estimators are declared in :mod:`easyr1.core.registries`)."""

    def decorator(fn: Callable[[AdvantageInputs], torch.Tensor]) -> Callable[[AdvantageInputs], torch.Tensor]:
        ESTIMATORS.register(name, EstimatorFacts(token_level, min_valid_per_group), fn)
        return fn

    return decorator


def get_advantage_estimator(name: str) -> AdvantageEstimator:
    """Look up a registered estimator, naming the known ones when ``name`` is not."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {name!r}; known: {', '.join(ESTIMATORS)}")
    facts = ESTIMATORS.facts(name)
    return AdvantageEstimator(name, ESTIMATORS.load(name), facts.token_level, facts.min_valid_per_group)


# --------------------------------------------------------------------------------------------------- helpers


def place_sequence_reward(scores: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Put each sequence score (B,) on the last valid token of its response; returns (B,T), zero elsewhere.

    A response with no valid token (empty) receives nothing.
    """
    m = as_bool_mask(response_mask)
    if m.dim() != 2 or scores.shape != m.shape[:1]:
        raise ValueError(f"scores {tuple(scores.shape)} and response_mask {tuple(m.shape)} must be (B,) and (B,T)")
    positions = torch.arange(m.shape[1], device=m.device).expand_as(m)
    last = torch.where(m, positions, torch.full_like(positions, -1)).amax(dim=1) if m.shape[1] else None
    out = torch.zeros(m.shape, dtype=scores.dtype, device=scores.device)
    if last is None:
        return out
    has_token = last >= 0
    rows = torch.nonzero(has_token, as_tuple=True)[0]
    out[rows, last[rows]] = scores[rows]
    return out


def returns_to_go(rewards: torch.Tensor, response_mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """Discounted return ``G_t = r_t + γ G_{t+1}`` (B,T), reset at every masked-out position (EOS and padding)."""
    m = as_bool_mask(response_mask, rewards)
    out = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    zero = torch.zeros((), dtype=rewards.dtype, device=rewards.device)
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = torch.where(m[:, t], rewards[:, t] + gamma * running, zero)
        out[:, t] = running
    return out


def broadcast_to_tokens(advantages: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Token advantages (B,T): ``A_i · m_it`` for outcome advantages (B,), or ``A_it · m_it`` for (B,T) ones."""
    m = as_bool_mask(response_mask)
    adv = advantages.unsqueeze(-1).expand(m.shape) if advantages.dim() == 1 else advantages
    if adv.shape != m.shape:
        raise ValueError(f"advantages {tuple(advantages.shape)} do not fit response_mask {tuple(m.shape)}")
    return torch.where(m, adv, torch.zeros((), dtype=adv.dtype, device=adv.device))


def _valid_mask(valid: torch.Tensor | Sequence[bool] | None, size: int, device: torch.device) -> torch.Tensor:
    if valid is None:
        return torch.ones(size, dtype=torch.bool, device=device)
    v = as_bool_mask(torch.as_tensor(valid, device=device))
    if v.shape != (size,):
        raise ValueError(f"valid must have shape ({size},), got {tuple(v.shape)}")
    return v


def effective_sample_mask(
    estimator: str,
    group_index: torch.Tensor | Sequence[Hashable] | None,
    valid: torch.Tensor | Sequence[bool] | None = None,
    *,
    batch_size: int | None = None,
) -> torch.Tensor:
    """(B,) bool: the samples that take part in the loss under ``estimator``.

    A sample takes part when it is valid and (for group-relative estimators) its group has at least 2 valid
    samples. Every other sample has advantage 0 and must be masked out of the loss:
    ``loss_mask = response_mask & effective_sample_mask(...)[:, None]``.
    """
    spec = get_advantage_estimator(estimator)
    if batch_size is None:
        if valid is not None:
            batch_size = len(valid)
        elif group_index is not None:
            batch_size = len(group_index)
        else:
            raise ValueError("effective_sample_mask needs valid, group_index or batch_size")
    device = valid.device if isinstance(valid, torch.Tensor) else torch.device("cpu")
    v = _valid_mask(valid, batch_size, device)
    if spec.min_valid_per_group <= 1 or batch_size == 0:
        return v.clone()
    if group_index is None:
        raise ValueError(f"estimator {estimator!r} needs group_index")
    stats = group_stats(torch.zeros(batch_size, dtype=torch.float64, device=device), group_index, v)
    return v & (stats.per_sample(stats.count) >= spec.min_valid_per_group)


# ------------------------------------------------------------------------------------------------ public entry


def compute_advantage(
    estimator: str,
    scores: torch.Tensor | Sequence[float],
    group_index: torch.Tensor | Sequence[Hashable] | None,
    valid: torch.Tensor | Sequence[bool] | None = None,
    **opts: object,
) -> torch.Tensor:
    """Advantages by estimator name (config ``algorithm.adv_estimator``); no gradient flows through them.

    Args:
        estimator: ``grpo``, ``dr_grpo``, ``rloo``, ``reinforce_plus_plus``, ``reinforce_plus_plus_baseline`` or
            any name added with :func:`register_advantage_estimator`.
        scores: (B,) sequence scores (the combined reward of each response).
        group_index: (B,) group label per response (int tensor, or any sequence of hashables such as uid strings).
            Responses to the same prompt share a label. Ignored by ``reinforce_plus_plus`` (may be None there).
        valid: (B,) bool, True where the score is real. None means all valid. Invalid scores are never read.
        **opts:
            ``eps`` (float, default 1e-6): added to the group std (``grpo``; config ``algorithm.norm_eps``).
            ``gamma`` (float, default 1.0): discount of the token return (``reinforce_plus_plus``).
            ``response_mask`` ((B,T) bool/0-1): required by token-level estimators, and with ``token_rewards``.
            ``token_rewards`` ((B,T) float): extra per-token rewards such as the KL reward penalty
            (:func:`easyr1.algorithms.kl.kl_reward_penalty`). Token-level estimators add them to the placed sequence
            reward; outcome estimators add their masked sum to the sequence score.
            Options an estimator does not use are ignored; unknown names raise ``TypeError``.

    Returns:
        (B,) for outcome estimators, (B,T) for token-level estimators. Float64 when ``scores`` is float64,
        else float32 (or the scores' floating dtype). Invalid samples and samples of groups with fewer than 2 valid
        samples get 0; exclude them from the loss with :func:`effective_sample_mask`.

    Raises:
        ValueError: unknown estimator, bad shapes, or a non-finite score on a sample marked valid (index named).
    """
    unknown = set(opts) - KNOWN_OPTS
    if unknown:
        raise TypeError(f"unknown compute_advantage option(s): {', '.join(sorted(unknown))}")
    spec = get_advantage_estimator(estimator)

    s = scores if isinstance(scores, torch.Tensor) else torch.as_tensor(scores)
    if s.dim() != 1:
        raise ValueError(f"scores must have shape (B,), got {tuple(s.shape)}")
    out_dtype = s.dtype if s.dtype.is_floating_point else torch.get_default_dtype()
    s = s.detach().to(torch.float64)
    size = s.shape[0]
    v = _valid_mask(valid, size, s.device)
    bad = torch.nonzero(v & ~torch.isfinite(s), as_tuple=True)[0]
    if bad.numel():
        raise ValueError(f"non-finite score on sample(s) marked valid: indices {bad.tolist()[:20]}")
    s = torch.where(v, s, torch.zeros((), dtype=s.dtype, device=s.device))

    response_mask = opts.get("response_mask")
    m = None
    if response_mask is not None:
        m = as_bool_mask(torch.as_tensor(response_mask, device=s.device))
        if m.dim() != 2 or m.shape[0] != size:
            raise ValueError(f"response_mask must have shape ({size}, T), got {tuple(m.shape)}")
    token_rewards = opts.get("token_rewards")
    tr = None
    if token_rewards is not None:
        if m is None:
            raise ValueError("token_rewards needs response_mask")
        tr = torch.as_tensor(token_rewards, device=s.device).detach().to(torch.float64)
        if tr.shape != m.shape:
            raise ValueError(f"token_rewards {tuple(tr.shape)} must match response_mask {tuple(m.shape)}")
        tr = torch.where(m & v[:, None], tr, torch.zeros((), dtype=tr.dtype, device=tr.device))
    if spec.token_level and m is None:
        raise ValueError(f"estimator {estimator!r} is token-level and needs response_mask=(B,T)")
    if spec.min_valid_per_group > 1 and group_index is None:
        raise ValueError(f"estimator {estimator!r} needs group_index")
    if not spec.token_level and tr is not None:
        s = s + tr.sum(dim=-1)

    inputs = AdvantageInputs(
        scores=s,
        group_index=group_index,
        valid=v,
        response_mask=m,
        token_rewards=tr,
        eps=float(opts.get("eps", GRPO_EPS)),  # type: ignore[arg-type]
        gamma=float(opts.get("gamma", 1.0)),  # type: ignore[arg-type]
    )
    with torch.no_grad():
        adv = spec.fn(inputs)
    return adv.to(out_dtype)


# ------------------------------------------------------------------------------------------------- estimators


def _group_effective(inputs: AdvantageInputs, min_valid: int = 2):
    stats = group_stats(inputs.scores, inputs.group_index, inputs.valid, min_valid=min_valid)
    effective = inputs.valid & stats.per_sample(stats.usable)
    return stats, effective


def grpo_advantage(inputs: AdvantageInputs) -> torch.Tensor:
    """``A_i = (s_i − mean_g) / (std_g + ε)``, unbiased std over the valid samples of the group."""
    stats, effective = _group_effective(inputs)
    adv = stats.centered / (stats.per_sample(stats.std) + inputs.eps)
    return torch.where(effective, adv, torch.zeros_like(adv))


def dr_grpo_advantage(inputs: AdvantageInputs) -> torch.Tensor:
    """``A_i = s_i − mean_g`` (Dr.GRPO: no std); pair it with ``seq-mean-token-sum-norm`` aggregation."""
    stats, effective = _group_effective(inputs)
    return torch.where(effective, stats.centered, torch.zeros_like(stats.centered))


def rloo_advantage(inputs: AdvantageInputs) -> torch.Tensor:
    """``A_i = n/(n−1) · (s_i − mean_g)`` = ``s_i −`` mean of the other valid samples (n = valid group size)."""
    stats, effective = _group_effective(inputs)
    n = stats.per_sample(stats.count)
    adv = stats.centered * n / (n - 1).clamp(min=1)
    return torch.where(effective, adv, torch.zeros_like(adv))


def reinforce_plus_plus_advantage(inputs: AdvantageInputs) -> torch.Tensor:
    """Return-to-go of the token rewards (sequence score on the last valid token), whitened over the batch."""
    assert inputs.response_mask is not None
    m = inputs.response_mask & inputs.valid[:, None]
    rewards = place_sequence_reward(inputs.scores, m)
    if inputs.token_rewards is not None:
        rewards = rewards + inputs.token_rewards
    returns = returns_to_go(rewards, m, inputs.gamma)
    return masked_whiten(returns, m)


def reinforce_plus_plus_baseline_advantage(inputs: AdvantageInputs) -> torch.Tensor:
    """``s_i − mean_g`` on every valid token, then whitened over all valid tokens of the batch. Token rewards (the
    KL reward penalty) are summed into ``s_i`` before group-centring."""
    assert inputs.response_mask is not None
    if inputs.token_rewards is not None:
        inputs = replace(inputs, scores=inputs.scores + inputs.token_rewards.sum(dim=-1))
    stats, effective = _group_effective(inputs)
    m = inputs.response_mask & effective[:, None]
    per_token = stats.centered[:, None].expand(m.shape)
    return masked_whiten(per_token, m)
