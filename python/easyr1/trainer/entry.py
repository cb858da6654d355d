"""``easyr1 train CONFIG [key=value …]``: validate the config (before Ray starts), build the pools, run GRPO."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from easyr1.config import ConfigValidationError, EasyR1Config, dump_yaml, load_config

logger = logging.getLogger(__name__)


def progress_bar(console=None):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


class ForcedStop(BaseException):
    """A second signal, or the stop grace ran out: abandon the step in flight (the previous checkpoint stays)."""


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """SIGTERM/SIGINT set ``stop`` (the trainer finishes the step in flight and checkpoints it); a second signal, or
    ``grace_s`` seconds after the first, raises :class:`ForcedStop` in the main thread. ``received`` lists the
    signals. Main thread only (Python's rule for signal handlers); the previous handlers come back on exit.

    ``ray.init`` installs Ray's own SIGTERM handler in the driver (it aborts the process), so :meth:`install` is
    called again once Ray is up."""

    def __init__(self, stop: threading.Event, grace_s: float):
        self.stop = stop
        self.grace_s = grace_s
        self.received: list[int] = []
        self._timers: list[threading.Timer] = []
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.received.append(signum)
        if self.stop.is_set():
            raise ForcedStop(signal.Signals(signum).name)
        self.stop.set()
        logger.warning(
            "%s: stopping after the step in flight and its checkpoint (at most %.0fs; a second signal abandons it)",
            signal.Signals(signum).name,
            self.grace_s,
        )
        # a real signal to the main thread: it also interrupts a blocking wait there (Ray's get, a sleep)
        timer = threading.Timer(self.grace_s, signal.pthread_kill, args=(threading.main_thread().ident, signum))
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            old = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, old)

    def __enter__(self) -> StopSignals:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        for timer in self._timers:
            timer.cancel()
        for sig, old in self._previous.items():
            signal.signal(sig, old)  # type: ignore[arg-type]


def stop_on_signals(stop: threading.Event, grace_s: float) -> StopSignals:
    """``with stop_on_signals(stop, grace_s) as signals:`` (see :class:`StopSignals`)."""
    return StopSignals(stop, grace_s)


def run_training(
    cfg: EasyR1Config, *, console=None, stop: threading.Event | None = None, signals: StopSignals | None = None
) -> list[dict[str, float]]:
    """Run GRPO for ``cfg`` in ``cfg.trainer.output_dir``; returns the per-step metrics of this invocation (the
    trainer's ``FitResult``: ``stopped`` is true when ``stop`` ended it early)."""
    from .components import build_components
    from .grpo import GRPOTrainer

    run_dir = Path(cfg.trainer.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_yaml(cfg, redact=True))
    components = build_components(cfg, run_dir)
    if signals is not None:
        signals.install()  # again: ray.init replaced the SIGTERM handler
    try:
        trainer = GRPOTrainer(cfg, run_dir, components=components)
        trainer.resume()
        with progress_bar(console) as progress:
            return trainer.fit(progress, stop=stop) if stop is not None else trainer.fit(progress)
    finally:
        components.close()


def load_or_report(console, command: str, path, overrides) -> EasyR1Config | None:
    """The validated config, or ``None`` after printing every problem (the caller exits with 2, before Ray)."""
    try:
        return load_config(path, overrides)
    except ConfigValidationError as exc:
        console.print(f"easyr1 {command}: {exc}", style="red", markup=False)
        return None


def train_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    cfg = load_or_report(console, "train", args.config, args.overrides)
    if cfg is None:
        return 2
    from .preflight import preflight, report

    failed = report(
        preflight(cfg, "train"), lambda line: print(f"easyr1 train: {line}", file=sys.stderr)
    )  # one line each
    if failed:  # before Ray starts or a model loads
        return failed
    from easyr1.actor.pool import ActorCallTimeout
    from easyr1.pools import WorkerLost, describe, is_lost

    from .checkpoint import CheckpointWriteError
    from .grpo import StageFailure

    stop = threading.Event()
    with stop_on_signals(stop, cfg.trainer.stop_grace_s) as signals:
        received = signals.received
        try:
            history = run_training(cfg, console=console, stop=stop, signals=signals)
        except (
            StageFailure,
            CheckpointWriteError,
            WorkerLost,
            ActorCallTimeout,  # a hang outside a step (resume's checkpoint load, the final save)
        ) as exc:  # one line each; Ray is shut down on the way out
            console.print(f"easyr1 train stopped: {exc}", style="red", markup=False)
            return 1
        except Exception as exc:  # a lost worker that no pool turned into WorkerLost: one line, not a traceback
            if not is_lost(exc):
                raise
            console.print(
                f"easyr1 train stopped: a pool worker was lost ({describe(exc)}); resume: auto continues from the "
                f"newest complete checkpoint in {cfg.trainer.output_dir}",
                style="red",
                markup=False,
            )
            return 1
        except (ForcedStop, KeyboardInterrupt) as exc:  # components are closed (Ray shut down) on the way out
            name = signal.Signals(received[-1]).name if received else "SIGINT"
            console.print(
                f"easyr1 train: {name}: step in flight abandoned ({type(exc).__name__}); resume: auto continues from "
                f"the newest complete checkpoint in {cfg.trainer.output_dir}",
                markup=False,
                soft_wrap=True,
            )
            return 128 + (received[-1] if received else signal.SIGINT)
    if received:
        step = getattr(history, "step", None)
        where = getattr(history, "checkpoint", None)
        console.print(
            f"easyr1 train: stopped by {signal.Signals(received[0]).name} after step {step}; checkpoint {where}; "
            "resume: auto continues from it",
            markup=False,
            soft_wrap=True,
        )
        return 128 + received[0]
    if history:
        last = history[-1]
        console.print(
            f"done: {len(history)} step(s), last reward/mean {last.get('reward/mean', float('nan')):.3f}; run folder {cfg.trainer.output_dir}"
        )
    return 0
