"""Fault soak: a sandbox ``easyr1 train`` run against the loopback judge with a seeded fault schedule.

The judge (``easyr1.testing.judge_server`` in a child process) answers on a seeded schedule of 5xx, 429 (with
Retry-After), hangs (longer than ``judge.timeout_s``), malformed answers and whole outages (every request 503 for
10-60 s; shortened with ``--outage-scale``). The run is also stopped once with SIGTERM after a step and resumed
(``resume: auto``), and one checkpoint write fails with ENOSPC (injected through ``sitecustomize`` in the child:
the run stops with one line, exit 1) and is resumed. One editor replica (the editor runs as a pool of two Ray
replicas), one rollout engine and one actor (FSDP) worker are SIGKILLed after seeded steps: the editor and rollout
pools replace theirs; the actor pool starts every rank again, restores model and optimizer from the newest
checkpoint, the driver rewinds its data position and RNG to it and trains the lost steps again. One actor worker is
SIGSTOPped (alive but silent: a hung rank) while it runs ``update_policy`` after a seeded step; the faulty run's
``worker.actor.call_timeout_s`` (:data:`CALL_TIMEOUT_S`) ends the call, the pool kills the hung ranks
(``actor/call_timeouts``) and is restarted and restored the same way.
A clean run (same seed, no faults) gives the reference data-digest sequence.

    python benchmarks/fault_soak.py [--steps 12] [--seed 0] [--outage-scale 1.0] [--out DIR]

Prints a table, then one JSON line: faults injected by kind, steps completed, steps redone, samples masked by
reason, fabricated scores (every valid judge score must be the server's; must be 0), lost steps beyond the last
checkpoint (0), orphan processes (0, a stopped process included), digest sequence equal to the clean run's, worker
restarts counted by the pools (``editor/restarts``, ``rollout/restarts``, ``actor/restarts``) and actor calls that
missed their deadline (``actor/call_timeouts``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from easyr1.config import DIMENSIONS
from easyr1.testing.judge_server import Rule, ServerBehaviour, SubprocessJudgeServer
from easyr1.trainer.checkpoint import CheckpointManager

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "sandbox.yaml"
SCORE = 6.0
"""Every ``ok`` answer of the server scores each dimension this: any other valid judge value is fabricated."""
NOT_INJECTED: dict[str, str] = {}
"""Fault kinds of the issue that the soak does not inject, with the reason (none left)."""
KILLS = {
    "kill_editor_replica": "ray::EditorReplica",
    "kill_rollout_engine": "ray::HFRolloutEngine",
    "kill_actor_worker": "ray::ActorWorker",
}
"""Fault kind → the process title of the Ray worker it SIGKILLs (one process of that kind, once)."""
HANGS = {"hang_actor_worker": "ray::ActorWorker.update_policy"}
"""Fault kind → the title (a Ray worker running that call) of the process it SIGSTOPs: a rank that hangs, alive.
Only ``update_policy`` (called inside a training step, never by a restart's set-up, restore or weight sync), so the
hang is met by the call deadline of a step that the driver's recovery redoes."""
CALL_TIMEOUT_S = 30
"""``worker.actor.call_timeout_s`` of the faulty run: above its longest healthy actor call on a loaded 2-core box
(the restart's model set-up, a checkpoint save), short enough that the hang costs the soak well under a minute."""

SITECUSTOMIZE = """
import errno, os
_step = os.environ.get("EASYR1_SOAK_FAIL_SAVE_STEP")
if _step:
    import easyr1.trainer.checkpoint as _ckpt
    _real = _ckpt._write_text
    def _failing(path, text, *, atomic=False):
        marker = os.environ["EASYR1_SOAK_FAIL_SAVE_MARKER"]
        if path.name == "driver_state.json" and f"global_step_{_step}." in str(path) and not os.path.exists(marker):
            open(marker, "w").close()
            raise OSError(errno.ENOSPC, "No space left on device (injected by fault_soak)", str(path))
        _real(path, text, atomic=atomic)
    _ckpt._write_text = _failing
"""


def schedule(seed: int, outage_scale: float) -> tuple[ServerBehaviour, Counter]:
    """Seeded judge faults: segments of ok answers and fault kinds (``times``-limited rules, in order) plus two
    outages of 10-60 s × ``outage_scale``, each started by the n-th judge request (5-20 requests apart). Returns
    the behaviour and the planned faults; what the server really answered is read from its counters."""
    rng = random.Random(seed)
    rules: list[Rule] = []
    injected: Counter = Counter()
    for _ in range(12):
        rules.append(Rule(kind="ok", times=rng.randint(1, 3), scores={d: SCORE for d in DIMENSIONS}))
        kind = rng.choice(["server_error", "rate_limit", "hang", "malformed"])
        times = rng.randint(1, 3)
        rules.append(Rule(kind=kind, times=times, retry_after=0.5, status=rng.choice([500, 502, 503])))
    outages = []  # started by the n-th judge request, so that each outage meets the run's calls
    at = 0
    for _ in range(2):
        at += rng.randint(5, 20)
        outages.append([at, round(rng.uniform(10, 60) * outage_scale, 1)])
    behaviour = ServerBehaviour(default_score=SCORE, rules=rules, down_at_requests=outages, hang_s=4.0)
    return behaviour, injected


def overrides(assets: Path, out: Path, base_url: str, steps: int) -> list[str]:
    return [
        f"data.train_files={assets / 'data' / 'train'}",
        f"data.val_files={assets / 'data' / 'val'}",
        f"worker.actor.model.model_path={assets / 'policy'}",
        f"trainer.output_dir={out}",
        f"trainer.max_steps={steps}",
        "data.rollout_batch_size=2",
        "data.max_response_length=24",
        "worker.actor.global_batch_size=2",
        "worker.actor.micro_batch_size_per_device_for_update=2",
        "worker.actor.micro_batch_size_per_device_for_experience=4",
        "worker.rollout.n=2",
        "worker.reward.missing_re_edit=fallback_instruction",
        "trainer.logger=[file]",
        "trainer.val_freq=-1",
        "trainer.val_before_train=false",
        "telemetry.prometheus.enabled=false",
        "trainer.save_freq=1",
        "trainer.save_limit=3",
        "judge.backend=openai",
        f"judge.base_url={base_url}",
        "judge.mode=single_call",
        "judge.max_retries=1",
        "judge.timeout_s=2",
        "judge.outage_budget_s=120",
        "worker.image_edit.num_replicas=2",  # the editor as a Ray pool, so that a replica can be lost
        "cluster.editor.num_cpus_per_worker=0.5",
    ]


class Runner:
    """Runs ``easyr1 train`` invocations, remembering every child process to check for orphans."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.children: list[psutil.Process] = []
        self.exits: list[int] = []
        self.tracebacks = 0
        self.last_stderr = ""
        self.kills: dict[str, int] = {}
        """Fault kind (of :data:`KILLS` or :data:`HANGS`) → the step after which it is injected; removed once done."""
        self.killed: Counter = Counter()
        self.stopped: list[psutil.Process] = []
        """The processes SIGSTOPped (the deadline must kill them; any left is killed by :meth:`kill_stopped`)."""
        self._old_actors: set[int] = set()  # actor workers alive at the actor kill: the hang waits for fresh ones

    def _hang_active(self) -> bool:
        """A SIGSTOPped process is still there (the call deadline has not killed it yet)."""
        return any(p.is_running() and p.status() == psutil.STATUS_STOPPED for p in self.stopped)

    def _maybe_kill(self, proc: subprocess.Popen, run_dir: Path | None) -> None:
        """SIGKILL (SIGSTOP for :data:`HANGS`) the worker of each due fault (its step logged, the run still going).
        Nothing is injected while a stopped worker waits for its deadline; the hang waits for a pending actor kill
        of the same or an earlier step, then for a worker of the restarted world."""
        if not self.kills or run_dir is None or proc.poll() is not None:
            return
        with contextlib.suppress(psutil.Error):
            if self._hang_active():
                return
        logged = logged_steps(run_dir)
        for kind, step in list(self.kills.items()):
            if step not in logged:
                continue
            hang = kind in HANGS
            if hang and self.kills.get("kill_actor_worker", step + 1) <= step:
                continue
            try:
                workers = psutil.Process(proc.pid).children(recursive=True)
                titles = {w.pid: (w.cmdline() or [""])[0] for w in workers}
            except psutil.Error:
                continue
            title = HANGS[kind] if hang else KILLS[kind]
            targets = [w for w in workers if titles.get(w.pid, "").startswith(title)]
            if hang:
                targets = [w for w in targets if w.pid not in self._old_actors]
            elif kind == "kill_actor_worker":
                self._old_actors = {w.pid for w in workers if titles.get(w.pid, "").startswith(KILLS[kind])}
            if targets:
                victim = min(targets, key=lambda w: w.pid)
                victim.send_signal(signal.SIGSTOP if hang else signal.SIGKILL)
                self.killed[kind] += 1
                del self.kills[kind]
                if hang:
                    self.stopped.append(victim)
                    return  # nothing more until the deadline has dealt with it

    def run(self, args: list[str], *, sigterm_after_step: int | None = None, run_dir: Path | None = None) -> int:
        cmd = [sys.executable, "-m", "easyr1", "train", str(EXAMPLE), *args]
        proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            if sigterm_after_step is not None and run_dir is not None:
                while proc.poll() is None and sigterm_after_step not in logged_steps(run_dir):
                    self._note_children(proc)
                    self._maybe_kill(proc, run_dir)
                    time.sleep(0.1)
                if proc.poll() is None:
                    self._note_children(proc)
                    proc.send_signal(signal.SIGTERM)
            while proc.poll() is None:
                self._note_children(proc)
                self._maybe_kill(proc, run_dir)
                time.sleep(0.05 if self.kills else 0.5)
            stderr = proc.stderr.read() if proc.stderr else ""
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.tracebacks += stderr.count("Traceback")
        self.last_stderr = stderr
        self.exits.append(proc.returncode)
        if proc.returncode not in (0, 1, 143):
            sys.stderr.write(stderr[-3000:])
        return proc.returncode

    def _note_children(self, proc: subprocess.Popen) -> None:
        try:
            known = {p.pid for p in self.children}
            self.children += [c for c in psutil.Process(proc.pid).children(recursive=True) if c.pid not in known]
        except psutil.NoSuchProcess:
            pass

    def orphans(self, timeout_s: float = 30.0) -> list[int]:
        _, alive = psutil.wait_procs(self.children, timeout=timeout_s)
        return [p.pid for p in alive]

    def kill_stopped(self) -> list[int]:
        """SIGKILL any SIGSTOPped worker still there (the deadline should have; returns their pids)."""
        left = []
        for p in self.stopped:
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(p.pid)
                    p.send_signal(signal.SIGKILL)
        return left


def rows(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def logged_steps(run_dir: Path) -> set[int]:
    return {int(r["step"]) for r in rows(run_dir) if "reward/mean" in r or "samples/total" in r}


def summarise(run_dir: Path) -> dict[str, Any]:
    step_rows = [r for r in rows(run_dir) if "samples/total" in r and "data/digest" in r]
    logged = Counter(int(r["step"]) for r in step_rows)
    masked: Counter = Counter()
    fabricated = 0
    last: dict[int, dict[str, Any]] = {}
    for r in step_rows:
        last[int(r["step"])] = r
        for key, value in r.items():
            if key.startswith("samples/masked/") and value:
                masked[key[len("samples/masked/") :]] += int(value)
        for d in DIMENSIONS:
            value = r.get(f"reward/{d}")
            if isinstance(value, (int, float)) and value == value and abs(value - SCORE) > 1e-9:
                fabricated += 1
    latest = CheckpointManager(run_dir / "checkpoints").latest()
    return {
        "digests": [last[s]["data/digest"] for s in sorted(last)],
        "steps": sorted(last),
        "redone": sum(n - 1 for n in logged.values()),
        "masked": dict(masked),
        "fabricated": fabricated,
        "checkpoint_step": latest.step if latest else 0,
        "waiting_s": round(sum(float(r.get("judge/waiting_s", 0.0)) for r in step_rows), 1),
        "restarts": {
            pool: int(sum(float(r.get(f"{pool}/restarts", 0.0)) for r in rows(run_dir)))
            for pool in ("editor", "rollout", "actor")
        },
        "call_timeouts": int(sum(float(r.get("actor/call_timeouts", 0.0)) for r in rows(run_dir))),
    }


def soak(steps: int, seed: int, outage_scale: float, out: Path) -> dict[str, Any]:
    from easyr1.models.tiny import build_tiny_policy
    from easyr1.sandbox.generator import write_sandbox_dataset

    assets = out / "assets"
    build_tiny_policy(assets / "policy", seed=0)
    write_sandbox_dataset(assets / "data" / "train", rows=64, seed=seed, image_size=32)
    write_sandbox_dataset(assets / "data" / "val", rows=4, seed=seed, image_size=32, split="val")
    hook = out / "hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    env = {
        **os.environ,
        "OPENAI_API_KEY": "sk-soak",
        "PYTHONPATH": f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }

    with SubprocessJudgeServer(ServerBehaviour(default_score=SCORE)) as server:
        clean_dir = out / "clean"
        clean_runner = Runner(env)
        if clean_runner.run(overrides(assets, clean_dir, server.base_url, steps)) != 0:
            raise SystemExit(f"the clean run failed:\n{clean_runner.last_stderr[-3000:]}")
        clean = summarise(clean_dir)

        behaviour, injected = schedule(seed, outage_scale)
        server.reset()
        server.set_behaviour(behaviour)  # the outage windows count from here
        run_dir = out / "faulty"
        fail_step = max(2, steps // 2 + 1)
        runner = Runner(
            {**env, "EASYR1_SOAK_FAIL_SAVE_STEP": str(fail_step), "EASYR1_SOAK_FAIL_SAVE_MARKER": str(out / "failed")}
        )
        args = [
            *overrides(assets, run_dir, server.base_url, steps),
            f"worker.actor.call_timeout_s={CALL_TIMEOUT_S}",  # the hung rank's deadline
            "worker.actor.max_restarts=4",  # the kill and the hang (2), with room for a slow restart's deadline
        ]
        sigterm_step = max(1, steps // 4)
        # kills after a step of a run that goes on (not the SIGTERM's step, not the failed save's)
        candidates = [s for s in range(sigterm_step + 1, steps) if s != fail_step] or [steps - 1]
        kill_rng = random.Random(seed + 1)
        runner.kills = {kind: kill_rng.choice(candidates) for kind in KILLS}
        others = [s for s in candidates if s != runner.kills["kill_actor_worker"]] or candidates
        runner.kills.update({kind: kill_rng.choice(others) for kind in HANGS})
        kill_steps = dict(runner.kills)
        runner.run(args, sigterm_after_step=sigterm_step, run_dir=run_dir)
        injected["sigterm"] += 1
        for _ in range(4):  # the failed save stops a run (exit 1); resume: auto continues each time
            if runner.run(args, run_dir=run_dir) == 0:
                break
        injected["failed_checkpoint_write"] += int((out / "failed").exists())
        served = server.stats()["by_kind"]
    for kind in ("server_error", "rate_limit", "hang", "malformed"):
        injected[kind] = served.get(kind, 0)  # answered with this fault (planned ones the run never reached aside)
    injected["outage_503"] = served.get("down", 0)
    injected.update(runner.killed)
    faulty = summarise(run_dir)
    orphans = runner.orphans()
    stopped_left = runner.kill_stopped()  # counted in the orphans as well; never left behind
    return {
        "benchmark": "fault_soak",
        "seed": seed,
        "steps": steps,
        "faults_injected": dict(injected),
        "outages_at_request_s": behaviour.down_at_requests,
        "faults_served": served,
        "not_injected": NOT_INJECTED,
        "kill_after_step": kill_steps,
        "worker_restarts": faulty["restarts"],
        "actor_call_timeouts": faulty["call_timeouts"],
        "stopped_processes_left": len(stopped_left),
        "steps_completed": len(faulty["steps"]),
        "steps_redone": faulty["redone"],
        "masked_by_reason": faulty["masked"],
        "fabricated_scores": faulty["fabricated"] + clean["fabricated"],
        "lost_steps_beyond_last_checkpoint": max(0, max(faulty["steps"], default=0) - faulty["checkpoint_step"]),
        "orphan_processes": len(orphans),
        "exit_codes": runner.exits,
        "tracebacks": runner.tracebacks,
        "judge_waiting_s": faulty["waiting_s"],
        "digests_equal_clean_run": faulty["digests"] == clean["digests"] and len(clean["digests"]) == steps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--outage-scale", type=float, default=1.0, help="multiplies the 10-60 s outage lengths")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.out is None:
        with tempfile.TemporaryDirectory(prefix="easyr1-soak-") as tmp:
            result = soak(args.steps, args.seed, args.outage_scale, Path(tmp))
    else:
        result = soak(args.steps, args.seed, args.outage_scale, args.out)
    print(f"fault soak: {args.steps} steps, seed {args.seed}, outage scale {args.outage_scale}")
    for key in ("faults_injected", "faults_served", "not_injected", "masked_by_reason", "worker_restarts"):
        for name, value in sorted(result[key].items()):
            print(f"  {key:<20} {name:<24} {value}")
    for key in (
        "steps_completed",
        "steps_redone",
        "fabricated_scores",
        "lost_steps_beyond_last_checkpoint",
        "orphan_processes",
        "stopped_processes_left",
        "actor_call_timeouts",
        "exit_codes",
        "tracebacks",
        "judge_waiting_s",
        "digests_equal_clean_run",
    ):
        print(f"  {key:<45} {result[key]}")
    print(json.dumps(result))
    ok = (
        result["steps_completed"] == args.steps
        and result["fabricated_scores"] == 0
        and result["lost_steps_beyond_last_checkpoint"] == 0
        and result["orphan_processes"] == 0
        and result["digests_equal_clean_run"]
        and all(result["faults_injected"].get(kind, 0) == 1 for kind in (*KILLS, *HANGS))
        and all(n >= 1 for n in result["worker_restarts"].values())
        and result["actor_call_timeouts"] >= 1
        and result["stopped_processes_left"] == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
