"""How the judge talks HTTP: the SDK's client choice and the mapping of SDK errors to failure reasons."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

import openai

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


class RetryCountingAsyncOpenAI(openai.AsyncOpenAI):
    """The SDK's async client, reporting each retry it makes to ``on_retry(cause)`` before its backoff.

    The SDK calls ``_sleep_for_retry`` once per retry, inside the handler of the error that caused it (a
    retryable response, a timeout or a connection error); that is the only place a retry is visible, so it is
    overridden here. tests/reward/judge/test_judge_retries.py fails if an SDK upgrade stops calling it.
    """

    def __init__(self, *args: Any, on_retry: Callable[[str], None], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._on_retry = on_retry

    async def _sleep_for_retry(self, *, response: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        try:
            self._on_retry(retry_cause(response, sys.exc_info()[1]))
        except Exception:  # counting must never break a call
            logger.exception("judge retry counter failed")
        await super()._sleep_for_retry(response=response, **kwargs)
