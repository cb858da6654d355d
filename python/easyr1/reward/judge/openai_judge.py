"""The ``openai`` judge backend: any OpenAI-compatible chat endpoint (GPT-4o, a vLLM-served model).

Calls run concurrently on a private event loop with a bound on calls in flight (``max_concurrency``), optional
requests- and tokens-per-minute limits, the SDK's retries (backoff that honours ``Retry-After``; never on
400/401/403/404), a per-request timeout and a deadline for the whole batch. Every call ends as a score or a failure
reason; a sample with any failed dimension is invalid, never given a substitute score.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import itertools
import logging
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Sequence
from typing import Any

import openai
from aiolimiter import AsyncLimiter
from PIL import Image

from easyr1.config import JudgeConfig

from . import rubrics
from .cache import JudgeCache, content_key
from .calls import Call, Outcome, ResultCallback, SampleProgress, done_callback, read_response, report_to
from .credentials import resolve_api_key
from .images import EncodedImage, EncodedImageCache, encode_image, estimated_image_tokens, pixel_digest, request_body
from .loop import BackgroundLoop, event_loop_factory
from .protocol import DIMENSIONS, JudgeRequest, JudgeResult
from .transport import (
    OUTAGE_REASON,
    TRANSIENT_REASONS,
    JudgeStatsWithWaits,
    RetryCountingAsyncOpenAI,
    classify_exception,
    outage_retrying,
    retry_after_s,
    sdk_http_client,
)

logger = logging.getLogger(__name__)

_TOP_LOGPROBS = 20
RATE_WINDOW_S = 60.0
"""Window of the per-minute limits (a leaky bucket that holds at most one window's worth of requests/tokens)."""
ENCODE_THREADS = 2
"""Threads that encode images and read/write the answer cache (per judge)."""
ENCODED_IMAGES_BYTES = 64 * 2**20
"""Encodings the judge keeps across batches (LRU by pixel digest): ~500 images of 512 px, several steps' worth."""


class ImageEncodeError(Exception):
    """An image of a sample could not be encoded: that sample fails with ``image_error``, the batch goes on."""


def _release(
    loop: BackgroundLoop,
    worker: concurrent.futures.ThreadPoolExecutor,
    cache: JudgeCache | None,
    clients: list[openai.AsyncOpenAI],
) -> None:
    async def close_clients() -> None:
        for client in clients:
            await client.close()
        clients.clear()

    loop.close(close_clients())
    worker.shutdown(wait=True)
    if cache is not None:
        cache.close()


class OpenAIJudge:
    """Judge backend for any OpenAI-compatible ``/v1/chat/completions`` endpoint.

    ``score_batch`` is synchronous and safe to call from any thread, including one that runs its own event loop;
    ``ascore_batch`` is the awaitable form, ``submit_batch`` the non-blocking one (a future). Every form runs on the
    one private loop, so concurrent batches share the ``max_concurrency`` and rate limits. :attr:`stats` holds usage totals (``snapshot()`` / ``drain()``).
    Call :meth:`close` (or use ``with``) to release the connection pool and the cache.
    """

    def __init__(self, cfg: JudgeConfig, *, api_key: str | None = None):
        self.cfg = cfg
        self._api_key = api_key if api_key is not None else resolve_api_key(cfg)
        self.stats = JudgeStatsWithWaits(cfg.price_per_1k_prompt_tokens, cfg.price_per_1k_completion_tokens)
        self._use_logprobs = cfg.use_logprobs and cfg.mode == "per_dimension"
        if cfg.use_logprobs and cfg.mode != "per_dimension":
            logger.warning("judge.use_logprobs applies to per_dimension mode only; ignored in %s mode", cfg.mode)
        self.deterministic = cfg.temperature == 0 or self._use_logprobs
        self.cache: JudgeCache | None = None
        if cfg.cache_dir:
            if self.deterministic:
                self.cache = JudgeCache(cfg.cache_dir)
            else:
                logger.warning("judge cache disabled: temperature %s > 0 without probability scoring", cfg.temperature)
        self._loop = BackgroundLoop(loop_factory=event_loop_factory(cfg.event_loop))
        # Image encoding and cache I/O, overlapping the HTTP calls. Pillow's JPEG encoder runs without the GIL, so
        # two threads encode on two cores (issue 21, 2 shared cores: medians 0-10 % lower than one thread; an
        # earlier four-thread pool was far slower than one); the encoding cache makes them wait for, not repeat,
        # each other's work on a shared image.
        self._worker = concurrent.futures.ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="easyr1-judge-encode")
        self.encodings = EncodedImageCache(ENCODED_IMAGES_BYTES)
        self._client: openai.AsyncOpenAI | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._rpm: AsyncLimiter | None = None
        self._tpm: AsyncLimiter | None = None
        self._system_prompts: dict[tuple[str | None, bool], str] = {}
        self._key_prefix = f"easyr1-judge-{uuid.uuid4().hex[:12]}"
        self._placeholder = f"easyr1-image-{uuid.uuid4().hex}-"
        self._call_ids = itertools.count()
        # released by close(), or when the judge is garbage-collected or the interpreter exits
        self._clients: list[openai.AsyncOpenAI] = []
        self._finalizer = weakref.finalize(self, _release, self._loop, self._worker, self.cache, self._clients)

    def __repr__(self) -> str:
        c = self.cfg
        return f"OpenAIJudge(model={c.model!r}, base_url={c.base_url!r}, mode={c.mode!r})"

    # ----------------------------------------------------------------------------------------------- public API
    def drain_metrics(self) -> dict[str, float]:
        """Flat ``judge/*`` metrics of the calls, retries, waits and usage since the previous call (resets them)."""
        return self.stats.drain().to_metrics()

    def score_batch(
        self, requests: Sequence[JudgeRequest], *, on_result: ResultCallback | None = None
    ) -> list[JudgeResult]:
        """Score ``requests``; one result per request, in order. Failures are results with ``valid=False``."""
        self._check_requests(requests)
        return self._loop.run(self._score_batch(list(requests), on_result))

    def submit_batch(
        self, requests: Sequence[JudgeRequest], *, on_result: ResultCallback | None = None
    ) -> concurrent.futures.Future[list[JudgeResult]]:
        """Start :meth:`score_batch` on the judge's loop and return at once; the future resolves with its results.
        Batches submitted from any thread share one ``max_concurrency`` limit and the per-minute limits."""
        self._check_requests(requests)
        return self._loop.submit(self._score_batch(list(requests), on_result))

    async def ascore_batch(
        self, requests: Sequence[JudgeRequest], *, on_result: ResultCallback | None = None
    ) -> list[JudgeResult]:
        """Awaitable :meth:`score_batch` (the work still runs on the judge's own loop)."""
        self._check_requests(requests)
        return await self._loop.arun(self._score_batch(list(requests), on_result))

    def close(self) -> None:
        """Close the HTTP client, stop the private loop and close the cache. Safe to call twice."""
        self._finalizer()
        self._client = None

    def __enter__(self) -> OpenAIJudge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ internals
    @staticmethod
    def _check_requests(requests: Sequence[JudgeRequest]) -> None:
        for i, req in enumerate(requests):
            for name in ("source_image", "edited_image"):
                if not isinstance(getattr(req, name), Image.Image):
                    raise ValueError(f"judge request {i} (key={req.key!r}): {name} is not a PIL image")
            if not isinstance(req.instruction, str):
                raise ValueError(f"judge request {i} (key={req.key!r}): instruction is not a string")

    def _ensure_client(self) -> openai.AsyncOpenAI:
        """Built on the private loop on first use (the HTTP pool then stays bound to that loop)."""
        if self._client is None:
            stats = self.stats

            async def on_response(response: Any) -> None:
                stats.record_http(response.status_code)

            http_client = sdk_http_client(self.cfg.http_client, event_hooks={"response": [on_response]})
            self._client = RetryCountingAsyncOpenAI(
                on_retry=stats.record_retry,
                api_key=self._api_key,
                base_url=self.cfg.base_url,
                max_retries=self.cfg.max_retries,
                timeout=self.cfg.timeout_s,
                http_client=http_client,
            )
            self._clients.append(self._client)
            self._semaphore = asyncio.Semaphore(self.cfg.max_concurrency)
            if self.cfg.requests_per_minute:
                self._rpm = AsyncLimiter(self.cfg.requests_per_minute, RATE_WINDOW_S)
            if self.cfg.tokens_per_minute:
                self._tpm = AsyncLimiter(self.cfg.tokens_per_minute, RATE_WINDOW_S)
        return self._client

    async def _score_batch(self, requests: list[JudgeRequest], on_result: ResultCallback | None) -> list[JudgeResult]:
        self._ensure_client()
        progress = [SampleProgress() for _ in requests]
        encoded: dict[int, EncodedImage] = {}
        tasks = [asyncio.create_task(self._score_sample(req, progress[i], encoded)) for i, req in enumerate(requests)]
        if on_result is not None:
            for i, task in enumerate(tasks):
                task.add_done_callback(done_callback(on_result, i))
        pending: set[asyncio.Task] = set()
        if tasks:
            deadline = self.cfg.batch_deadline_s + self.cfg.outage_budget_s
            _, pending = await asyncio.wait(tasks, timeout=deadline)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            logger.warning(
                "judge batch deadline (%.1fs) reached: %d of %d samples unfinished",
                deadline,
                len(pending),
                len(tasks),
            )
        results: list[JudgeResult] = []
        late: list[int] = []  # samples whose result is only known now (deadline, unexpected error)
        for i, (task, prog) in enumerate(zip(tasks, progress, strict=True)):
            if task in pending or task.exception() is not None:
                late.append(i)
            if task in pending:
                results.append(
                    JudgeResult.failure(
                        "deadline",
                        prompt_tokens=prog.prompt_tokens,
                        completion_tokens=prog.completion_tokens,
                        latency_s=prog.latency_s,
                        calls=prog.calls,
                    )
                )
            elif task.exception() is not None:
                exc = task.exception()
                logger.error("judge sample failed unexpectedly: %r", exc, exc_info=exc)
                results.append(JudgeResult.failure("client_error", calls=prog.calls))
            else:
                results.append(task.result())
        if on_result is not None:
            for i in late:
                report_to(on_result, i, results[i])
        reasons = [r.reason if not r.valid else None for r in results]
        self.stats.record_samples(reasons)
        waited = max((p.waited_s for p in progress), default=0.0)  # the batch waited as long as its longest wait
        if waited > 0:
            self.stats.record_wait(waited)
            logger.warning(
                "judge: waited %.1fs for the judge to come back (outage budget %.0fs)", waited, self.cfg.outage_budget_s
            )
        failures = Counter(r for r in reasons if r)
        if failures:
            logger.warning("judge: %d of %d samples invalid (%s)", sum(failures.values()), len(results), dict(failures))
        return results

    async def _score_sample(
        self, req: JudgeRequest, progress: SampleProgress, encoded: dict[int, EncodedImage]
    ) -> JudgeResult:
        loop = asyncio.get_running_loop()
        try:
            calls, outcomes = await loop.run_in_executor(self._worker, self._prepare_sample, req, encoded)
        except ImageEncodeError as exc:
            logger.warning("judge: sample %r not scored: %s", req.key, exc)
            return JudgeResult.failure("image_error")
        await self._call_until_answered(calls, outcomes, progress)
        done: list[Outcome] = [o for o in outcomes if o is not None]
        tokens = {
            "prompt_tokens": sum(o.prompt_tokens for o in done if not o.cached),
            "completion_tokens": sum(o.completion_tokens for o in done if not o.cached),
            "latency_s": progress.latency_s,
            "calls": progress.calls,
            "cached": all(o.cached for o in done),
        }
        failed = next((o for o in done if o.reason is not None), None)
        if failed is not None:
            reason = failed.reason or "client_error"
            if self.cfg.outage_budget_s > 0 and any(o.reason in TRANSIENT_REASONS for o in done):
                reason = OUTAGE_REASON  # still failing transiently after the outage budget was waited out
            return JudgeResult.failure(reason, **tokens)
        scores: dict[str, float] = {}
        for o in done:
            scores.update(o.scores or {})
        return JudgeResult(scores={d: scores[d] for d in DIMENSIONS}, valid=True, **tokens)

    async def _call_until_answered(
        self, calls: list[Call], outcomes: list[Outcome | None], progress: SampleProgress
    ) -> None:
        """Make the calls the cache did not answer; calls that fail transiently (an outage) are made again after a
        backoff until they are answered or ``judge.outage_budget_s`` is spent. The encoded images and the request
        bodies are reused by every round."""

        def pending() -> list[int]:
            return [i for i, o in enumerate(outcomes) if o is None or o.reason in TRANSIENT_REASONS]

        async def round_() -> list[int]:
            todo = pending()
            fresh = await asyncio.gather(*(self._call(calls[i], progress) for i in todo))
            for i, outcome in zip(todo, fresh, strict=True):
                outcomes[i] = outcome
            return pending()

        def waited(seconds: float) -> None:
            progress.waited_s += seconds
            logger.debug("judge outage: %d call(s) failing transiently, retrying in %.1fs", len(pending()), seconds)

        def server_retry_after() -> float | None:
            values = [o.retry_after_s for o in outcomes if o is not None and o.retry_after_s is not None]
            return max(values) if values else None

        start = time.monotonic()
        first = await round_()
        if not first:  # the usual case: every call answered (or failed for good) in one round, no retry machinery
            return

        async def next_round() -> list[int]:
            nonlocal first
            if first:  # the round already made counts as tenacity's first attempt (its budget is reduced below)
                todo, first = first, []
                return todo
            return await round_()

        budget = self.cfg.outage_budget_s - (time.monotonic() - start)
        retrying = outage_retrying(budget, transient=bool, retry_after=server_retry_after, on_wait=waited)
        await retrying(next_round)

    # ---------------------------------------------------------------------------------- request building (thread)
    def _prepare_sample(
        self, req: JudgeRequest, encoded: dict[int, EncodedImage]
    ) -> tuple[list[Call], list[Outcome | None]]:
        """Encode the images once, build the calls and answer what the cache can (runs in a worker thread)."""
        images = [("source", req.source_image), ("edited", req.edited_image)]
        with_preliminary = self.cfg.judge_preliminary and req.preliminary_image is not None
        if with_preliminary:
            images.append(("preliminary", req.preliminary_image))  # type: ignore[arg-type]
        done: dict[str, EncodedImage] = {}
        for role, img in sorted(images, key=lambda item: item[0] != "edited"):  # the shared images last: by then
            try:  # the other encode thread has usually finished them, so this one does not wait for it
                done[role] = self._encode(img, encoded)
            except Exception as exc:  # a broken image fails its own sample only
                raise ImageEncodeError(f"{role} image could not be encoded ({type(exc).__name__}: {exc})") from exc
        sent = [(role, done[role]) for role, _ in images]
        dimensions: list[str | None] = list(DIMENSIONS) if self.cfg.mode == "per_dimension" else [None]
        task = str(req.metadata.get("task") or "") if self.cfg.request_style == "reference" else ""
        calls = [self._build_call(d, req.instruction, sent, with_preliminary, task) for d in dimensions]
        outcomes: list[Outcome | None] = [None] * len(calls)
        if self.cache is not None:
            for i, call in enumerate(calls):
                hit = self.cache.get(call.cache_key) if call.cache_key else None
                scores = hit.get("scores") if hit else None
                if isinstance(scores, dict):
                    outcomes[i] = Outcome(
                        scores={k: float(v) for k, v in scores.items()},
                        reason=None,
                        prompt_tokens=int(hit.get("prompt_tokens", 0)),  # type: ignore[union-attr]
                        completion_tokens=int(hit.get("completion_tokens", 0)),  # type: ignore[union-attr]
                        cached=True,
                    )
            hits = sum(o is not None for o in outcomes)
            self.stats.record_cache(hits=hits, misses=len(calls) - hits)
        return calls, outcomes

    def _encode(self, image: Image.Image, encoded: dict[int, EncodedImage]) -> EncodedImage:
        """One encoding per image object per batch (the requests hold the objects, so ``id`` is unique while the
        batch runs), and one per pixel content across batches (:class:`EncodedImageCache`): the n rollouts of a
        prompt share their source image, also when they are submitted one sample at a time."""
        key = id(image)
        if key not in encoded:
            cfg = self.cfg
            encoded[key] = self.encodings.get_or_encode(
                pixel_digest(image), lambda: encode_image(image, max_side=cfg.image_max_side, quality=cfg.jpeg_quality)
            )
        return encoded[key]

    def _system_prompt(self, dimension: str | None, with_preliminary: bool) -> str:
        key = (dimension, with_preliminary)
        if key not in self._system_prompts:
            style = {"neutral": self.cfg.neutral_score, "labelled": self.cfg.request_style == "easyr1"}
            if dimension is None:
                text = rubrics.single_call_system_prompt(with_preliminary=with_preliminary, **style)
            else:
                text = rubrics.dimension_system_prompt(dimension, with_preliminary=with_preliminary, **style)
            self._system_prompts[key] = text
        return self._system_prompts[key]

    def _build_call(
        self,
        dimension: str | None,
        instruction: str,
        images: list[tuple[str, EncodedImage]],
        with_preliminary: bool,
        task: str = "",
    ) -> Call:
        cfg = self.cfg
        system = self._system_prompt(dimension, with_preliminary)
        reference_style = cfg.request_style == "reference"
        if reference_style:  # the rubric travels in the user message, with the task description
            text = rubrics.reference_user_text(system, instruction, task)
        else:
            text = rubrics.user_text(instruction)
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        urls: list[dict[str, Any]] = []
        for index, (role, _) in enumerate(images, 1):
            if not reference_style:
                content.append({"type": "text", "text": rubrics.image_label(index, role)})
            urls.append({"url": f"{self._placeholder}{index}", "detail": cfg.image_detail})
            content.append({"type": "image_url", "image_url": urls[-1]})
        messages = [{"role": "user", "content": content}]
        if not reference_style:
            messages.insert(0, {"role": "system", "content": system})
        kwargs: dict[str, Any] = {
            "model": cfg.model,
            "messages": messages,
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_tokens,
        }
        if dimension is None:
            kwargs["response_format"] = rubrics.response_format()
        elif self._use_logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = _TOP_LOGPROBS
        cache_key = None
        if self.cache is not None:
            cache_key = content_key(
                {
                    "model": cfg.model,
                    "rubric_version": rubrics.RUBRIC_VERSION,
                    "mode": cfg.mode,
                    "dimension": dimension,
                    "system_sha256": hashlib.sha256(system.encode()).hexdigest(),
                    "instruction": instruction,
                    "images": [(role, image.sha256) for role, image in images],
                    "detail": cfg.image_detail,
                    "temperature": cfg.temperature,
                    "max_tokens": cfg.max_tokens,
                    "logprobs": self._use_logprobs,
                    **({"request": ["reference", task]} if reference_style else {}),
                }
            )
        text_chars = len(system) + len(instruction) + 40 * len(images)
        estimate = text_chars // 4 + sum(estimated_image_tokens(img, cfg.image_detail) for _, img in images)
        return Call(dimension, kwargs, cache_key, estimate + cfg.max_tokens, request_body(kwargs, urls, images))

    # ----------------------------------------------------------------------------------------- one HTTP call
    async def _call(self, call: Call, progress: SampleProgress) -> Outcome:
        assert self._client is not None and self._semaphore is not None
        async with self._semaphore:
            if self._rpm is not None:
                await self._rpm.acquire()
            if self._tpm is not None:
                await self._tpm.acquire(min(call.estimated_tokens, self._tpm.max_rate))
            start = time.monotonic()
            progress.started(start)
            try:
                # ``post`` is the SDK's documented route for a prepared body: the same retries, Retry-After
                # handling, timeouts and errors as ``chat.completions.create``, without re-walking the message tree
                # through the SDK's TypedDict transform or building pydantic models of the answer (measured: more
                # than half of the client's CPU per call). Our own idempotency key saves an os.urandom per call.
                response = await self._client.post(
                    "/chat/completions",
                    cast_to=object,  # the JSON as is
                    content=call.body,  # bytes: sent as they are (no re-serialisation per attempt)
                    options={"idempotency_key": f"{self._key_prefix}-{next(self._call_ids)}"},
                )
            except asyncio.CancelledError:
                self.stats.record_call("deadline", latency_s=time.monotonic() - start)
                raise
            except Exception as exc:
                end = time.monotonic()
                progress.ended(end, 0, 0)
                reason = classify_exception(exc)
                self.stats.record_call(reason, latency_s=end - start)
                if reason == "client_error" and not isinstance(exc, openai.APIError):
                    logger.error("judge call raised %s", type(exc).__name__, exc_info=exc)
                else:
                    logger.debug(
                        "judge call failed: %s (%s, status %s)",
                        reason,
                        type(exc).__name__,
                        getattr(exc, "status_code", None),
                    )
                return Outcome(None, reason, retry_after_s=retry_after_s(exc))
        end = time.monotonic()
        outcome = read_response(response, call.dimension, self._use_logprobs)
        progress.ended(end, outcome.prompt_tokens, outcome.completion_tokens)
        self.stats.record_call(
            outcome.reason or "ok",
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            latency_s=end - start,
        )
        if outcome.reason is None and self.cache is not None and call.cache_key:
            value = {
                "scores": outcome.scores,
                "prompt_tokens": outcome.prompt_tokens,
                "completion_tokens": outcome.completion_tokens,
            }
            await asyncio.get_running_loop().run_in_executor(self._worker, self.cache.set, call.cache_key, value)
        return outcome
