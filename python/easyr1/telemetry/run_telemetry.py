"""The single front door of the driver to every metrics sink: :class:`Telemetry`."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from easyr1.config import EasyR1Config, config_to_dict

from .exporter import PrometheusExporter
from .loggers import ConsoleLogger, JsonlLogger, TensorBoardLogger
from .samples import SampleRow, write_report

logger = logging.getLogger(__name__)

EXPORTER_FILE = "exporter.json"
"""Written to the run folder while the exporter serves: host, port, url, pid."""


class _StepSink(Protocol):
    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class Telemetry:
    """Console line, ``metrics.jsonl``, wandb, TensorBoard and the Prometheus exporter of one run.

    Which loggers run is ``cfg.trainer.logger`` (console, file, wandb, tensorboard); the exporter runs when
    ``cfg.telemetry.prometheus.enabled``. Use as a context manager or call :meth:`close`.

    * :meth:`log_step` once per step with the metrics dict (key convention: :mod:`easyr1.telemetry.keys`);
    * :meth:`log_samples` with sample rows when :meth:`should_log_samples` says so;
    * :meth:`observe` (or the ``observe_*`` helpers) for per-item histograms: per-sample rewards, judge and
      editor latencies.
    """

    def __init__(self, cfg: EasyR1Config, run_dir: str | Path, *, revision: str | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tcfg = cfg.telemetry
        loggers = set(cfg.trainer.logger)
        self._sinks: list[_StepSink] = []
        self.console: ConsoleLogger | None = None
        self.jsonl: JsonlLogger | None = None
        self.tensorboard: TensorBoardLogger | None = None
        self.wandb: Any = None
        self.exporter: PrometheusExporter | None = None
        self._closed = False
        try:
            if "console" in loggers:
                self.console = ConsoleLogger(every=tcfg.console_every)
                self._sinks.append(self.console)
            if "file" in loggers:
                self.jsonl = JsonlLogger(self.run_dir / "metrics.jsonl")
                self._sinks.append(self.jsonl)
            if "tensorboard" in loggers:
                self.tensorboard = TensorBoardLogger(self.run_dir / "tensorboard")
                self._sinks.append(self.tensorboard)
            if "wandb" in loggers and cfg.trainer.wandb_mode != "disabled":
                from .wandb_logger import WandbLogger

                self.wandb = WandbLogger(
                    run_dir=self.run_dir,
                    project=cfg.trainer.project_name,
                    name=cfg.trainer.experiment_name,
                    config=config_to_dict(cfg, redact=True),
                    mode=cfg.trainer.wandb_mode,
                )
                self._sinks.append(self.wandb)
            if tcfg.prometheus.enabled:
                self.exporter = PrometheusExporter(cfg, revision=revision)
                self.exporter.start(tcfg.prometheus.host, tcfg.prometheus.port)
                self._write_exporter_file()
        except BaseException:
            self.close()
            raise

    # -- properties ----------------------------------------------------------------------------------------------
    @property
    def exporter_port(self) -> int | None:
        """The bound port of the exporter (``None`` when it is off)."""
        return None if self.exporter is None else self.exporter.port

    @property
    def exporter_url(self) -> str | None:
        """``http://<host>:<port>/metrics`` (a wildcard listen address is written as 127.0.0.1)."""
        if self.exporter is None or self.exporter.port is None:
            return None
        host = self.exporter.host or "127.0.0.1"
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.exporter.port}/metrics"

    # -- logging -------------------------------------------------------------------------------------------------
    def log_step(self, step: int, metrics: Mapping[str, float]) -> None:
        """Send one step's metrics to every sink (console every ``telemetry.console_every`` steps).

        A dict whose keys all start with ``val/`` (a validation pass) reaches the console, file and trackers but
        does not count as a completed training step for the exporter.
        """
        metrics = dict(metrics)
        for sink in self._sinks:
            sink.log_metrics(step, metrics)
        keys = [k for k in metrics if k != "step"]
        validation_only = bool(keys) and all(k.startswith("val/") for k in keys)
        if self.exporter is not None and not validation_only:
            self.exporter.update(step, metrics)

    def should_log_samples(self, step: int) -> bool:
        """Whether :meth:`log_samples` will record anything at ``step`` (build rows only then)."""
        t = self.cfg.telemetry
        return t.images_per_table > 0 and step % t.log_images_every == 0

    def log_samples(self, step: int, rows: Sequence[SampleRow | Mapping[str, Any]], *, prefix: str = "") -> Path | None:
        """Record sample rows: the PNG grid + HTML page under ``run_dir/samples/step_<step>/``, a wandb table
        (key ``samples``) and TensorBoard images (tags ``samples/<i>``).

        Training tables (no ``prefix``) follow ``telemetry.log_images_every`` and keep the first
        ``telemetry.images_per_table`` rows. With a ``prefix`` (e.g. ``"val"``) every given row is recorded at once,
        under ``run_dir/samples/<prefix>/``, wandb key and TensorBoard tag ``<prefix>/samples``. Returns the HTML
        page, or ``None`` when nothing was recorded.
        """
        if prefix:
            chosen = [SampleRow.coerce(r) for r in rows]
            folder, key = self.run_dir / "samples" / prefix, f"{prefix}/samples"
        else:
            if not self.should_log_samples(step):
                return None
            chosen = [SampleRow.coerce(r) for r in rows[: self.cfg.telemetry.images_per_table]]
            folder, key = self.run_dir / "samples", "samples"
        if not chosen:
            return None
        page = write_report(step, chosen, folder, title=key.replace("/", " "))
        if self.tensorboard is not None:
            self.tensorboard.log_samples(step, chosen, tag=key)
        if self.wandb is not None:
            self.wandb.log_samples(step, chosen, key=key)
        return page

    # -- histograms ----------------------------------------------------------------------------------------------
    def observe(self, histogram: str, values: float | Iterable[float], **labels: str) -> None:
        """Observe values in an exporter histogram (``stage_duration`` with ``stage=``, ``judge_latency``,
        ``edit_latency``, ``reward`` with ``dimension=``); a no-op without the exporter."""
        if self.exporter is not None:
            self.exporter.observe(histogram, values, **labels)

    def observe_rewards(self, values: Mapping[str, Iterable[float]]) -> None:
        """Per-sample rewards of the valid samples of a step: ``{"overall": [...], "format": [...], <dim>: [...]}``."""
        for dimension, dimension_values in values.items():
            self.observe("reward", dimension_values, dimension=dimension)

    def observe_judge_latency(self, seconds: float | Iterable[float]) -> None:
        """Latency of each judged sample (``JudgeResult.latency_s``, cache hits excluded)."""
        self.observe("judge_latency", seconds)

    def observe_edit_latency(self, seconds: float | Iterable[float]) -> None:
        """Latency of each re-edit (``EditResult.latency_s``)."""
        self.observe("edit_latency", seconds)

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush and close every sink and stop the exporter (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for sink in reversed(self._sinks):
            try:
                sink.close()
            except Exception:
                logger.exception("closing %s failed", type(sink).__name__)
        if self.exporter is not None:
            self.exporter.stop()
            (self.run_dir / EXPORTER_FILE).unlink(missing_ok=True)

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_exporter_file(self) -> None:
        assert self.exporter is not None
        info = {
            "host": self.exporter.host,
            "port": self.exporter.port,
            "url": self.exporter_url,
            "pid": os.getpid(),
        }
        (self.run_dir / EXPORTER_FILE).write_text(json.dumps(info) + "\n")
