"""A private event loop on a daemon thread, so synchronous callers can drive async code from any context.

``score_batch`` must work in a plain script, inside a Ray actor, and from code that already runs an event loop in
the same thread (where ``asyncio.run`` is refused). Running the judge's coroutines on a loop that the judge owns
avoids all three problems and keeps the HTTP connection pool alive between batches.

The loop is asyncio's own or uvloop's (``judge.event_loop``): :func:`event_loop_factory` picks one, falling back
to asyncio with a log line when uvloop is not installed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
logger = logging.getLogger(__name__)

EVENT_LOOPS = ("uvloop", "asyncio")
"""The event loops ``judge.event_loop`` may name."""


def event_loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """What builds the judge's loop: ``uvloop`` (libuv; less CPU per call on the judge's loop thread) when it is
    asked for and importable, else asyncio's default loop (``asyncio``, or ``uvloop`` without uvloop installed,
    which is logged as a warning)."""
    if kind not in EVENT_LOOPS:
        raise ValueError(f"event loop {kind!r}: expected one of {', '.join(EVENT_LOOPS)}")
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            logger.warning("judge.event_loop=uvloop unavailable (uvloop not installed); using asyncio's event loop")
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


class BackgroundLoop:
    """Starts on first use; :meth:`run` blocks the caller until the coroutine ends on the private loop."""

    def __init__(
        self,
        name: str = "easyr1-judge-loop",
        *,
        executor_workers: int = 4,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
    ):
        self._name = name
        self._executor_workers = executor_workers
        self._loop_factory = loop_factory
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    @property
    def running(self) -> bool:
        return self._loop is not None and self._pid == os.getpid() and not self._loop.is_closed()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self.running:
                assert self._loop is not None
                return self._loop
            loop = self._loop_factory()
            loop.set_default_executor(
                concurrent.futures.ThreadPoolExecutor(self._executor_workers, thread_name_prefix=f"{self._name}-io")
            )
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=serve, name=self._name, daemon=True)
            thread.start()
            ready.wait()
            self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and wait for its result (Ctrl-C cancels it)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a blocking judge call was made from the judge's own event loop; use the async API")
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure())
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the private loop without waiting; its future (cancelling it cancels the coroutine)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("submit from the judge's own event loop; await the coroutine instead")
        return asyncio.run_coroutine_threadsafe(coro, self._ensure())

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` running on the private loop from another event loop."""
        if threading.current_thread() is self._thread:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._ensure()))

    def close(self, final: Coroutine[Any, Any, Any] | None = None) -> None:
        """Run ``final`` (clean-up) on the loop, then stop the thread. Safe to call twice."""
        with self._lock:
            loop, thread, pid = self._loop, self._thread, self._pid
            self._loop = self._thread = self._pid = None
        if loop is None or pid != os.getpid() or loop.is_closed():
            if final is not None:
                final.close()
            return
        if final is not None:
            with contextlib.suppress(Exception):  # clean-up is best effort; the loop is stopped anyway
                asyncio.run_coroutine_threadsafe(final, loop).result(timeout=10)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(loop.shutdown_default_executor(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        loop.close()
