"""Judge throughput: a serial loop in the style of the reference against our concurrent client.

64 samples × 5 dimensions against the loopback test server (a child process, so it does not share the client's
CPU time slice) answering each call after a fixed latency. The serial loop makes one call after another with the
SDK's synchronous client, as the reference did; ours runs the same calls through ``OpenAIJudge``. The bound is
ceil(calls / concurrency) × latency: what perfect concurrency with zero client cost would take.

    python benchmarks/judge_throughput.py [--samples 64] [--latency 0.2] [--concurrency 64] [--repeats 3]

Every timed run scores images it has not seen before (drawn before the clock starts, checked by pixel digest):
the judge keeps encodings across batches (by pixel content), and a run that re-sent the warm-up's images would
time no encoding at all. So each timed run encodes what a training step encodes: 16 sources + 64 edited images.

Each timed run's CPU time is counted too (``cpu_ms_per_run``, psutil; Linux gives per-thread times): the judge's
loop thread (the SDK's calls), its encode threads, the rest of the client, and the server process. On a box whose
cores are shared, a run cannot take much less than 0.2 s + (that CPU time) / (the cores it gets).

Prints a table, then one JSON line with ``serial_s``, ``ours_s``, ``bound_s``, ``speedup`` and ``bound_ratio``
(per_dimension mode) and the same for ``single_call`` mode. Goal: speedup ≥ 40×, ours ≤ 1.25 × bound; issue 21:
the median run ≤ 1.25 × bound in both modes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import threading
import time
from typing import Any

import openai
import psutil
from PIL import Image, ImageDraw

from easyr1.config import JudgeConfig
from easyr1.reward.judge import DIMENSIONS, JudgeRequest, rubrics
from easyr1.reward.judge.images import encode_image, pixel_digest
from easyr1.reward.judge.openai_judge import OpenAIJudge
from easyr1.reward.judge.parsing import parse_json_answer, parse_number_answer
from easyr1.testing.judge_server import ServerBehaviour, SubprocessJudgeServer

GOAL_SPEEDUP = 40.0
GOAL_BOUND_RATIO = 1.25
API_KEY = "sk-benchmark"


def scene(seed: int, size: int) -> Image.Image:
    """A drawn scene (sky, ground, sun, objects) so the JPEGs have realistic structure."""
    img = Image.new("RGB", (size, size), (110 + seed % 60, 160, 230))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, size * 2 // 3, size, size), fill=(90, 140 - seed % 40, 70))
    draw.ellipse((size // 10, size // 10, size // 4, size // 4), fill=(250, 220, 90))
    for k in range(6):
        x = (seed * 37 + k * 71) % (size - size // 6)
        draw.rectangle((x, size // 2, x + size // 8, size // 2 + size // 5), fill=((seed * 13 + k * 50) % 256, 80, 120))
    return img


def make_requests(samples: int, size: int, group: int = 4, round_: int = 0) -> list[JudgeRequest]:
    """``samples`` rollouts in groups of ``group`` sharing a source image (n rollouts of one prompt); each
    ``round_`` draws other images (a marker row of the round's bits on top of the scene)."""

    def draw(seed: int) -> Image.Image:
        img = scene(seed, size)
        for bit in range(24):
            img.putpixel((bit, 0), (255, 255, 255) if (round_ >> bit) & 1 else (0, 0, 0))
        return img

    sources = [draw(p) for p in range(math.ceil(samples / group))]
    return [
        JudgeRequest(sources[i // group], draw(1000 + i), f"prompt {i // group}: repair the shadow ({i})")
        for i in range(samples)
    ]


def fresh_requests(args: argparse.Namespace, round_: int, seen: set[bytes]) -> list[JudgeRequest]:
    """The requests of one run, with images no earlier run sent (checked, so the run really encodes them)."""
    requests = make_requests(args.samples, args.image_size, round_=round_)
    digests = {pixel_digest(img) for r in requests for img in (r.source_image, r.edited_image)}
    if digests & seen:
        raise SystemExit(f"round {round_}: images repeat an earlier round's; the run would not time their encoding")
    seen |= digests
    return requests


def serial_reference(base_url: str, requests: list[JudgeRequest], cfg: JudgeConfig) -> tuple[float, int]:
    """One call after another with the synchronous SDK client, like the reference; returns (seconds, valid).

    The images are encoded once per sample here too, so the comparison measures concurrency, not encoding.
    """
    client = openai.OpenAI(api_key=API_KEY, base_url=base_url, max_retries=0, timeout=cfg.timeout_s)
    valid = 0
    start = time.perf_counter()
    for req in requests:
        images = [
            encode_image(img, max_side=cfg.image_max_side, quality=cfg.jpeg_quality)
            for img in (req.source_image, req.edited_image)
        ]
        content: list[dict[str, Any]] = [{"type": "text", "text": rubrics.user_text(req.instruction)}]
        for index, (role, image) in enumerate(zip(("source", "edited"), images, strict=True), 1):
            content.append({"type": "text", "text": rubrics.image_label(index, role)})
            content.append({"type": "image_url", "image_url": {"url": image.data_url, "detail": cfg.image_detail}})
        dims: list[str | None] = list(DIMENSIONS) if cfg.mode == "per_dimension" else [None]
        answers = []
        for dim in dims:
            system = rubrics.dimension_system_prompt(dim) if dim else rubrics.single_call_system_prompt()
            extra = {"response_format": rubrics.response_format()} if dim is None else {}
            response = client.chat.completions.create(
                model=cfg.model,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": content}],  # type: ignore[list-item]
                temperature=cfg.temperature,
                max_tokens=cfg.max_tokens,
                **extra,
            )
            text = response.choices[0].message.content
            answers.append(parse_number_answer(text) if dim else parse_json_answer(text))
        valid += all(a is not None for a in answers)
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed, valid


CPU_GROUPS = ("loop", "encode", "other", "server")


def _thread_group(name: str) -> str:
    if name == "easyr1-judge-loop":
        return "loop"
    return "encode" if name.startswith("easyr1-judge-encode") else "other"


def cpu_seconds(server_pid: int | None) -> dict[str, float] | None:
    """CPU seconds so far of this process's threads, grouped (:data:`CPU_GROUPS`), and of the server process;
    ``None`` where the platform does not tell them."""
    try:
        names = {t.native_id: t.name for t in threading.enumerate()}
        totals = dict.fromkeys(CPU_GROUPS, 0.0)
        for thread in psutil.Process().threads():
            totals[_thread_group(names.get(thread.id, ""))] += thread.user_time + thread.system_time
        if server_pid is not None:
            times = psutil.Process(server_pid).cpu_times()
            totals["server"] = times.user + times.system
        return totals
    except (psutil.Error, OSError, AttributeError):
        return None


def cpu_ms_per_run(
    before: list[dict[str, float] | None], after: list[dict[str, float] | None]
) -> dict[str, float] | None:
    """Mean CPU milliseconds per timed run by group, from readings taken around each run."""
    pairs = [(b, a) for b, a in zip(before, after, strict=True) if b is not None and a is not None]
    if not pairs or len(pairs) != len(before):
        return None
    return {g: round(1000 * sum(a[g] - b[g] for b, a in pairs) / len(pairs), 1) for g in CPU_GROUPS}


def ours(
    base_url: str,
    requests: list[JudgeRequest],
    cfg: JudgeConfig,
    args: argparse.Namespace,
    streamed: bool = False,
    server_pid: int | None = None,
) -> tuple[list[float], int, float, dict[str, float] | None]:
    """Timed runs of our client; returns (seconds per run, valid samples of the last run, encodes per run, CPU
    milliseconds per run by group, see :func:`cpu_seconds`).

    ``streamed``: each sample is its own ``submit_batch`` call, as the trainer's streaming scoring sends them (all
    at once here: the worst case), so the images a group shares are no longer in one batch."""
    seen: set[bytes] = set()
    fresh_requests(args, 0, seen)  # the warm-up's images (``requests`` are round 0)
    with OpenAIJudge(cfg, api_key=API_KEY) as judge:
        judge.score_batch(requests)  # warm-up: loop thread and a full connection pool, as in a training loop
        times, valid, encodes = [], 0, 0
        cpu_before, cpu_after = [], []
        for run in range(1, args.repeats + 1):
            batch = fresh_requests(args, run, seen)  # drawn before the clock starts; encoded inside the timed run
            misses = judge.encodings.misses
            cpu_before.append(cpu_seconds(server_pid))
            start = time.perf_counter()
            if streamed:
                futures = [judge.submit_batch([request]) for request in batch]
                results = [future.result()[0] for future in futures]
            else:
                results = judge.score_batch(batch)
            times.append(time.perf_counter() - start)
            cpu_after.append(cpu_seconds(server_pid))
            encodes += judge.encodings.misses - misses
            valid = sum(r.valid for r in results)
    return times, valid, encodes / args.repeats, cpu_ms_per_run(cpu_before, cpu_after)


def run_mode(server: SubprocessJudgeServer, requests: list[JudgeRequest], mode: str, args: argparse.Namespace) -> dict:
    cfg = JudgeConfig(
        backend="openai",
        base_url=server.base_url,
        model="judge-benchmark",
        mode=mode,
        max_concurrency=args.concurrency,
        max_retries=0,
        timeout_s=30.0,
        batch_deadline_s=600.0,
    )
    calls = len(requests) * (len(DIMENSIONS) if mode == "per_dimension" else 1)
    serial_s, serial_valid = serial_reference(server.base_url, requests, cfg)
    bound = math.ceil(calls / args.concurrency) * args.latency
    rows = []
    for streamed in (False, True):
        times, ours_valid, encodes, cpu = ours(server.base_url, requests, cfg, args, streamed, server.pid)
        if serial_valid != len(requests) or ours_valid != len(requests):
            raise SystemExit(f"{mode}: invalid results (serial {serial_valid}, ours {ours_valid} of {len(requests)})")
        rows.append(_row(mode + (" streamed" if streamed else ""), calls, serial_s, times, bound, encodes, cpu))
    rows[0]["streamed"] = {k: v for k, v in rows[1].items() if k not in ("mode", "calls", "serial_s", "bound_s")}
    return rows[0]


def _row(
    mode: str,
    calls: int,
    serial_s: float,
    times: list[float],
    bound: float,
    encodes: float,
    cpu: dict[str, float] | None,
) -> dict:
    best = min(times)
    return {
        "mode": mode,
        "calls": calls,
        "serial_s": round(serial_s, 3),
        "ours_s": round(best, 3),
        "ours_median_s": round(statistics.median(times), 3),
        "bound_s": round(bound, 3),
        "speedup": round(serial_s / best, 1),
        "bound_ratio": round(best / bound, 3),
        "median_bound_ratio": round(statistics.median(times) / bound, 3),
        "encodes_per_run": encodes,
        "cpu_ms_per_run": cpu,
    }


def streamed(row: dict) -> dict:
    """The table row of ``row``'s streamed runs."""
    return {**row, **row["streamed"], "mode": "  streamed"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2, help="server latency per call (s)")
    parser.add_argument("--concurrency", type=int, default=64, help="judge.max_concurrency of ours")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours (the best is reported)")
    parser.add_argument("--image-size", type=int, default=512, help="side of the square test images")
    args = parser.parse_args(argv)

    requests = make_requests(args.samples, args.image_size)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with SubprocessJudgeServer(ServerBehaviour(latency_s=args.latency)) as server:
        per_dim = run_mode(server, requests, "per_dimension", args)
        single = run_mode(server, requests, "single_call", args)
    single["speedup_vs_reference"] = round(per_dim["serial_s"] / single["ours_s"], 1)

    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"judge throughput: {args.samples} samples, {args.latency * 1000:.0f} ms per call, concurrency "
        f"{args.concurrency}, {args.image_size}px images, {os.cpu_count()} CPUs, load avg {load:.2f} -> {load_end:.2f}"
    )
    header = (
        f"{'mode':<14}{'calls':>7}{'serial s':>10}{'ours s':>9}{'median s':>10}{'bound s':>9}{'speedup':>9}"
        f"{'ours/bound':>12}{'median/bound':>14}{'encodes':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in (per_dim, streamed(per_dim), single, streamed(single)):
        print(
            f"{row['mode']:<14}{row['calls']:>7}{row['serial_s']:>10.2f}{row['ours_s']:>9.3f}"
            f"{row['ours_median_s']:>10.3f}{row['bound_s']:>9.2f}{row['speedup']:>8.1f}x{row['bound_ratio']:>12.3f}"
            f"{row['median_bound_ratio']:>14.3f}{row['encodes_per_run']:>9.0f}"
        )
    print("  streamed: one submit_batch per sample, as the trainer's streaming scoring sends them (all at once here)")
    print("CPU ms per timed run (client: the judge's loop thread, its encode threads, other threads; the server):")
    print(f"{'mode':<14}" + "".join(f"{g:>9}" for g in (*CPU_GROUPS, "total")))
    for row in (per_dim, streamed(per_dim), single, streamed(single)):
        cpu = row["cpu_ms_per_run"]
        cells = "  unavailable" if cpu is None else "".join(f"{v:>9.1f}" for v in (*cpu.values(), sum(cpu.values())))
        print(f"{row['mode']:<14}{cells}")
    print(f"single_call vs the reference's serial per-dimension loop: {single['speedup_vs_reference']:.1f}x")
    goal_met = per_dim["speedup"] >= GOAL_SPEEDUP and per_dim["bound_ratio"] <= GOAL_BOUND_RATIO
    print(
        f"goal (per_dimension): speedup >= {GOAL_SPEEDUP:.0f}x and ours <= {GOAL_BOUND_RATIO} x bound: "
        f"{'met' if goal_met else 'NOT met'}"
    )
    median_goal_met = all(row["median_bound_ratio"] <= GOAL_BOUND_RATIO for row in (per_dim, single))
    print(f"goal (both modes): median <= {GOAL_BOUND_RATIO} x bound: {'met' if median_goal_met else 'NOT met'}")
    result = {
        "benchmark": "judge_throughput",
        "samples": args.samples,
        "latency_s": args.latency,
        "concurrency": args.concurrency,
        "image_size": args.image_size,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(load, 2),
        "load_avg_1m_end": round(load_end, 2),
        **{
            k: per_dim[k]
            for k in (
                "calls",
                "serial_s",
                "ours_s",
                "ours_median_s",
                "bound_s",
                "speedup",
                "bound_ratio",
                "median_bound_ratio",
                "encodes_per_run",
                "cpu_ms_per_run",
                "streamed",
            )
        },
        "goal_met": goal_met,
        "median_goal_met": median_goal_met,
        "single_call": {k: v for k, v in single.items() if k != "mode"},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
