"""An OpenAI-compatible chat-completions server for tests and benchmarks (real HTTP on loopback).

It understands the judge's own requests: the dimension from the rubric title in the system prompt, ``single_call``
from ``response_format``, the instruction from the user text. Scores, latency and failures are configured with a
:class:`ServerBehaviour` (JSON-serialisable, so the same server runs in a subprocess). Failure kinds:

``ok`` · ``malformed`` (prose / broken JSON) · ``out_of_range`` (12) · ``refusal`` (the ``refusal`` field) ·
``prose_refusal`` ("I'm sorry, …") · ``content_filter`` (finish reason) · ``rate_limit`` (429 + ``Retry-After``) ·
``server_error`` (5xx) · ``bad_request`` (400) · ``unauthorized`` (401) · ``policy_violation`` (400,
``content_policy_violation``) · ``hang`` (no answer for ``hang_s``) · ``garbage_body`` (200 with HTML). Answers honour ``max_tokens`` (one token
per digit, up to four other characters per token): a longer answer is cut and ends with ``finish_reason: length``;
``Rule.finish_reason`` reports any other finish reason on a complete answer.
In a thread: ``with JudgeTestServer(ServerBehaviour(latency_s=0.2)) as server: ... server.base_url``.
In a subprocess (its own CPU and GIL): ``SubprocessJudgeServer(behaviour)``; same ``base_url``/``stats()``.
Command line: ``python -m easyr1.testing.judge_server --port 0 --latency 0.2`` prints ``LISTENING <base_url>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from easyr1.reward.judge.protocol import DIMENSIONS
from easyr1.reward.judge.rubrics import INSTRUCTION_PREFIX, TITLE_TO_DIMENSION

from .judge_server_answers import error_response, number_text, score_logprobs, texts, truncate_to_tokens

KINDS = (
    "ok",
    "malformed",
    "out_of_range",
    "refusal",
    "prose_refusal",
    "content_filter",
    "rate_limit",
    "server_error",
    "bad_request",
    "unauthorized",
    "policy_violation",
    "hang",
    "garbage_body",
)


@dataclass
class Rule:
    """Answer matching requests with ``kind``. The first rule that matches (and has ``times`` left) wins."""

    kind: str = "ok"
    match: str = ""
    """Substring of the request's instruction; empty matches every request."""
    dimension: str | None = None
    """Only requests for this dimension (``per_dimension`` mode); ``None`` = any, single_call included."""
    times: int | None = None
    """Apply to the first N matching requests only (then the next rule, or the default, answers)."""
    scores: dict[str, float] | None = None
    """Scores for ``ok`` answers of matching requests (missing dimensions use the behaviour's)."""
    retry_after: float | None = 1.0
    """``Retry-After`` seconds for ``rate_limit`` and ``server_error`` (``None``: header omitted)."""
    status: int = 500
    """HTTP status of ``server_error``."""
    latency_s: float | None = None
    """Overrides the behaviour's latency for matching requests."""
    finish_reason: str | None = None
    """Report this ``finish_reason`` on an answer (``length`` on a complete answer, ``tool_calls`` …); ``None``: the
    server's own (``stop``, ``length`` when ``max_tokens`` cut the answer, ``content_filter``)."""


@dataclass
class ServerBehaviour:
    latency_s: float = 0.0
    """Delay before every answer."""
    default_score: float = 7.0
    scores: dict[str, float] = field(default_factory=dict)
    """Per-dimension scores of ``ok`` answers (default: ``default_score``)."""
    rules: list[Rule] = field(default_factory=list)
    logprob_spread: float = 0.2
    """With ``logprobs``: probability given to score-1 and to score+1 each (integer scores only)."""
    require_api_key: str | None = None
    """Answer 401 unless the request carries ``Authorization: Bearer <this>``."""
    hang_s: float = 3600.0
    down: list[list[float]] = field(default_factory=list)
    """Scheduled outages: ``[start_s, end_s]`` windows, in seconds since this behaviour was set, during which every
    chat request is answered ``down_status`` (no Retry-After) whatever the rules say."""
    down_status: int = 503
    down_at_requests: list[list[float]] = field(default_factory=list)
    """Outages triggered by traffic: ``[n, seconds]`` — the ``n``-th chat request (counted since this behaviour
    was set) starts an outage of ``seconds`` (it and everything after it, until then, get ``down_status``)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerBehaviour:
        data = dict(data)
        data["rules"] = [Rule(**r) for r in data.get("rules", [])]
        return cls(**data)


class _JudgeApp:
    """The request handler and its counters (shared by the thread and subprocess forms)."""

    def __init__(self, behaviour: ServerBehaviour):
        self._lock = threading.Lock()
        self.behaviour = behaviour
        self.stop_event: asyncio.Event | None = None
        self.reset()

    @property
    def behaviour(self) -> ServerBehaviour:
        return self._behaviour

    @behaviour.setter
    def behaviour(self, value: ServerBehaviour) -> None:
        self._behaviour, self._epoch = value, time.monotonic()  # ``down`` windows count from here
        self._chat_requests, self._down_until = 0, 0.0

    def is_down(self, now: float) -> bool:
        with self._lock:
            self._chat_requests += 1
            for n, seconds in self._behaviour.down_at_requests:
                if int(n) == self._chat_requests:
                    self._down_until = max(self._down_until, now + seconds)
            if now < self._down_until:
                return True
        t = now - self._epoch
        return any(start <= t < end for start, end in self._behaviour.down)

    def reset(self) -> None:
        with self._lock:
            self.request_count = 0
            self.in_flight = 0
            self.max_in_flight = 0
            self.by_kind: Counter[str] = Counter()
            self.records: list[dict[str, Any]] = []
            self._rule_uses: Counter[int] = Counter()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "request_count": self.request_count,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "by_kind": dict(self.by_kind),
                "records": [dict(r) for r in self.records],
            }

    def build(self) -> web.Application:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/_stats", self.get_stats)
        app.router.add_post("/_behaviour", self.set_behaviour)
        app.router.add_post("/_reset", self.post_reset)
        return app

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "judge-test", "object": "model"}]})

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def set_behaviour(self, request: web.Request) -> web.Response:
        self.behaviour = ServerBehaviour.from_dict(await request.json())
        return web.json_response({"ok": True})

    async def post_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    def _pick_rule(self, instruction: str, dimension: str | None) -> Rule:
        with self._lock:
            for i, rule in enumerate(self.behaviour.rules):
                if rule.match and rule.match not in instruction:
                    continue
                if rule.dimension is not None and rule.dimension != dimension:
                    continue
                if rule.times is not None and self._rule_uses[i] >= rule.times:
                    continue
                self._rule_uses[i] += 1
                return rule
        return Rule()

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        arrival = time.monotonic()
        with self._lock:
            self.request_count += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.json()
            return await self._answer(request, body, arrival)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer(self, request: web.Request, body: dict[str, Any], arrival: float) -> web.StreamResponse:
        behaviour = self.behaviour
        system, user, n_images = texts(body.get("messages", []))
        single = body.get("response_format") is not None
        dimension = None if single else next((d for t, d in TITLE_TO_DIMENSION.items() if t in system), None)
        instruction = next(
            (line[len(INSTRUCTION_PREFIX) :] for line in user.splitlines() if line.startswith(INSTRUCTION_PREFIX)),
            user,
        )
        auth_ok = behaviour.require_api_key is None or (
            request.headers.get("Authorization") == f"Bearer {behaviour.require_api_key}"
        )
        if self.is_down(arrival):
            with self._lock:
                self.by_kind["down"] += 1
            return error_response(behaviour.down_status, "The server is down for maintenance", None, {})
        rule = self._pick_rule(instruction, dimension) if auth_ok else Rule(kind="unauthorized")
        with self._lock:
            self.by_kind[rule.kind] += 1
            self.records.append(
                {
                    "t": arrival,
                    "instruction": instruction,
                    "dimension": dimension,
                    "mode": "single_call" if single else "per_dimension",
                    "kind": rule.kind,
                    "n_images": n_images,
                    "has_authorization": "Authorization" in request.headers,
                    "headers": sorted(request.headers),
                    "logprobs": bool(body.get("logprobs")),
                    "max_tokens": body.get("max_tokens"),
                }
            )
        delay = rule.latency_s if rule.latency_s is not None else behaviour.latency_s
        if rule.kind == "hang":
            delay = behaviour.hang_s
        if delay > 0:
            assert self.stop_event is not None
            try:
                await asyncio.wait_for(self.stop_event.wait(), timeout=delay)
                return web.Response(status=503, text="server stopping")
            except asyncio.TimeoutError:
                pass
        prompt_tokens = (len(system) + len(user)) // 4 + 85 * n_images
        return self._respond(rule, body, dimension, prompt_tokens)

    def _respond(self, rule: Rule, body: dict[str, Any], dimension: str | None, prompt_tokens: int) -> web.Response:
        kind = rule.kind
        if kind == "rate_limit":
            headers = {} if rule.retry_after is None else {"Retry-After": f"{rule.retry_after:g}"}
            return error_response(429, "Rate limit reached", "rate_limit_exceeded", headers)
        if kind == "server_error":
            headers = {} if rule.retry_after is None else {"Retry-After": f"{rule.retry_after:g}"}
            return error_response(rule.status, "The server had an error", None, headers)
        if kind == "bad_request":
            return error_response(400, "Invalid request", "invalid_request")
        if kind == "unauthorized":
            return error_response(401, "Incorrect API key provided", "invalid_api_key")
        if kind == "policy_violation":
            return error_response(400, "Your request was rejected by the safety system", "content_policy_violation")
        if kind == "garbage_body":
            return web.Response(status=200, text="<html>proxy error</html>", content_type="text/html")
        scores = {d: self.behaviour.scores.get(d, self.behaviour.default_score) for d in DIMENSIONS}
        scores.update(rule.scores or {})
        if kind == "out_of_range":
            scores = {d: 12.0 for d in DIMENSIONS}
        single = dimension is None
        content: str | None
        refusal, finish, logprobs = None, "stop", None
        if kind == "refusal":
            content, refusal = None, "I can't help with that request."
        elif kind == "prose_refusal":
            content = "I'm sorry, but I can't help with that."
        elif kind == "content_filter":
            content, finish = None, "content_filter"
        elif kind == "malformed":
            content = '{"physical_geometric": {"reason": "fine", "score": 7' if single else "Looks fine, maybe 7."
        elif single:
            content = json.dumps({d: {"reason": "Consistent with the scene.", "score": scores[d]} for d in DIMENSIONS})
        else:
            score = scores.get(dimension or "", self.behaviour.default_score)
            content = number_text(score)
            if body.get("logprobs") and float(score).is_integer():
                logprobs = score_logprobs(int(score), self.behaviour.logprob_spread)
        if content is not None:  # honour max_tokens like a real server: cut the answer, finish_reason "length"
            content, cut, completion_tokens = truncate_to_tokens(content, body.get("max_tokens"))
            finish = "length" if cut else finish
            if cut and logprobs is not None:
                logprobs = {"content": logprobs["content"][: body["max_tokens"]]}
        else:
            completion_tokens = max(1, len(refusal or "") // 4)
        if rule.finish_reason is not None:
            finish = rule.finish_reason
        return web.json_response(
            {
                "id": f"chatcmpl-test-{self.request_count}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "judge-test"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": refusal},
                        "finish_reason": finish,
                        "logprobs": logprobs,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )


class JudgeTestServer:
    """The server on a daemon thread of this process. ``start()``/``stop()`` or use it as a context manager."""

    def __init__(self, behaviour: ServerBehaviour | None = None, *, host: str = "127.0.0.1", port: int = 0):
        self.app = _JudgeApp(behaviour or ServerBehaviour())
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def behaviour(self) -> ServerBehaviour:
        return self.app.behaviour

    @behaviour.setter
    def behaviour(self, value: ServerBehaviour) -> None:
        self.app.behaviour = value

    @property
    def request_count(self) -> int:
        return self.app.request_count

    @property
    def max_in_flight(self) -> int:
        return self.app.max_in_flight

    def stats(self) -> dict[str, Any]:
        return self.app.stats()

    def reset(self) -> None:
        self.app.reset()

    def start(self) -> JudgeTestServer:
        ready = threading.Event()
        errors: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                runner = loop.run_until_complete(self._start_site())
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="judge-test-server", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            raise errors[0]
        return self

    async def _start_site(self) -> web.AppRunner:
        self.app.stop_event = asyncio.Event()
        runner = web.AppRunner(self.app.build(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = runner.addresses[0][1]
        return runner

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self.app.stop_event is not None:
            loop.call_soon_threadsafe(self.app.stop_event.set)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = None

    def __enter__(self) -> JudgeTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SubprocessJudgeServer:
    """The same server in a child process (for benchmarks: the server does not share the client's GIL)."""

    def __init__(self, behaviour: ServerBehaviour | None = None, *, host: str = "127.0.0.1"):
        self._behaviour = behaviour or ServerBehaviour()
        self.host = host
        self.base_url = ""
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> SubprocessJudgeServer:
        cmd = [sys.executable, "-m", __name__, "--host", self.host, "--port", "0"]
        cmd += ["--behaviour", self._behaviour.to_json()]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"test server did not start (said {line!r})")
        self.base_url = line.split(" ", 1)[1]
        return self

    def _control(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        root = self.base_url.rsplit("/v1", 1)[0]
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(root + path, data=data, headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never via a proxy
        with opener.open(req, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        return self._control("/_stats")

    def reset(self) -> None:
        self._control("/_reset", {})

    def set_behaviour(self, behaviour: ServerBehaviour) -> None:
        self._behaviour = behaviour
        self._control("/_behaviour", asdict(behaviour))

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs (benchmarks count its CPU time)."""
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def __enter__(self) -> SubprocessJudgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _serve_forever(app: _JudgeApp, host: str, port: int) -> None:
    app.stop_event = asyncio.Event()
    runner = web.AppRunner(app.build(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    sys.stdout.write(f"LISTENING http://{host}:{bound}/v1\n")  # the handshake a parent process waits for
    sys.stdout.flush()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    app.stop_event.set()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OpenAI-compatible judge test server (loopback only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=None, help="seconds per answer")
    parser.add_argument("--behaviour", default=None, help="ServerBehaviour as JSON")
    args = parser.parse_args(argv)
    behaviour = ServerBehaviour.from_dict(json.loads(args.behaviour)) if args.behaviour else ServerBehaviour()
    if args.latency is not None:
        behaviour.latency_s = args.latency
    asyncio.run(_serve_forever(_JudgeApp(behaviour), args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
