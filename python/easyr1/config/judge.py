"""``judge``: the multimodal judge that scores the five consistency dimensions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..core.registries import JUDGE_BACKENDS
from .base import ConfigError, check_choice, check_non_negative, check_positive, check_range


@dataclass
class JudgeConfig:
    backend: str = "openai"
    """``openai`` (any OpenAI-compatible endpoint: GPT-4o, a vLLM-served model) or ``sandbox``."""
    model: str = "gpt-4o"
    """Judge model name."""
    base_url: str = "https://api.openai.com/v1"
    """OpenAI-compatible base URL."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (never put the key itself in a config file)."""
    api_key_file: str | None = None
    """A file holding the API key (a mounted Kubernetes secret); takes precedence over ``api_key_env``."""
    mode: str = "single_call"
    """``per_dimension`` (five calls per sample, one rubric each) or ``single_call`` (one call, JSON schema)."""
    temperature: float = 0.0
    """Sampling temperature of the judge."""
    max_tokens: int = 400
    """Completion token limit per call."""
    use_logprobs: bool = False
    """Expected score from ``top_logprobs`` (per_dimension mode) instead of the sampled number."""
    image_max_side: int = 512
    """Images are sent as JPEG with the long side at most this."""
    image_detail: str = "low"
    """OpenAI image ``detail``: low, high or auto."""
    jpeg_quality: int = 90
    """JPEG quality of the images sent."""
    max_concurrency: int = 32
    """Concurrent requests in flight."""
    requests_per_minute: float | None = None
    """Rate limit; ``None`` = unlimited."""
    tokens_per_minute: float | None = None
    """Token rate limit (estimated before the call); ``None`` = unlimited."""
    max_retries: int = 3
    """Retries of connection errors, 408/409/429/5xx (honouring Retry-After); never 400/401/403/404."""
    timeout_s: float = 60.0
    """Per-request timeout."""
    batch_deadline_s: float = 600.0
    """Deadline for a whole batch; unfinished samples end as ``deadline``. A batch that waits out an outage
    (``outage_budget_s``) gets that budget on top."""
    outage_budget_s: float = 600.0
    """Seconds (per batch) a judge outage is waited out: calls that still fail with a transient error after the
    SDK's ``max_retries`` (``server_error``: 5xx or unreachable, ``rate_limited``, ``timeout``) are sent again after
    a capped exponential backoff with jitter (1 s doubling to 60 s, longer when the server's ``Retry-After`` says
    so) until they succeed or the next wait would pass this budget; then the sample is masked as ``outage``. The
    time is published as ``judge/waiting_s`` (``easyr1_judge_waiting_seconds_total``). 0 disables the waiting (a
    transient failure is final at once, with its own reason)."""
    cache_dir: str | None = None
    """On-disk cache of judge answers (only used for deterministic settings); ``None`` disables."""
    price_per_1k_prompt_tokens: float = 0.0025
    """USD per 1k prompt tokens (cost accounting)."""
    price_per_1k_completion_tokens: float = 0.01
    """USD per 1k completion tokens."""
    judge_preliminary: bool = False
    """Also send the preliminary image to the judge (three images)."""
    request_style: str = "easyr1"
    """``easyr1`` (rubric as the system message, labelled images) or ``reference`` (the reference
    implementation's layout: one user message with the rubric, ``Image editing task: <task>`` when the row has a
    task, the instruction, then the images unlabelled; no system message)."""
    neutral_score: float = 5.0
    """The score the rubrics tell the judge to start from and keep when an aspect is untouched. 5 is what
    ``max_deviation`` measures the deviation from; the reference's rubrics said 2.0."""
    http_client: str = "aiohttp"
    """HTTP transport of the OpenAI SDK: ``aiohttp`` (about half the CPU per call at high concurrency) or
    ``httpx`` (the SDK's default). Both take proxies from the standard environment variables only."""
    event_loop: str = "uvloop"
    """Event loop of the judge's own thread, the one that makes the HTTP calls: ``uvloop`` (libuv; ~4 % less CPU
    per call on that thread, measured in issue 21; falls back to ``asyncio`` with a warning when the ``uvloop``
    package is not installed, e.g. on Windows) or ``asyncio`` (the standard library's loop)."""
    alert_retry_ratio: float = 0.5
    """``EasyR1JudgeRetryRateHigh`` fires when the judge's HTTP retries (429, 5xx, timeouts, dropped connections
    retried by the SDK) exceed this many per judge request over 10 minutes: the endpoint is degrading before calls
    fail. Published as ``easyr1_alert_threshold{alert="judge_retry_ratio"}``."""
    alert_waiting_fraction: float = 0.05
    """``EasyR1WaitingForJudge`` fires when the run spends more than this share of its wall time waiting out judge
    outages (``easyr1_judge_waiting_seconds_total``, 5-minute rate, for 2 minutes). Published as
    ``easyr1_alert_threshold{alert="judge_waiting_fraction"}``."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_choice(f"{path}.backend", self.backend, JUDGE_BACKENDS.names())
        yield from check_choice(f"{path}.mode", self.mode, ["per_dimension", "single_call"])
        yield from check_range(f"{path}.temperature", self.temperature, low=0.0, high=2.0)
        yield from check_positive(f"{path}.max_tokens", self.max_tokens)
        yield from check_range(f"{path}.image_max_side", self.image_max_side, low=32)
        yield from check_choice(f"{path}.image_detail", self.image_detail, ["low", "high", "auto"])
        yield from check_choice(f"{path}.http_client", self.http_client, ["aiohttp", "httpx"])
        yield from check_choice(f"{path}.event_loop", self.event_loop, ["uvloop", "asyncio"])
        yield from check_choice(f"{path}.request_style", self.request_style, ["easyr1", "reference"])
        yield from check_range(f"{path}.neutral_score", self.neutral_score, low=0.0, high=10.0)
        yield from check_range(f"{path}.jpeg_quality", self.jpeg_quality, low=1, high=100)
        yield from check_positive(f"{path}.max_concurrency", self.max_concurrency)
        yield from check_positive(f"{path}.requests_per_minute", self.requests_per_minute)
        yield from check_positive(f"{path}.tokens_per_minute", self.tokens_per_minute)
        yield from check_non_negative(f"{path}.max_retries", self.max_retries)
        yield from check_positive(f"{path}.timeout_s", self.timeout_s)
        yield from check_positive(f"{path}.batch_deadline_s", self.batch_deadline_s)
        yield from check_non_negative(f"{path}.outage_budget_s", self.outage_budget_s)
        yield from check_non_negative(f"{path}.price_per_1k_prompt_tokens", self.price_per_1k_prompt_tokens)
        yield from check_non_negative(f"{path}.price_per_1k_completion_tokens", self.price_per_1k_completion_tokens)
        if (
            self.backend in JUDGE_BACKENDS.names()
            and JUDGE_BACKENDS.facts(self.backend).remote
            and not self.base_url.startswith(("http://", "https://"))
        ):
            yield ConfigError(f"{path}.base_url", self.base_url, "must be an http(s) URL")
