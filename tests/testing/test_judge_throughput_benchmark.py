"""Smoke of ``benchmarks/judge_throughput.py``: its CPU accounting (the judge's threads grouped by name, the
server process counted, a run without readings is null, never a number) and one tiny end-to-end run whose JSON
line carries every key. Behaviour only: a benchmark is not a timed test."""

from __future__ import annotations

import json
import threading
import time

import pytest
from benchmark_testkit import load_benchmark


def _bench():
    return load_benchmark("judge_throughput")


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_cpu_time_of_a_thread_counts_in_its_group() -> None:
    bench = _bench()
    start = bench.cpu_seconds(None)
    if start is None:
        pytest.skip("this platform does not tell per-thread CPU times")
    burnt, release = threading.Event(), threading.Event()

    def work() -> None:
        _burn(0.2)
        burnt.set()
        release.wait()  # still alive when read: an ended thread is no longer listed

    thread = threading.Thread(target=work, name="easyr1-judge-loop")
    thread.start()
    try:
        assert burnt.wait(30)
        reading = bench.cpu_seconds(None)
    finally:
        release.set()
        thread.join()
    assert reading is not None and set(reading) == set(bench.CPU_GROUPS)
    assert reading["loop"] - start["loop"] >= 0.15
    assert reading["encode"] == start["encode"] == 0.0 and reading["server"] == 0.0


def test_cpu_ms_per_run_averages_and_is_null_without_readings() -> None:
    bench = _bench()
    zero = dict.fromkeys(bench.CPU_GROUPS, 0.0)
    runs = [dict(zero, loop=0.01, server=0.004), dict(zero, loop=0.03, server=0.002)]
    assert bench.cpu_ms_per_run([zero, zero], runs) == dict(zero, loop=20.0, server=3.0)
    assert bench.cpu_ms_per_run([zero, None], runs) is None
    assert bench.cpu_ms_per_run([], []) is None


@pytest.mark.slow
def test_a_tiny_run_prints_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _bench()
    argv = ["--samples", "4", "--latency", "0.01", "--concurrency", "4", "--repeats", "2", "--image-size", "64"]
    assert bench.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for row in (result, result["single_call"]):
        assert row["calls"] in (4, 20) and row["ours_s"] > 0 and row["encodes_per_run"] == 5
        cpu = row["cpu_ms_per_run"]
        assert cpu is None or (set(cpu) == set(bench.CPU_GROUPS) and all(v >= 0 for v in cpu.values()))
        assert set(row["streamed"]) >= {"ours_s", "ours_median_s", "cpu_ms_per_run"}
