"""``easyr1 judge``: score a JSONL file of edits with the configured judge.

Input rows ``{"id", "source_image", "edited_image", "instruction"}`` (image paths relative to the JSONL file or
absolute; an optional ``preliminary_image``; other fields go to the request's metadata). Output rows
``{"id", "scores": {dimension: float|null}, "valid", "reason", "cached"}`` in input order, one per input row,
written to a temporary file and renamed when complete.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from easyr1.config import ConfigValidationError, JudgeConfig, load_config

from . import build_judge
from .credentials import JudgeCredentialError
from .protocol import DIMENSIONS, JudgeRequest, JudgeResult

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
REQUIRED_FIELDS = ("id", "source_image", "edited_image", "instruction")
IMAGE_FIELDS = ("source_image", "edited_image", "preliminary_image")
CHUNK_ROWS = 256
"""Rows whose images are loaded and scored together (bounds memory on large files)."""


class InputError(ValueError):
    """A problem with the input file; the message names the file, line and field."""


@dataclass
class InputRow:
    line: int
    id: Any
    instruction: str
    images: dict[str, Path]
    extra: dict[str, Any]


def read_rows(path: Path) -> list[InputRow]:
    """Parse and check every row (JSON, required fields, types, image files present) before anything is scored."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    base = path.resolve().parent
    rows: list[InputRow] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, 1):
            if not text.strip():
                continue
            where = f"{path}:{number}"
            try:
                data = json.loads(text.strip())
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(data, dict):
                raise InputError(f"{where}: a row must be a JSON object")
            for name in REQUIRED_FIELDS:
                if name not in data or data[name] is None:
                    raise InputError(f"{where}: missing field {name!r}")
            if not isinstance(data["id"], (str, int)) or isinstance(data["id"], bool):
                raise InputError(f"{where}: field 'id' must be a string or an integer")
            if str(data["id"]) in seen:
                raise InputError(f"{where}: id {data['id']!r} repeats line {seen[str(data['id'])]}")
            seen[str(data["id"])] = number
            if not isinstance(data["instruction"], str):
                raise InputError(f"{where}: field 'instruction' must be a string")
            images: dict[str, Path] = {}
            for name in IMAGE_FIELDS:
                value = data.get(name)
                if value is None:
                    continue
                if not isinstance(value, str) or not value:
                    raise InputError(f"{where}: field {name!r} must be an image path")
                if value[:5].lower() == "data:":
                    raise InputError(
                        f"{where}: field {name!r} is a data: URI; give the path of an image file instead "
                        "(relative paths are read from the input file's folder)"
                    )
                image_path = Path(value).expanduser()
                image_path = image_path if image_path.is_absolute() else base / image_path
                try:
                    found = image_path.is_file()
                except OSError as exc:  # e.g. a name too long for the file system
                    raise InputError(f"{where}: field {name!r}: not a usable image path ({exc.strerror})") from None
                if not found:
                    raise InputError(f"{where}: field {name!r}: image file {image_path} not found")
                images[name] = image_path
            extra = {k: v for k, v in data.items() if k not in (*REQUIRED_FIELDS, "preliminary_image")}
            rows.append(InputRow(number, data["id"], data["instruction"], images, extra))
    return rows


def _load_image(path: Path, where: str, name: str) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{where}: field {name!r}: cannot read image {path} ({exc})") from None


def _requests(rows: list[InputRow], input_path: Path) -> list[JudgeRequest]:
    cache: dict[Path, Image.Image] = {}  # a source image shared by several rows is decoded once
    requests = []
    for row in rows:
        where = f"{input_path}:{row.line}"
        loaded = {}
        for name, path in row.images.items():
            if path not in cache:
                cache[path] = _load_image(path, where, name)
            loaded[name] = cache[path]
        requests.append(
            JudgeRequest(
                source_image=loaded["source_image"],
                edited_image=loaded["edited_image"],
                instruction=row.instruction,
                preliminary_image=loaded.get("preliminary_image"),
                key=str(row.id),
                metadata=row.extra,
            )
        )
    return requests


def _judge_config(args: argparse.Namespace) -> JudgeConfig:
    judge_fields = {f.name for f in fields(JudgeConfig)}
    overrides = []
    for item in args.overrides or []:
        key = item.split("=", 1)[0].strip().lstrip("+")
        overrides.append(f"judge.{item.lstrip('+')}" if key.split(".")[0] in judge_fields else item)
    if args.config is None and not any(o.startswith("judge.backend=") for o in overrides):
        overrides.insert(0, "judge.backend=openai")  # the command scores images; the sandbox needs scene rows
    flags = {
        "base_url": args.base_url,
        "model": args.model,
        "mode": args.mode,
        "max_concurrency": args.max_concurrency,
        "timeout_s": args.timeout,
    }
    for name, value in flags.items():
        if value is not None:
            overrides.append(f"judge.{name}={json.dumps(value)}")
    return load_config(args.config, overrides).judge


def _chunks(items: list[InputRow], size: int) -> Iterator[list[InputRow]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _output_row(row: InputRow, result: JudgeResult) -> dict[str, Any]:
    scores = result.scores if result.valid and result.scores else {}
    return {
        "id": row.id,
        "scores": {d: (float(scores[d]) if d in scores else None) for d in DIMENSIONS},
        "valid": bool(result.valid),
        "reason": None if result.valid else (result.reason or "unknown"),
        "cached": bool(result.cached),
    }


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary_table(results: list[JudgeResult], cfg: JudgeConfig) -> Table:
    """Valid/invalid by reason, mean per dimension, latency p50/p95, tokens and cost."""
    table = Table(title="judge summary", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    valid = [r for r in results if r.valid and r.scores]
    reasons = Counter(r.reason or "unknown" for r in results if not r.valid)
    table.add_row("rows", str(len(results)))
    table.add_row("valid", str(len(valid)))
    table.add_row("invalid", str(sum(reasons.values())))
    for reason, count in sorted(reasons.items()):
        table.add_row(f"  invalid: {reason}", str(count))
    table.add_row("cached", str(sum(r.cached for r in results)))
    for dimension in DIMENSIONS:
        values = [r.scores[dimension] for r in valid if r.scores]
        table.add_row(f"mean {dimension}", f"{sum(values) / len(values):.2f}" if values else "-")
    latencies = [r.latency_s for r in results if r.calls > 0]
    for label, q in (("latency p50 (s)", 0.5), ("latency p95 (s)", 0.95)):
        value = _quantile(latencies, q)
        table.add_row(label, "-" if value is None else f"{value:.3f}")
    prompt = sum(r.prompt_tokens for r in results)
    completion = sum(r.completion_tokens for r in results)
    cost = prompt / 1000 * cfg.price_per_1k_prompt_tokens + completion / 1000 * cfg.price_per_1k_completion_tokens
    table.add_row("calls", str(sum(r.calls for r in results)))
    table.add_row("prompt tokens", str(prompt))
    table.add_row("completion tokens", str(completion))
    table.add_row("cost (USD)", f"{cost:.4f}")
    return table


def judge_command(args: argparse.Namespace) -> int:
    """``easyr1 judge --input ROWS.jsonl --out SCORES.jsonl [...]``: exit 0 when it ran (invalid rows included)."""
    err = Console(stderr=True)
    out = Console()
    input_path, out_path = Path(args.input), Path(args.out)
    try:
        cfg = _judge_config(args)
        rows = read_rows(input_path)
    except (ConfigValidationError, InputError) as exc:
        print(f"easyr1 judge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        judge = build_judge(cfg)
    except (JudgeCredentialError, ModuleNotFoundError) as exc:
        print(f"easyr1 judge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    results: list[JudgeResult] = []
    takes_callback = "on_result" in inspect.signature(judge.score_batch).parameters
    try:
        with (
            partial.open("w", encoding="utf-8") as handle,
            Progress(
                TextColumn("judging"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=err,
                transient=False,
            ) as progress,
        ):
            task = progress.add_task("judge", total=len(rows))
            for chunk in _chunks(rows, CHUNK_ROWS):
                requests = _requests(chunk, input_path)
                if takes_callback:
                    chunk_results = judge.score_batch(requests, on_result=lambda i, r: progress.advance(task))  # type: ignore[call-arg]
                else:
                    chunk_results = judge.score_batch(requests)
                    progress.advance(task, len(chunk))
                if len(chunk_results) != len(chunk):
                    raise RuntimeError(f"the judge returned {len(chunk_results)} results for {len(chunk)} rows")
                for row, result in zip(chunk, chunk_results, strict=True):
                    handle.write(json.dumps(_output_row(row, result)) + "\n")
                results.extend(chunk_results)
        os.replace(partial, out_path)
    except InputError as exc:
        partial.unlink(missing_ok=True)
        print(f"easyr1 judge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        partial.unlink(missing_ok=True)
        print("easyr1 judge: interrupted; no output written", file=sys.stderr)
        return EXIT_FAILED
    finally:
        close = getattr(judge, "close", None)
        if close is not None:
            close()
    out.print(summary_table(results, cfg))
    out.print(f"wrote {len(results)} rows to {out_path}", markup=False, highlight=False)
    return EXIT_OK
