"""``telemetry``: the Prometheus exporter, image tables and the alert thresholds the exporter publishes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .base import ConfigError, check_positive, check_range


@dataclass
class PrometheusConfig:
    enabled: bool = True
    """Serve ``/metrics`` from the driver."""
    host: str = "0.0.0.0"
    """Listen address (use 127.0.0.1 for local runs that must not be reachable)."""
    port: int = 9400
    """Listen port; 0 picks a free port and logs it (the bound address is also written to
    ``<output_dir>/exporter.json``)."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_range(f"{path}.port", self.port, low=0, high=65535)


@dataclass
class AlertThresholds:
    """Published as ``easyr1_alert_threshold{alert=...}`` so the shipped Prometheus rules use each run's own
    limits (see docs/observability.md)."""

    stall_minutes: float = 30.0
    """``EasyR1NoStepCompleted`` fires when no step finished for this many minutes."""
    judge_failure_ratio: float = 0.2
    """``EasyR1JudgeFailureRatioHigh`` fires when more than this fraction of judge requests fail (10 min window)."""
    masked_fraction: float = 0.5
    """``EasyR1MaskedFractionHigh`` fires when more than this fraction of samples is masked (15 min window)."""
    reward_drop: float = 2.0
    """``EasyR1RewardCollapse`` fires when the 15-minute mean of the combined reward falls this many points
    below its 6-hour mean."""
    judge_cost_usd_per_hour: float | None = None
    """``EasyR1JudgeCostAboveBudget`` fires when the judge spends more than this per hour (``None``: no budget)."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_positive(f"{path}.stall_minutes", self.stall_minutes)
        yield from check_range(f"{path}.judge_failure_ratio", self.judge_failure_ratio, low=0.0, high=1.0)
        yield from check_range(f"{path}.masked_fraction", self.masked_fraction, low=0.0, high=1.0)
        yield from check_positive(f"{path}.reward_drop", self.reward_drop)
        yield from check_positive(f"{path}.judge_cost_usd_per_hour", self.judge_cost_usd_per_hour)


@dataclass
class TelemetryConfig:
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    """Prometheus exporter."""
    alerts: AlertThresholds = field(default_factory=AlertThresholds)
    """Alert limits published by the exporter for the shipped alert rules."""
    log_images_every: int = 1
    """Log an image table of sample edits every this many steps (wandb/TensorBoard/report)."""
    images_per_table: int = 4
    """Rows per image table."""
    console_every: int = 1
    """Print the one-line step summary every this many steps (the file/trackers get every step)."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_range(f"{path}.log_images_every", self.log_images_every, low=1)
        yield from check_range(f"{path}.images_per_table", self.images_per_table, low=0)
        yield from check_range(f"{path}.console_every", self.console_every, low=1)
