"""KL divergence to the frozen reference: per-token estimators, the reward penalty and its coefficient controllers.

Config: ``algorithm.kl_penalty`` (the estimator), ``algorithm.use_kl_loss`` (loss term or reward penalty),
``algorithm.kl_coef``, ``algorithm.kl_type`` (``fixed``/``adaptive``), ``algorithm.kl_target``,
``algorithm.kl_horizon``, ``algorithm.disable_kl``.

With ``x = logπ`` and ``y = logπ_ref`` per token:

* ``kl`` / ``k1``: ``x − y``
* ``abs``: ``|x − y|``
* ``mse`` / ``k2``: ``½ (x − y)²``
* ``low_var_kl`` / ``k3``: ``κ = clamp(y − x, −20, 20)``, ``clamp(exp(κ) − κ − 1, −10, 10)``
* any of them with a ``+`` suffix (``k3+``, ``low_var_kl+``, …): straight-through — the value of the estimator with
  the gradient of ``k2`` (``k2 − sg(k2) + sg(k)``), an unbiased gradient of KL whatever the value estimator.
* ``full``: exact KL over the vocabulary; here ``logprob`` and ``ref_logprob`` are full log-distributions
  (…, V) and the result drops the last dim: ``Σ_v exp(x_v)(x_v − y_v)``.

As a loss term the actor adds ``kl_coef · agg_loss(kl_penalty(logπ, logπ_ref, kind), mask, mode)``. As a reward
penalty, :func:`kl_reward_penalty` gives ``−β · k(logπ_old, logπ_ref) · m`` to pass as ``token_rewards`` to
:func:`easyr1.algorithms.compute_advantage`, and a KL value to feed the controller's ``update``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .masking import as_bool_mask, masked_mean

KL_LOG_RATIO_CLAMP = 20.0
"""|y − x| clamp inside ``low_var_kl`` before the exponential."""
LOW_VAR_KL_CLAMP = 10.0
"""Clamp of the ``low_var_kl`` value."""

_ALIASES = {"kl": "k1", "k1": "k1", "abs": "abs", "mse": "k2", "k2": "k2", "low_var_kl": "k3", "k3": "k3"}
KL_KINDS = (*_ALIASES, *(f"{name}+" for name in _ALIASES), "full")
"""Every ``kind`` :func:`kl_penalty` accepts."""


def _estimate(base: str, logprob: torch.Tensor, ref_logprob: torch.Tensor) -> torch.Tensor:
    diff = logprob - ref_logprob
    if base == "k1":
        return diff
    if base == "abs":
        return diff.abs()
    if base == "k2":
        return 0.5 * diff.square()
    kappa = torch.clamp(-diff, -KL_LOG_RATIO_CLAMP, KL_LOG_RATIO_CLAMP)
    return torch.clamp(torch.exp(kappa) - kappa - 1, -LOW_VAR_KL_CLAMP, LOW_VAR_KL_CLAMP)


def kl_penalty(logprob: torch.Tensor, ref_logprob: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token KL estimate of the policy against the reference.

    Args:
        logprob: (B,T) log-probabilities of the sampled tokens under the policy (may carry gradient); for
            ``kind="full"``, (B,T,V) full log-distributions.
        ref_logprob: same shape, under the reference (treated as a constant).
        kind: one of :data:`KL_KINDS` (see the module docstring for the formulas).

    Returns:
        (B,T) per-token values, unmasked: aggregate them with :func:`easyr1.algorithms.agg_loss` and the token mask
        (padding values are then ignored, even non-finite ones).
    """
    if logprob.shape != ref_logprob.shape:
        raise ValueError(f"logprob {tuple(logprob.shape)} and ref_logprob {tuple(ref_logprob.shape)} differ")
    ref = ref_logprob.detach()
    if kind == "full":
        prob = logprob.exp()
        terms = torch.where(prob > 0, prob * (logprob - ref), torch.zeros((), dtype=prob.dtype, device=prob.device))
        return terms.sum(dim=-1)
    straight_through = kind.endswith("+")
    base = _ALIASES.get(kind[:-1] if straight_through else kind)
    if base is None:
        raise ValueError(f"unknown KL kind {kind!r}; known: {', '.join(KL_KINDS)}")
    value = _estimate(base, logprob, ref)
    if not straight_through:
        return value
    k2 = _estimate("k2", logprob, ref)
    return k2 - k2.detach() + value.detach()


def kl_reward_penalty(
    old_logprob: torch.Tensor,
    ref_logprob: torch.Tensor,
    response_mask: torch.Tensor,
    kind: str,
    coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The KL reward penalty ``−β · k(logπ_old, logπ_ref)_t · m_t`` and the batch KL for the controller.

    Args:
        old_logprob: (B,T) rollout-policy log-probs; ref_logprob: (B,T) reference log-probs.
        response_mask: (B,T) token mask (AND the sample mask in to skip failed samples).
        kind: a :data:`KL_KINDS` estimator (``full`` is not meaningful here).
        coef: β, e.g. ``controller.value``.

    Returns:
        ``(token_rewards, current_kl)``: (B,T) penalty, zero on masked tokens, to pass as ``token_rewards`` to
        ``compute_advantage``; and a 0-dim tensor, the mean over sequences (with at least one token) of each
        sequence's token-mean KL, to pass to ``controller.update(current_kl, n_steps=B)``.
    """
    m = as_bool_mask(response_mask, old_logprob)
    with torch.no_grad():
        k = kl_penalty(old_logprob.detach(), ref_logprob.detach(), kind)
        zero = torch.zeros((), dtype=k.dtype, device=k.device)
        per_token = torch.where(m, k, zero)
        has_tokens = m.any(dim=-1)
        per_seq = masked_mean(k, m, dim=-1)
        current_kl = masked_mean(per_seq, has_tokens)
    return -coef * per_token, current_kl


@dataclass
class FixedKLController:
    """Constant KL coefficient (``algorithm.kl_type: fixed``)."""

    value: float

    def update(self, current_kl: float, n_steps: int) -> None:
        """No-op: the coefficient stays ``value``."""


@dataclass
class AdaptiveKLController:
    """Adaptive KL coefficient (Ziegler et al. 2019; ``algorithm.kl_type: adaptive``).

    ``β ← β · (1 + clip(KL / target − 1, −0.2, 0.2) · n_steps / horizon)``.
    """

    value: float
    target: float
    horizon: float

    def __post_init__(self) -> None:
        if self.target <= 0 or self.horizon <= 0:
            raise ValueError(f"target ({self.target}) and horizon ({self.horizon}) must be positive")

    def update(self, current_kl: float, n_steps: int) -> None:
        """Move ``value`` towards keeping the observed KL near ``target``; ``n_steps`` = samples in the batch."""
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


def make_kl_controller(
    kl_type: str, kl_coef: float, kl_target: float = 0.1, kl_horizon: float = 10000.0
) -> FixedKLController | AdaptiveKLController:
    """Build the controller named by ``algorithm.kl_type`` from the ``algorithm`` config values."""
    if kl_type == "fixed":
        return FixedKLController(kl_coef)
    if kl_type == "adaptive":
        return AdaptiveKLController(kl_coef, kl_target, kl_horizon)
    raise ValueError(f"unknown kl_type {kl_type!r}; known: fixed, adaptive")
