"""``telemetry``: the Prometheus exporter and tracker options."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .base import ConfigError, check_range


@dataclass
class PrometheusConfig:
    enabled: bool = True
    """Serve ``/metrics`` from the driver."""
    host: str = "0.0.0.0"
    """Listen address (use 127.0.0.1 for local runs that must not be reachable)."""
    port: int = 9400
    """Listen port; 0 picks a free port and logs it."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_range(f"{path}.port", self.port, low=0, high=65535)


@dataclass
class TelemetryConfig:
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    """Prometheus exporter."""
    log_images_every: int = 1
    """Log an image table of sample edits every this many steps (wandb/TensorBoard/report)."""
    images_per_table: int = 4
    """Rows per image table."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_range(f"{path}.log_images_every", self.log_images_every, low=1)
        yield from check_range(f"{path}.images_per_table", self.images_per_table, low=0)
