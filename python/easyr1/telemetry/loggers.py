"""Per-step loggers: the console line, ``metrics.jsonl`` and TensorBoard (wandb lives in :mod:`.wandb_logger`)."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from easyr1.config import DIMENSIONS

from .keys import STAGES, timing_key
from .samples import SampleRow, row_strip

logger = logging.getLogger(__name__)
console_logger = logging.getLogger("easyr1.train")


def format_step_line(step: int, metrics: Mapping[str, Any]) -> str:
    """One concise line per step: reward, sample counts, judge health, timings, actor stats (present keys only)."""
    parts = [f"step {step}"]
    if "reward/mean" in metrics:
        reward = f"reward {_g(metrics['reward/mean'])}"
        if "reward/format" in metrics:
            reward += f" fmt {_g(metrics['reward/format'])}"
        parts.append(reward)
    if "samples/total" in metrics:
        samples = f"valid {_g(metrics.get('samples/valid', float('nan')))}/{_g(metrics['samples/total'])}"
        masked = {k.split("/", 2)[2]: v for k, v in metrics.items() if k.startswith("samples/masked/") and v}
        if masked:
            samples += " (" + ", ".join(f"{k} {_g(v)}" for k, v in sorted(masked.items())) + ")"
        parts.append(samples)
    requests = {k.split("/", 2)[2]: v for k, v in metrics.items() if k.startswith("judge/requests/")}
    if requests:
        ok = sum(v for k, v in requests.items() if k in ("ok", "cached"))
        failed = sum(v for k, v in requests.items() if k not in ("ok", "cached"))
        judge = f"judge {_g(ok)} ok {_g(failed)} failed"
        if "judge/latency_p95_s" in metrics:
            judge += f" p95 {_g(metrics['judge/latency_p95_s'])}s"
        if "judge/cost_usd" in metrics:
            judge += f" ${metrics['judge/cost_usd']:.3f}"
        parts.append(judge)
    if timing_key("step") in metrics:
        stages = " ".join(
            f"{s} {_g(metrics[timing_key(s)])}" for s in STAGES if s != "step" and timing_key(s) in metrics
        )
        parts.append(f"{_g(metrics[timing_key('step')])}s" + (f" ({stages})" if stages else ""))
    if "val/reward/mean" in metrics:
        valid = (
            f" ({_g(metrics['val/samples/valid'])}/{_g(metrics['val/samples/total'])} valid)"
            if "val/samples/total" in metrics and "val/samples/valid" in metrics
            else ""
        )
        parts.append(f"val reward {_g(metrics['val/reward/mean'])}{valid}")
    actor = " ".join(f"{k.split('/')[1]} {_g(metrics[k])}" for k in ("actor/kl", "actor/lr") if k in metrics)
    if actor:
        parts.append(actor)
    return " | ".join(parts)


def _g(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    if math.isnan(value):
        return "nan"
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.2f}"


class ConsoleLogger:
    """Logs :func:`format_step_line` through ``logging`` (logger ``easyr1.train``) every ``every`` steps."""

    def __init__(self, every: int = 1):
        self.every = every

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        if step % self.every == 0:
            console_logger.info("%s", format_step_line(step, metrics))

    def close(self) -> None:
        pass


class JsonlLogger:
    """Appends one JSON object per step to ``metrics.jsonl`` (``step``, ``time`` and the metrics; NaN/inf as
    null), flushed at once so a crashed run keeps every logged step."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        record: dict[str, Any] = {"step": step, "time": round(time.time(), 3)}
        for key, value in metrics.items():
            if key in ("step", "time"):
                continue
            record[key] = _json_value(value)
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class TensorBoardLogger:
    """Scalars for every numeric key, and per step an image (source | preliminary | final strip) plus a markdown
    table of CoT/Re_edit/scores for each sample row."""

    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = log_dir
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        for key, value in metrics.items():
            if key != "step" and isinstance(value, (int, float, np.generic)) and not isinstance(value, bool):
                self.writer.add_scalar(key, float(value), global_step=step)
        self.writer.flush()

    def log_samples(self, step: int, rows: Sequence[SampleRow], tag: str = "samples") -> None:
        for i, row in enumerate(rows):
            strip = np.asarray(row_strip(row))
            self.writer.add_image(f"{tag}/{i}", strip, global_step=step, dataformats="HWC")
        self.writer.add_text(f"{tag}/table", samples_markdown(rows), global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def samples_markdown(rows: Sequence[SampleRow]) -> str:
    """A markdown table of the text columns of sample rows."""
    header = ["#", "status", "reward", "format", *DIMENSIONS, "CoT or response", "Re_edit"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in enumerate(rows):
        scores = [_g(row.scores[d]) if row.scores and d in row.scores else "-" for d in DIMENSIONS]
        cells = [
            str(i),
            row.status,
            _g(row.reward) if row.reward is not None else "-",
            _g(row.format_score) if row.format_score is not None else "-",
            *scores,
            _md(row.cot or row.response),
            _md(row.re_edit),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _md(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
