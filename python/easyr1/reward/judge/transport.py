"""How the judge talks HTTP: the SDK's client choice and the mapping of SDK errors to failure reasons."""

from __future__ import annotations

import asyncio
import logging
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
