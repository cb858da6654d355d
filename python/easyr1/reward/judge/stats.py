"""Usage totals of a judge (tokens, cost, calls, cache, failures, latencies) for the telemetry layer and the CLI."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .protocol import JudgeResult


@dataclass
class JudgeStats:
    """Totals since the last :meth:`JudgeStatsRecorder.drain` (or since the judge was built)."""

    samples: int = 0
    """Samples scored (one per request)."""
    valid: int = 0
    invalid: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    """Invalid samples by reason."""
    calls: int = 0
    """Logical judge calls made (one per dimension in ``per_dimension`` mode, one per sample in ``single_call``)."""
    call_outcomes: dict[str, int] = field(default_factory=dict)
    """Calls by outcome: ``ok`` or a failure reason."""
    http_requests: int = 0
    """HTTP requests sent, retries included."""
    http_status: dict[str, int] = field(default_factory=dict)
    """HTTP responses by status code (``"200"``, ``"429"``, …)."""
    retries: dict[str, int] = field(default_factory=dict)
    """Retries the SDK made, by cause: ``http_<status>`` (429, 5xx, 408, 409), ``timeout``, ``connection_error``."""
    cache_hits: int = 0
    """Calls answered from the cache (no HTTP)."""
    cache_misses: int = 0
    """Calls looked up in the cache and not found (only counted when the cache is on)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    call_latencies_s: list[float] = field(default_factory=list)
    """Wall time of every completed call (retries and backoff included)."""

    def latency_quantile(self, q: float) -> float | None:
        """Quantile of :attr:`call_latencies_s` (``None`` when no call completed)."""
        if not self.call_latencies_s:
            return None
        return float(np.quantile(np.asarray(self.call_latencies_s), q))

    def to_metrics(self) -> dict[str, float]:
        """Per-step amounts under the telemetry keys (``judge/requests/<outcome>``, tokens, cost, cache, latency
        quantiles, ``judge/retries/<cause>``); ``cached`` counts calls answered by the cache."""
        metrics: dict[str, float] = {f"judge/requests/{k}": float(v) for k, v in self.call_outcomes.items()}
        if self.cache_hits:
            metrics["judge/requests/cached"] = float(self.cache_hits)
        metrics.update({f"judge/retries/{k}": float(v) for k, v in self.retries.items()})
        metrics.update(
            {
                "judge/prompt_tokens": float(self.prompt_tokens),
                "judge/completion_tokens": float(self.completion_tokens),
                "judge/cost_usd": float(self.cost_usd),
                "judge/cache_hits": float(self.cache_hits),
                "judge/cache_misses": float(self.cache_misses),
            }
        )
        for key, q in (("judge/latency_p50_s", 0.5), ("judge/latency_p95_s", 0.95)):
            value = self.latency_quantile(q)
            if value is not None:
                metrics[key] = value
        return metrics

    @classmethod
    def from_results(
        cls,
        results: Sequence[JudgeResult],
        price_per_1k_prompt_tokens: float = 0.0,
        price_per_1k_completion_tokens: float = 0.0,
    ) -> JudgeStats:
        """The totals of a batch of results, for judges that keep no counters of their own: one call per
        non-cached result (outcome ``ok`` or its failure reason), cached results as cache hits."""
        recorder = JudgeStatsRecorder(price_per_1k_prompt_tokens, price_per_1k_completion_tokens)
        cached = sum(1 for r in results if r.cached)
        recorder.record_cache(hits=cached, misses=len(results) - cached)
        for r in results:
            if r.cached:  # tokens count, the call did not happen
                recorder.record_tokens(r.prompt_tokens, r.completion_tokens)
            else:
                outcome = "ok" if r.valid else r.reason or "failed"
                recorder.record_call(
                    outcome, prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens, latency_s=r.latency_s
                )
        recorder.record_samples([None if r.valid else r.reason or "failed" for r in results])
        return recorder.drain()

    @property
    def cache_hit_rate(self) -> float | None:
        looked_up = self.cache_hits + self.cache_misses
        return self.cache_hits / looked_up if looked_up else None


class JudgeStatsRecorder:
    """Thread-safe accumulator behind :class:`JudgeStats` (the judge records from its event-loop thread)."""

    def __init__(self, price_per_1k_prompt_tokens: float = 0.0, price_per_1k_completion_tokens: float = 0.0):
        self._prices = (price_per_1k_prompt_tokens, price_per_1k_completion_tokens)
        self._lock = threading.Lock()
        self._stats = JudgeStats()

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens / 1000 * self._prices[0] + completion_tokens / 1000 * self._prices[1]

    def record_call(
        self, outcome: str, *, prompt_tokens: int = 0, completion_tokens: int = 0, latency_s: float | None = None
    ) -> None:
        with self._lock:
            s = self._stats
            s.calls += 1
            s.call_outcomes[outcome] = s.call_outcomes.get(outcome, 0) + 1
            s.prompt_tokens += prompt_tokens
            s.completion_tokens += completion_tokens
            s.cost_usd += self.cost(prompt_tokens, completion_tokens)
            if latency_s is not None:
                s.call_latencies_s.append(latency_s)

    def record_tokens(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Tokens (and their cost) of a result that made no call (a cached answer carries its original usage)."""
        with self._lock:
            s = self._stats
            s.prompt_tokens += prompt_tokens
            s.completion_tokens += completion_tokens
            s.cost_usd += self.cost(prompt_tokens, completion_tokens)

    def record_http(self, status_code: int) -> None:
        with self._lock:
            self._stats.http_requests += 1
            key = str(status_code)
            self._stats.http_status[key] = self._stats.http_status.get(key, 0) + 1

    def record_retry(self, cause: str) -> None:
        """One retry by the SDK (see :func:`easyr1.reward.judge.transport.retry_cause`)."""
        with self._lock:
            self._stats.retries[cause] = self._stats.retries.get(cause, 0) + 1

    def record_cache(self, *, hits: int, misses: int) -> None:
        with self._lock:
            self._stats.cache_hits += hits
            self._stats.cache_misses += misses

    def record_samples(self, reasons: list[str | None]) -> None:
        """One entry per sample: ``None`` for valid, else the failure reason."""
        counts = Counter(r for r in reasons if r is not None)
        with self._lock:
            s = self._stats
            s.samples += len(reasons)
            s.invalid += sum(counts.values())
            s.valid += len(reasons) - sum(counts.values())
            for reason, n in counts.items():
                s.failures[reason] = s.failures.get(reason, 0) + n

    def snapshot(self) -> JudgeStats:
        """A copy of the totals; recording goes on."""
        with self._lock:
            return _copy(self._stats)

    def drain(self) -> JudgeStats:
        """The totals since the last drain, then start from zero (what a per-step metrics exporter wants)."""
        with self._lock:
            out, self._stats = self._stats, JudgeStats()
            return out


def _copy(s: JudgeStats) -> JudgeStats:
    return JudgeStats(
        samples=s.samples,
        valid=s.valid,
        invalid=s.invalid,
        failures=dict(s.failures),
        calls=s.calls,
        call_outcomes=dict(s.call_outcomes),
        http_requests=s.http_requests,
        http_status=dict(s.http_status),
        retries=dict(s.retries),
        cache_hits=s.cache_hits,
        cache_misses=s.cache_misses,
        prompt_tokens=s.prompt_tokens,
        completion_tokens=s.completion_tokens,
        cost_usd=s.cost_usd,
        call_latencies_s=list(s.call_latencies_s),
    )
