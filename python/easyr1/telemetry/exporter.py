"""The Prometheus exporter of the driver: ``easyr1_*`` series on ``telemetry.prometheus.host:port``.

One :class:`PrometheusExporter` owns a private registry (so several can live in one test process) with the
driver's process metrics, a run-info metric, pool sizes, alert thresholds and the training series mapped from
the per-step metrics dict (see :mod:`easyr1.telemetry.keys`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily

from easyr1.config import EasyR1Config

from .keys import (
    BUSY_PREFIX,
    COUNTER_KEYS,
    GAUGE_KEYS,
    MAX_LABEL_VALUES,
    REWARD_KEYS,
    STAGES,
    label_value,
    reward_key,
    timing_key,
)
from .run_info import run_info_labels

logger = logging.getLogger(__name__)

STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
JUDGE_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 120)
EDIT_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
REWARD_BUCKETS = (-10, -5, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)

HISTOGRAMS = ("stage_duration", "judge_latency", "edit_latency", "reward")
"""Names accepted by :meth:`PrometheusExporter.observe`."""

# Created-timestamp series double the series count and Prometheus 2.x ingests them as plain gauges.
prometheus_client.disable_created_metrics()


class _LabelGuard:
    """Bounds the distinct values of a free-form label so a buggy caller cannot explode the series count."""

    def __init__(self, name: str, limit: int = MAX_LABEL_VALUES):
        self.name = name
        self.limit = limit
        self.seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, raw: str) -> str:
        value = label_value(raw)
        with self._lock:
            if value in self.seen:
                return value
            if len(self.seen) >= self.limit - 1:
                logger.warning("label %s: more than %d values; %r is counted as 'other'", self.name, self.limit, raw)
                self.seen.add("other")
                return "other"
            self.seen.add(value)
            return value


class PrometheusExporter:
    """Prometheus series of one training run, plus the HTTP server that publishes them.

    ``update(step, metrics)`` maps a step's metrics dict; ``observe(name, values, **labels)`` feeds the
    per-item histograms; ``start()`` serves ``/metrics``; ``stop()`` shuts the server down.
    """

    def __init__(self, cfg: EasyR1Config, *, revision: str | None = None):
        self.cfg = cfg
        self.registry = CollectorRegistry(auto_describe=True)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.host: str | None = None
        self.port: int | None = None
        r = self.registry
        prometheus_client.ProcessCollector(registry=r)
        prometheus_client.PlatformCollector(registry=r)
        prometheus_client.GCCollector(registry=r)

        self.run_info = Info(
            "easyr1_run", "Constant labels describing the run (model, strategy, revision).", registry=r
        )
        self.run_info.info(run_info_labels(cfg, revision=revision))
        r.register(_ConfigCollector(cfg))

        self.last_values = _LastValues()
        r.register(self.last_values)
        self.steps = Counter("easyr1_steps", "Steps logged by this process.", registry=r)
        self.last_step_ts = Gauge(
            "easyr1_last_step_timestamp_seconds",
            "Wall-clock time of the last logged step (the exporter's start time before the first step).",
            registry=r,
        )
        self.last_step_ts.set(time.time())

        self.reward_mean = Gauge(
            "easyr1_reward_mean",
            "Step mean of the combined reward (overall), a judge dimension (0-10) or the format score (0-5).",
            ["dimension"],
            registry=r,
        )
        self.sample_reward = Histogram(
            "easyr1_sample_reward",
            "Per-sample reward values (valid samples only) by dimension.",
            ["dimension"],
            buckets=REWARD_BUCKETS,
            registry=r,
        )
        self.samples_total = Counter("easyr1_samples", "Samples generated (all statuses).", registry=r)
        self.samples_valid = Counter(
            "easyr1_samples_valid", "Samples that reached the update (not masked).", registry=r
        )
        self.samples_masked = Counter(
            "easyr1_samples_masked", "Samples masked out of the update, by reason.", ["reason"], registry=r
        )
        self.stage_duration = Histogram(
            "easyr1_stage_duration_seconds",
            "Duration of each stage of a training step (stage=step is the whole step).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.stage_last = Gauge(
            "easyr1_stage_last_duration_seconds", "Duration of each stage in the last step.", ["stage"], registry=r
        )
        self.judge_requests = Counter(
            "easyr1_judge_requests",
            "Judge requests by outcome (ok, cached or a failure reason).",
            ["outcome"],
            registry=r,
        )
        self.judge_retries = Counter(
            "easyr1_judge_retries",
            "HTTP retries of judge calls by cause (http_<status>, timeout, connection_error), final outcome aside.",
            ["reason"],
            registry=r,
        )
        self.judge_latency = Histogram(
            "easyr1_judge_latency_seconds", "Latency of one judged sample.", buckets=JUDGE_LATENCY_BUCKETS, registry=r
        )
        self.judge_prompt_tokens = Counter("easyr1_judge_prompt_tokens", "Judge prompt tokens.", registry=r)
        self.judge_completion_tokens = Counter("easyr1_judge_completion_tokens", "Judge completion tokens.", registry=r)
        self.judge_cost = Counter("easyr1_judge_cost_usd", "Judge spend in US dollars.", registry=r)
        self.judge_cache_hits = Counter("easyr1_judge_cache_hits", "Judge answers served from the cache.", registry=r)
        self.judge_cache_misses = Counter("easyr1_judge_cache_misses", "Judge cache lookups that missed.", registry=r)
        self.judge_waiting = Counter(
            "easyr1_judge_waiting_seconds",
            "Seconds the training waited for the judge to come back from an outage (judge.outage_budget_s).",
            registry=r,
        )
        self.pool_busy = Gauge(
            "easyr1_pool_busy_ratio",
            "Share of the last step's wall time in which the pool worked (union of its stage spans / step wall).",
            ["pool"],
            registry=r,
        )
        self.edit_latency = Histogram(
            "easyr1_edit_latency_seconds", "Latency of one re-edit by the editor pool.", buckets=EDIT_LATENCY_BUCKETS,
            registry=r,
        )  # fmt: skip
        self._reasons = _LabelGuard("reason")
        self._outcomes = _LabelGuard("outcome")
        self._retry_causes = _LabelGuard("reason")
        self._pools = _LabelGuard("pool")
        self._stages_observed: set[str] = set()
        # Pre-create the fixed label values so dashboards show zeros rather than gaps.
        for dim in REWARD_KEYS:
            self.sample_reward.labels(dimension=dim)
        for stage in STAGES:
            self.stage_duration.labels(stage=stage)
        for outcome in ("ok",):
            self.judge_requests.labels(outcome=self._outcomes(outcome))

    # -- the per-step metrics dict -------------------------------------------------------------------------------
    def update(self, step: int, metrics: Mapping[str, float]) -> None:
        """Map one step's metrics dict onto the series (unknown keys are ignored here)."""
        self.steps.inc()
        for dim in REWARD_KEYS:
            value = _number(metrics.get(reward_key(dim)))
            if value is not None:
                self.reward_mean.labels(dimension=dim).set(value)
        for stage in STAGES:
            value = _number(metrics.get(timing_key(stage)))
            if value is not None and value >= 0:
                if stage not in self._stages_observed:
                    self.stage_duration.labels(stage=stage).observe(value)
                self.stage_last.labels(stage=stage).set(value)
        self._stages_observed.clear()
        for key in GAUGE_KEYS:
            value = _number(metrics.get(key))
            if value is not None:
                self.last_values.set(key, value)
        self.last_values.set("step", step)
        for key, attr in COUNTER_KEYS.items():
            _add(getattr(self, attr), metrics.get(key), key)
        for key, raw in metrics.items():
            if key.startswith("samples/masked/"):
                _add(self.samples_masked.labels(reason=self._reasons(key[len("samples/masked/") :])), raw, key)
            elif key.startswith("judge/requests/"):
                _add(self.judge_requests.labels(outcome=self._outcomes(key[len("judge/requests/") :])), raw, key)
            elif key.startswith(BUSY_PREFIX) and (busy := _number(raw)) is not None:
                self.pool_busy.labels(pool=self._pools(key[len(BUSY_PREFIX) :])).set(busy)
            elif key.startswith("judge/retries/"):
                _add(self.judge_retries.labels(reason=self._retry_causes(key[len("judge/retries/") :])), raw, key)
        self.last_step_ts.set(time.time())

    # -- per-item histograms -------------------------------------------------------------------------------------
    def observe(self, name: str, values: float | Iterable[float], **labels: str) -> None:
        """Add observations to a histogram: ``stage_duration`` (label ``stage``), ``judge_latency``,
        ``edit_latency`` or ``reward`` (label ``dimension``: overall, format or one of the five dimensions).

        Stage durations normally arrive as ``timing/<stage>_s`` in :meth:`update`; a stage observed here since
        the last update is not observed again from the metrics dict (only its last-duration gauge is set).
        """
        if name == "stage_duration":
            stage = labels.pop("stage", None)
            if stage not in STAGES:
                raise ValueError(f"observe('stage_duration'): stage must be one of {STAGES}, got {stage!r}")
            metric = self.stage_duration.labels(stage=stage)
            self._stages_observed.add(stage)
        elif name == "reward":
            dimension = labels.pop("dimension", None)
            if dimension not in REWARD_KEYS:
                raise ValueError(f"observe('reward'): dimension must be one of {REWARD_KEYS}, got {dimension!r}")
            metric = self.sample_reward.labels(dimension=dimension)
        elif name == "judge_latency":
            metric = self.judge_latency
        elif name == "edit_latency":
            metric = self.edit_latency
        else:
            raise ValueError(f"unknown histogram {name!r}; known: {HISTOGRAMS}")
        if labels:
            raise ValueError(f"observe({name!r}): unexpected labels {sorted(labels)}")
        for value in [values] if isinstance(values, (int, float)) else values:
            number = _number(value)
            if number is not None:
                metric.observe(number)

    # -- the HTTP server -----------------------------------------------------------------------------------------
    def start(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` (port 0 picks a free port); returns the bound port."""
        if self._server is not None:
            raise RuntimeError("the exporter is already serving")
        try:
            self._server, self._thread = prometheus_client.start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"telemetry.prometheus: cannot listen on {host}:{port} ({exc.strerror or exc}); choose another "
                "telemetry.prometheus.port, or 0 for a free one",
            ) from exc
        self.host = host
        self.port = int(self._server.server_port)
        logger.info("Prometheus exporter serving http://%s:%d/metrics", host, self.port)
        return self.port

    def stop(self) -> None:
        """Shut the HTTP server down (idempotent)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def render(self) -> bytes:
        """The exposition text, exactly as served on ``/metrics``."""
        return prometheus_client.generate_latest(self.registry)


class _LastValues:
    """Gauges that only appear once the driver reported them (a 0 before the first update would be a made-up
    value on the dashboards)."""

    def __init__(self) -> None:
        self._values: dict[str, float] = {}
        self._lock = threading.Lock()

    def set(self, key: str, value: float) -> None:
        with self._lock:
            self._values[key] = float(value)

    def get(self, key: str) -> float | None:
        with self._lock:
            return self._values.get(key)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        with self._lock:
            values = dict(self._values)
        for key, (name, documentation) in GAUGE_KEYS.items():
            if key in values:
                yield GaugeMetricFamily(name, documentation, value=values[key])

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [GaugeMetricFamily(name, documentation) for name, documentation in GAUGE_KEYS.values()]


class _ConfigCollector:
    """Constant series from the config: pool sizes and alert thresholds (read by dashboards and alert rules)."""

    def __init__(self, cfg: EasyR1Config):
        w, c = cfg.worker, cfg.cluster
        self.workers = {
            "actor": (w.actor.num_workers, c.actor.num_gpus_per_worker),
            "rollout": (w.rollout.num_engines, c.rollout.num_gpus_per_worker),
            "editor": (w.image_edit.num_replicas, c.editor.num_gpus_per_worker),
        }
        a = cfg.telemetry.alerts
        self.thresholds = {
            "stall_minutes": a.stall_minutes,
            "judge_failure_ratio": a.judge_failure_ratio,
            "masked_fraction": a.masked_fraction,
            "reward_drop": a.reward_drop,
            "judge_cost_usd_per_hour": math.inf if a.judge_cost_usd_per_hour is None else a.judge_cost_usd_per_hour,
            "judge_retry_ratio": cfg.judge.alert_retry_ratio,
            "judge_waiting_fraction": cfg.judge.alert_waiting_fraction,
        }

    def collect(self) -> Iterable[GaugeMetricFamily]:
        workers = GaugeMetricFamily("easyr1_pool_workers", "Configured workers (Ray actors) per pool.", labels=["pool"])
        gpus = GaugeMetricFamily("easyr1_pool_gpus", "Configured GPUs per pool (0 on CPU).", labels=["pool"])
        for pool, (count, gpus_per_worker) in self.workers.items():
            workers.add_metric([pool], count)
            gpus.add_metric([pool], count * gpus_per_worker)
        thresholds = GaugeMetricFamily(
            "easyr1_alert_threshold",
            "Alert limits from telemetry.alerts (+Inf: no limit), read by the shipped alert rules.",
            labels=["alert"],
        )
        for alert, value in self.thresholds.items():
            thresholds.add_metric([alert], value)
        return [workers, gpus, thresholds]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _add(counter: Counter, raw: object, key: str) -> None:
    value = _number(raw)
    if value is None:
        return
    if value < 0 or math.isinf(value):
        logger.warning("metric %s=%r is not a per-step amount ≥ 0; not added to its counter", key, raw)
        return
    counter.inc(value)
