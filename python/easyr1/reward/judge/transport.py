"""How the judge talks HTTP: the SDK's client choice and the mapping of SDK errors to failure reasons."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import openai

from .stats import JudgeStats, JudgeStatsRecorder

logger = logging.getLogger(__name__)

_REFUSAL_CODES = {"content_policy_violation", "content_filter"}


def classify_exception(exc: BaseException) -> str:
    """Map an SDK exception (after its retries) to a failure reason."""
    if isinstance(exc, (openai.APITimeoutError, asyncio.TimeoutError)):
        # the aiohttp transport reports a refused connection as a connect *timeout*; look at the real cause
        return "server_error" if _refused_connection(exc) else "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "server_error"  # unreachable or connection dropped: the server side failed us
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited"
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 408:
            return "timeout"
        if exc.status_code >= 500:
            return "server_error"
        if getattr(exc, "code", None) in _REFUSAL_CODES:
            return "refused"
        return "client_error"
    if isinstance(exc, openai.APIResponseValidationError):
        return "server_error"
    return "client_error"


def _refused_connection(exc: BaseException) -> bool:
    try:
        from aiohttp import ClientConnectorError

        connect_errors: tuple[type[BaseException], ...] = (ConnectionError, ClientConnectorError)
    except ImportError:
        connect_errors = (ConnectionError,)
    cause: BaseException | None = exc
    for _ in range(8):
        cause = cause.__cause__ or cause.__context__
        if cause is None:
            return False
        if isinstance(cause, connect_errors):
            return True
    return False


def sdk_http_client(kind: str, **kwargs: Any) -> Any:
    """The SDK's own HTTP client with its defaults (limits, redirects; proxies from the standard environment).

    ``aiohttp`` (the SDK's aiohttp transport) costs about half the CPU per call of ``httpx`` at high concurrency.
    """
    if kind == "aiohttp":
        try:
            return openai.DefaultAioHttpClient(**kwargs)
        except RuntimeError:  # aiohttp missing
            logger.warning("judge.http_client=aiohttp unavailable (aiohttp not installed); using httpx")
    return openai.DefaultAsyncHttpxClient(**kwargs)


def retry_cause(response: Any, exc: BaseException | None) -> str:
    """What a retry answers: ``http_<status>`` for a response the SDK retries (429, 5xx, 408, 409), else
    ``timeout`` or ``connection_error`` (no response)."""
    if response is not None:
        return f"http_{getattr(response, 'status_code', 'unknown')}"
    if exc is None or isinstance(exc, ConnectionError) or _refused_connection(exc):
        return "connection_error"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or "Timeout" in type(exc).__name__:
        return "timeout"
    return "connection_error"


SDK_PLATFORM_HEADERS = (
    "X-Stainless-Lang",
    "X-Stainless-Package-Version",
    "X-Stainless-OS",
    "X-Stainless-Arch",
    "X-Stainless-Runtime",
    "X-Stainless-Runtime-Version",
    "X-Stainless-Async",
)
"""Headers the SDK adds to every request to describe the client's platform (telemetry; no endpoint needs them)."""


class RetryCountingAsyncOpenAI(openai.AsyncOpenAI):
    """The SDK's async client, reporting each retry it makes to ``on_retry(cause)`` before its backoff.

    The SDK calls ``_sleep_for_retry`` once per retry, inside the handler of the error that caused it (a
    retryable response, a timeout or a connection error); that is the only place a retry is visible, so it is
    overridden here. tests/reward/judge/test_judge_retries.py fails if an SDK upgrade stops calling it.

    The :data:`SDK_PLATFORM_HEADERS` are left out (the SDK's ``Omit`` in ``default_headers``): every header is
    merged, normalised and copied several times per call by the SDK, httpx and aiohttp, and parsed by the server;
    without these seven the judge's loop thread spends 7-9 % less CPU per call (issue 21, docs/performance.md).
    """

    def __init__(self, *args: Any, on_retry: Callable[[str], None], **kwargs: Any):
        omitted: dict[str, Any] = {name: openai.Omit() for name in SDK_PLATFORM_HEADERS}
        kwargs["default_headers"] = {**omitted, **(kwargs.get("default_headers") or {})}
        super().__init__(*args, **kwargs)
        self._on_retry = on_retry

    async def _sleep_for_retry(self, *, response: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        try:
            self._on_retry(retry_cause(response, sys.exc_info()[1]))
        except Exception:  # counting must never break a call
            logger.exception("judge retry counter failed")
        await super()._sleep_for_retry(response=response, **kwargs)


# ------------------------------------------------------------------------------------------ waiting out an outage
TRANSIENT_REASONS = frozenset({"server_error", "rate_limited", "timeout"})
"""Call failures that a judge outage produces (5xx or unreachable, 429, no answer in time): waited out."""
OUTAGE_REASON = "outage"
"""A sample whose calls still failed transiently when ``judge.outage_budget_s`` was spent."""
OUTAGE_INITIAL_WAIT_S = 1.0
OUTAGE_MAX_WAIT_S = 60.0


def retry_after_s(exc: BaseException) -> float | None:
    """The server's ``retry-after-ms`` / ``Retry-After`` (seconds) of a failed call, if it sent one."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:  # an HTTP date: not used (the exponential wait applies)
            continue
        if seconds >= 0:
            return seconds
    return None


class OutageWait:
    """tenacity wait: capped exponential backoff with full jitter, at least the longest ``Retry-After`` that the
    failed calls of the last round carried (``retry_after()`` reads it)."""

    def __init__(self, retry_after: Callable[[], float | None]):
        import tenacity

        self._retry_after = retry_after
        self._backoff = tenacity.wait_random_exponential(multiplier=OUTAGE_INITIAL_WAIT_S, max=OUTAGE_MAX_WAIT_S)

    def __call__(self, retry_state: Any) -> float:
        wait = max(float(self._backoff(retry_state)), OUTAGE_INITIAL_WAIT_S / 2)
        server = self._retry_after()
        return max(wait, server) if server is not None else wait


def outage_retrying(
    budget_s: float,
    *,
    transient: Callable[[Any], bool],
    retry_after: Callable[[], float | None],
    on_wait: Callable[[float], None],
) -> Any:
    """A tenacity ``AsyncRetrying`` that repeats a round of failed calls while ``transient(result)`` holds and the
    next wait still ends within ``budget_s`` of the first round's start; it returns the last round's result (never
    raises ``RetryError``). ``on_wait(seconds)`` is told each wait before it starts."""
    import tenacity

    def before_sleep(state: tenacity.RetryCallState) -> None:
        on_wait(state.next_action.sleep if state.next_action is not None else 0.0)

    return tenacity.AsyncRetrying(
        stop=tenacity.stop_before_delay(budget_s),
        wait=OutageWait(retry_after),
        retry=tenacity.retry_if_result(transient),
        before_sleep=before_sleep,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome is not None else None,
        reraise=True,
    )


@dataclass
class JudgeStatsAndWaits(JudgeStats):
    """:class:`JudgeStats` plus the time spent waiting out judge outages."""

    waiting_s: float = 0.0
    """Seconds the batches waited for the judge to come back (each batch counts its longest sample wait)."""

    def to_metrics(self) -> dict[str, float]:
        metrics = super().to_metrics()
        metrics["judge/waiting_s"] = float(self.waiting_s)
        return metrics


class JudgeStatsWithWaits(JudgeStatsRecorder):
    """The judge's recorder, also counting outage waits (``judge/waiting_s``)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._stats = JudgeStatsAndWaits()

    def record_wait(self, seconds: float) -> None:
        with self._lock:
            self._stats.waiting_s += seconds  # type: ignore[attr-defined]

    def snapshot(self) -> JudgeStatsAndWaits:
        with self._lock:
            waited = self._stats.waiting_s  # type: ignore[attr-defined]
        return JudgeStatsAndWaits(**vars(super().snapshot()), waiting_s=waited)

    def drain(self) -> JudgeStatsAndWaits:
        with self._lock:
            out, self._stats = self._stats, JudgeStatsAndWaits()
            return out  # type: ignore[return-value]
