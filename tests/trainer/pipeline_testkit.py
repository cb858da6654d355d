"""The driver without Ray for the pipeline-mode tests: the real sandbox data, editor, judge and telemetry; a scripted
rollout that records which engine weights generated each batch; an actor whose log-probs depend on its weights'
version, so a test can tell which weights computed the old log-probs of an update."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import torch

from easyr1.config import load_config
from easyr1.core.types import RolloutOutput
from easyr1.data import build_dataloader
from easyr1.sandbox.editor import SandboxEditor
from easyr1.sandbox.judge import SandboxJudge
from easyr1.telemetry import Telemetry
from easyr1.trainer.components import Components, StepBatches
from easyr1.trainer.grpo import GRPOTrainer

N = 4


def lp_value(version: int) -> float:
    """The per-token log-prob the :class:`VersionedActor` reports with the weights of ``version``."""
    return -1.0 - 0.125 * version


def engine_lp(version: int, token: int) -> float:
    """The log-prob a :class:`RecordingRollout` with ``logprobs`` returns for token ``token`` of a response generated
    with the weights of ``version`` (never :func:`lp_value`: a test can tell the engine's from the actor's)."""
    return -0.5 - 0.25 * version - 0.01 * token


class VersionedActor:
    """Weights are a version number (updates applied); log-probs are :func:`lp_value` of it."""

    def __init__(self, version: int = 0, update_delay_s: float = 0.0):
        self.version = version
        self.update_delay_s = update_delay_s
        self.lp_calls: list[tuple[int, str]] = []  # (version, thread name)
        self.updates: list[tuple[int, torch.Tensor]] = []  # (version before the update, old_log_probs)
        self.saved: list[str] = []
        self.fail_update_at: int | None = None  # raise in the update that would make this version
        self.callers: list[tuple[str, str]] = []  # (method, thread name) of every log-prob pass and update

    def compute_log_probs(self, batch):
        self.lp_calls.append((self.version, threading.current_thread().name))
        self.callers.append(("compute_log_probs", threading.current_thread().name))
        return torch.full((len(batch), batch.max_response_length), lp_value(self.version))

    def compute_ref_log_probs(self, batch):
        self.callers.append(("compute_ref_log_probs", threading.current_thread().name))
        return torch.full((len(batch), batch.max_response_length), -1.2)

    def update_policy(self, batch):
        self.callers.append(("update_policy", threading.current_thread().name))
        if self.fail_update_at is not None and self.version + 1 == self.fail_update_at:
            self.fail_update_at = None
            raise RuntimeError("actor worker died")
        time.sleep(self.update_delay_s)
        self.updates.append((self.version, batch.old_log_probs.clone()))
        self.version += 1
        return {"actor/pg_loss": 0.1}

    def save_checkpoint(self, path):
        Path(path, "actor").mkdir(parents=True)
        Path(path, "actor", "weights.json").write_text(json.dumps(self.version))
        self.saved.append(path)

    def load_checkpoint(self, path):
        self.version = json.loads(Path(path, "actor", "weights.json").read_text())

    def export_hf(self, path):
        Path(path).mkdir(parents=True)


class RecordingRollout:
    """Answers like ``test_grpo_step.ScriptedRollout`` (a demonstration, a partial answer, no tags, a nonsense edit);
    records the weights' version of every ``generate`` call and its (start, end) ``time.time()``; ``delay_s`` per
    call; ``fail_on_call`` (1-based). With ``logprobs``, each token's log-prob is :func:`engine_lp`; the outputs of
    call ``no_logprobs_on_call`` then have none (``"short"`` in ``bad_logprobs``: one too few instead)."""

    def __init__(
        self,
        rows_by_id,
        delay_s: float = 0.0,
        fail_on_call: int | None = None,
        logprobs: bool = False,
        no_logprobs_on_call: int | None = None,
        bad_logprobs: str = "none",
    ):
        self.rows_by_id = rows_by_id
        self.delay_s = delay_s
        self.fail_on_call = fail_on_call
        self.logprobs = logprobs
        self.no_logprobs_on_call = no_logprobs_on_call
        self.bad_logprobs = bad_logprobs
        self.engine_version = 0
        self.calls: list[tuple[list[str], int, str]] = []  # (prompt ids, engine version, thread name)
        self.times: list[tuple[float, float]] = []

    def generate(self, prompts, sampling):
        self.calls.append(([p.id for p in prompts], self.engine_version, threading.current_thread().name))
        start = time.time()
        time.sleep(self.delay_s)
        self.times.append((start, time.time()))
        if self.fail_on_call == len(self.calls):
            raise RuntimeError("rollout engine lost")
        out = self._answers(prompts, sampling)
        if self.logprobs:
            for o in out:
                lp = [engine_lp(self.engine_version, j) for j in range(len(o.token_ids))]
                if self.no_logprobs_on_call == len(self.calls):
                    lp = lp[:-1] if self.bad_logprobs == "short" else None
                o.logprobs = lp
        return out

    def _answers(self, prompts, sampling):
        out = []
        for prompt in prompts:
            demo = self.rows_by_id[prompt.id]
            lines = demo.splitlines()
            partial = "\n".join([lines[0], next(line for line in lines if line.startswith("<Re_edit>"))])
            texts = [demo, partial, "no tags here", "<CoT>hm</CoT>\n<Re_edit>Sing a song</Re_edit>"]
            for k in range(sampling.n):
                out.append(RolloutOutput(prompt.id, k, texts[k % len(texts)], [5, 6, 7][: 1 + k % 3]))
        return out

    def sync_weights(self, actor):
        self.engine_version = actor.version
        return {"rollout/sync_s": 0.0}


class StreamingRollout(RecordingRollout):
    """:class:`RecordingRollout` with ``generate_stream``: one chunk per prompt, last prompt first."""

    def generate_stream(self, prompts, sampling):
        out = self.generate(prompts, sampling)
        for i in reversed(range(len(prompts))):
            yield out[i * sampling.n : (i + 1) * sampling.n]


class SlowJudge(SandboxJudge):
    """The sandbox judge, ``delay_s`` per call; raises once ``armed`` (a test arms it between steps)."""

    def __init__(self, delay_s: float = 0.0):
        super().__init__()
        self.delay_s = delay_s
        self.armed = False
        self.calls = 0

    def score_batch(self, requests):
        self.calls += 1
        time.sleep(self.delay_s)
        if self.armed:
            raise RuntimeError("judge endpoint crashed")
        return super().score_batch(requests)


class CountingJudge(SlowJudge):
    """:class:`SlowJudge` that keeps per-step counters like the HTTP judge (``drain_metrics``): requests judged since
    the previous drain; raises for the rows in ``fail_ids`` (request keys are ``<row id>/<sample>``)."""

    def __init__(self, delay_s: float = 0.0):
        super().__init__(delay_s)
        self.fail_ids: set[str] = set()
        self.requests = 0
        self._lock = threading.Lock()

    def score_batch(self, requests):
        if any(r.key.split("/")[0] in self.fail_ids for r in requests):
            raise RuntimeError("judge endpoint crashed")
        with self._lock:
            self.requests += len(requests)
        return super().score_batch(requests)

    def drain_metrics(self):
        with self._lock:
            n, self.requests = self.requests, 0
        return {"judge/requests_drained": float(n)}


def peek_batches(loader, count: int) -> list[list[str]]:
    """The row ids of the loader's next ``count`` batches, without moving it."""
    state = loader.state_dict()
    ids = [[r.id for r in loader.next_batch()] for _ in range(count)]
    loader.load_state_dict(state)
    return ids


def make(data_dir: Path, out: Path, *overrides: str, actor=None, rollout_kw=None, judge=None, streams=False):
    cfg = load_config(
        None,
        [
            f"data.train_files={data_dir / 'train'}",
            "data.rollout_batch_size=2",
            "worker.actor.global_batch_size=2",
            f"worker.rollout.n={N}",
            "worker.actor.micro_batch_size_per_device_for_update=8",
            "worker.image_edit.backend=sandbox",
            "judge.backend=sandbox",
            "worker.reward.strategy=weighted_sum",
            "worker.reward.missing_re_edit=zero_reward",
            f"trainer.output_dir={out}",
            "trainer.logger=[file]",
            "trainer.stop_grace_s=30",
            "telemetry.prometheus.enabled=false",
            "telemetry.images_per_table=0",
            *overrides,
        ],
    )
    loader = StepBatches(build_dataloader(cfg.data, "train"))
    rows_by_id = {}
    for batch in build_dataloader(cfg.data, "train"):
        rows_by_id.update({r.id: r.metadata["demonstration"] for r in batch})
    rollout = (StreamingRollout if streams else RecordingRollout)(rows_by_id, **(rollout_kw or {}))
    comps = Components(
        cfg,
        actor or VersionedActor(),
        rollout,
        SandboxEditor(),
        judge or SandboxJudge(),
        Telemetry(cfg, out),
        loader,
        None,
    )
    return GRPOTrainer(cfg, out, components=comps), comps


def run_steps(trainer: GRPOTrainer, comps: Components, count: int) -> list[dict[str, float]]:
    """``count`` training steps, then the in-flight work joined (the next step's batch may still be scored in the
    background) and the telemetry closed."""
    rows = [trainer.train_step() for _ in range(count)]
    trainer.pipe.close()
    comps.telemetry.close()
    return rows


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("easyr1-prefetch")]
