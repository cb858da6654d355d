"""Telemetry of a training run: the Prometheus exporter, console/file/wandb/TensorBoard loggers, sample reports.

The driver talks to :class:`Telemetry` only::

    with Telemetry(cfg, run_dir) as telemetry:
        telemetry.log_step(step, metrics)          # key convention: easyr1.telemetry.keys
        telemetry.observe_rewards({"overall": rewards, ...})
        if telemetry.should_log_samples(step):
            telemetry.log_samples(step, rows)      # SampleRow or mappings with the same keys

Grafana dashboards are built by :mod:`easyr1.telemetry.dashboards`; docs/observability.md lists every series.
"""

from .exporter import PrometheusExporter
from .keys import DIMENSIONS, REWARD_KEYS, SERIES, STAGES
from .loggers import format_step_line
from .run_info import git_revision, run_info_labels
from .run_telemetry import EXPORTER_FILE, Telemetry
from .samples import SampleRow
from .wandb_logger import resolve_wandb_mode

__all__ = [
    "DIMENSIONS",
    "EXPORTER_FILE",
    "REWARD_KEYS",
    "SERIES",
    "STAGES",
    "PrometheusExporter",
    "SampleRow",
    "Telemetry",
    "format_step_line",
    "git_revision",
    "resolve_wandb_mode",
    "run_info_labels",
]
