"""Simulated stage costs behind the real pools: a rollout engine, an actor pool and a recording editor whose time is
a configured sleep, for the pipeline benchmark (``benchmarks/pipeline.py``) and tests of the driver's scheduling.

* :class:`SimulatedRolloutEngine` — registered as the rollout engine ``simulated`` (``ENGINES``) when this module is
  imported, so the real :class:`~easyr1.rollout.pool.RolloutPool` runs it as Ray actors. ``generate`` sleeps
  ``seconds_per_prompt`` per prompt and returns real :class:`RolloutOutput` s: a well-formed ``<CoT>…</CoT>
  <Re_edit>…</Re_edit>`` answer that differs per sample, its UTF-8 bytes as token ids, per-token log-probs —
  all a function of (sampling seed, prompt id, sample index, weights version) only, so the split over engines
  does not change them. ``update_weights`` (the pool's object-store sync) sleeps ``sync_s`` and takes the weights
  version the actor sent; every output carries the version it was generated with (``extra["weights_version"]``).
* :class:`SimulatedActorPool` — a :class:`~easyr1.trainer.contracts.TrainingActor` over Ray actor workers
  (:class:`SimulatedActorWorker`): ``update_policy`` sleeps ``update_s`` on every worker (data parallel: each
  takes its share of the rows in the same time) and bumps the weights version; log-prob passes sleep
  ``logprob_s`` and return (B, T) tensors that are zero beyond each response; checkpoints are real files.
* :class:`RecordingEditor` — :class:`~easyr1.testing.simulated_editor.SimulatedEditor` (``latency_s`` per image)
  that also records its busy intervals; run it in the real :class:`~easyr1.editing.pool.EditorPool`.

Every component records its busy intervals with :class:`~easyr1.testing.stage_records.BusyLog` (see
``easyr1.testing.stage_records`` for what is measured from them). The judge is not simulated here: the benchmark
runs the real HTTP judge against the loopback test server (``easyr1.testing.judge_server``).

None of this is a production backend: nothing builds it from a config except a caller that imported this module.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from easyr1.core.registries import ENGINES, EngineFacts
from easyr1.core.seeds import derive_seed
from easyr1.core.types import EditRequest, EditResult, PolicyPrompt, RolloutOutput, SamplingParams

from .simulated_editor import SimulatedEditor
from .stage_records import BusyLog

if TYPE_CHECKING:
    from easyr1.actor.batch import PolicyBatch
    from easyr1.config import EasyR1Config

logger = logging.getLogger(__name__)

ENGINE_NAME = "simulated"
"""``worker.rollout.name`` of :class:`SimulatedRolloutEngine` (registered when this module is imported)."""
TOKEN_OFFSET = 3
"""Token ids are the answer's UTF-8 bytes plus this (ids 0–2 are left to special tokens)."""

_COT = ("The shadows fall the wrong way.", "The cup floats above the table.", "The window light is too warm.")
_EDITS = ("Cast the shadows to the right", "Put the cup on the table", "Cool the light from the window")


# ---------------------------------------------------------------------------------------------- rollout engine


@dataclass
class EngineSettings:
    """What every :class:`SimulatedRolloutEngine` of the next pool is built with (set on the class before the
    pool starts: ``SimulatedRolloutEngine.settings = EngineSettings(...)``)."""

    seconds_per_prompt: float = 0.0
    """Generation time per prompt (all n samples): a batch of P prompts on one engine takes P × this."""
    sync_s: float = 0.0
    """Time of one weight update (the engine's side of the sync)."""
    record_dir: str | None = None
    """Where busy intervals are recorded (``None``: not recorded)."""


class SimulatedRolloutEngine:
    """A rollout engine whose generation and weight loading cost a fixed time; see the module docstring."""

    settings: ClassVar[EngineSettings] = EngineSettings()

    def __init__(
        self,
        model_path: str,
        *,
        engine_index: int = 0,
        seconds_per_prompt: float = 0.0,
        sync_s: float = 0.0,
        record_dir: str | None = None,
    ):
        self.model_path = model_path
        self.engine_index = engine_index
        self.seconds_per_prompt = float(seconds_per_prompt)
        self.sync_s = float(sync_s)
        self.version = 0
        """Weights version: the number of actor updates in the weights this engine holds."""
        self.log = BusyLog(record_dir, "rollout", f"engine{engine_index}")

    # -- pool hooks (driver side, class level)
    @staticmethod
    def actor_options(cfg: EasyR1Config) -> dict[str, Any]:
        """Ray options beyond the pool's placement: none."""
        return {}

    @classmethod
    def engine_kwargs(cls, cfg: EasyR1Config, *, device: str, threads: int | None) -> dict[str, Any]:
        """The class's :attr:`settings` as constructor keywords."""
        return asdict(cls.settings)

    # -- the engine
    def ping(self) -> int:
        return self.engine_index

    def generate(self, prompts: Sequence[PolicyPrompt], sampling: SamplingParams) -> list[RolloutOutput]:
        """``len(prompts) × sampling.n`` outputs grouped by prompt, after ``seconds_per_prompt`` per prompt."""
        with self.log.busy("generate", version=self.version, prompt_ids=[p.id for p in prompts]):
            if self.seconds_per_prompt > 0:
                time.sleep(self.seconds_per_prompt * len(prompts))
            return [simulated_output(p.id, k, sampling, self.version) for p in prompts for k in range(sampling.n)]

    def weight_dtype(self) -> str:
        return "float32"

    def update_weights(self, state_dict: Mapping[str, Any]) -> None:
        """Take the actor's weights (their ``version``) after ``sync_s``."""
        with self.log.busy("sync", version=int(state_dict["version"])):
            if self.sync_s > 0:
                time.sleep(self.sync_s)
            self.version = int(state_dict["version"])

    def num_sync_ranks(self) -> int:
        return 1

    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int, backend: str) -> None:
        raise NotImplementedError(
            "the simulated engine loads weights through the object store only: set "
            "worker.rollout.weight_sync=object_store"
        )

    def receive_weights(self, plan: Any) -> int:
        raise NotImplementedError(
            "the simulated engine loads weights through the object store only: set "
            "worker.rollout.weight_sync=object_store"
        )


def simulated_output(prompt_id: str, sample_index: int, sampling: SamplingParams, version: int) -> RolloutOutput:
    """The answer of sample ``sample_index`` of ``prompt_id``: a function of the sampling seed, the ids and the
    weights version only. Longer than ``sampling.max_tokens`` → cut, ``finish_reason`` ``length``."""
    rng = np.random.default_rng(derive_seed(int(sampling.seed or 0), "simulated-rollout", prompt_id, sample_index))
    pick = int(rng.integers(len(_COT)))
    text = f"<CoT>{_COT[pick]} ({prompt_id}#{sample_index})</CoT>\n<Re_edit>{_EDITS[pick]}, variant {sample_index}</Re_edit>"
    data = text.encode()
    finish = "stop"
    if len(data) > sampling.max_tokens:
        data, finish = data[: sampling.max_tokens], "length"
        text = data.decode(errors="ignore")
    logprobs = (-rng.uniform(0.01, 2.0, size=len(data))).tolist()
    return RolloutOutput(
        prompt_id, sample_index, text, [b + TOKEN_OFFSET for b in data], logprobs, finish, {"weights_version": version}
    )


if ENGINE_NAME not in ENGINES.names():
    ENGINES.register(
        ENGINE_NAME,
        EngineFacts(
            tensor_parallel=False,
            own_interpreter=False,
            owns_processes=False,
            reserves_memory=False,
            supports_log_probs=False,
        ),
        SimulatedRolloutEngine,
    )


# ---------------------------------------------------------------------------------------------- editor


class RecordingEditor(SimulatedEditor):
    """:class:`SimulatedEditor` (``latency_s`` per image) that records each ``edit`` call as a busy interval."""

    def __init__(self, latency_s: float = 0.0, record_dir: str | Path | None = None, member: str | None = None):
        super().__init__(latency_s)
        self.log = BusyLog(record_dir, "editor", member or f"replica{os.getpid()}")

    def edit(self, requests: Sequence[EditRequest]) -> list[EditResult]:
        with self.log.busy("edit", images=len(requests)):
            return super().edit(requests)


# ---------------------------------------------------------------------------------------------- actor pool


def token_log_probs(responses: Sequence[Sequence[int]], width: int, version: int) -> torch.Tensor:
    """(B, width) log-probs of the responses under weights ``version``; zeros beyond each response."""
    out = torch.zeros(len(responses), width)
    for i, ids in enumerate(responses):
        t = torch.tensor(list(ids), dtype=torch.float32)
        out[i, : len(ids)] = -0.05 - 0.1 * torch.remainder(t + version, 7)
    return out


class SimulatedActorWorker:
    """One actor rank (a Ray actor): sleeps for each pass, keeps a weights version, writes real checkpoints."""

    def __init__(self, rank: int, update_s: float, logprob_s: float, record_dir: str | None):
        self.rank = rank
        self.update_s = float(update_s)
        self.logprob_s = float(logprob_s)
        self.version = 0
        self.log = BusyLog(record_dir, "actor", f"rank{rank}")

    def ready(self) -> int:
        return self.rank

    def log_probs(self, responses: list[list[int]], width: int, kind: str) -> torch.Tensor:
        with self.log.busy(kind, version=self.version, rows=len(responses)):
            if self.logprob_s > 0:
                time.sleep(self.logprob_s)
            return token_log_probs(responses, width, self.version)

    def update(
        self,
        prompt_ids: list[str],
        responses: list[list[int]],
        advantages: torch.Tensor,
        old_log_probs: torch.Tensor | None,
        valid: torch.Tensor,
    ) -> dict[str, float]:
        """One update over this rank's rows: sleeps ``update_s``, bumps the version. The loss is real arithmetic
        of the rows: −mean over valid rows of advantage × mean token ratio exp(log-prob now − old log-prob), so
        it moves off −mean(advantage) when the old log-probs come from older weights (off-policy)."""
        with self.log.busy("update", version=self.version, prompt_ids=prompt_ids):
            if self.update_s > 0:
                time.sleep(self.update_s)
            width = max((len(r) for r in responses), default=0)
            now = token_log_probs(responses, width, self.version)
            old = now if old_log_probs is None else old_log_probs[:, :width]
            if old.shape != now.shape:
                raise ValueError(f"old log-probs of shape {tuple(old.shape)} for responses of {tuple(now.shape)}")
            mask = torch.arange(width)[None, :] < torch.tensor([len(r) for r in responses])[:, None]
            ratio = ((torch.exp(now - old) * mask).sum(1) / mask.sum(1).clamp(min=1)).float()
            adv = (advantages if advantages.dim() == 1 else advantages.mean(dim=1)).float()
            rows = valid.bool()
            loss = float(-(adv * ratio)[rows].mean()) if bool(rows.any()) else 0.0
            self.version += 1
            return {
                "actor/pg_loss": loss,
                "actor/ratio_mean": float(ratio[rows].mean()) if bool(rows.any()) else 1.0,
                "actor/rows": float(rows.sum()),
                "actor/version": float(self.version),
            }

    def state(self) -> dict[str, Any]:
        return {"version": torch.tensor(self.version)}

    def save(self, folder: str) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        Path(folder, f"rank{self.rank}.json").write_text(json.dumps({"version": self.version}))

    def load(self, folder: str) -> None:
        self.version = int(json.loads(Path(folder, f"rank{self.rank}.json").read_text())["version"])


class SimulatedActorPool:
    """The driver's handle on ``num_workers`` :class:`SimulatedActorWorker` Ray actors; satisfies
    :class:`~easyr1.trainer.contracts.TrainingActor` (weights move through the object store only)."""

    def __init__(
        self,
        *,
        num_workers: int = 1,
        update_s: float = 0.0,
        logprob_s: float = 0.0,
        record_dir: str | Path | None = None,
        actor_options: Mapping[str, Any] | None = None,
    ):
        import ray

        options = {"num_cpus": 0.1, **(actor_options or {})}
        remote = ray.remote(SimulatedActorWorker).options(**options, max_restarts=0)
        rd = None if record_dir is None else str(record_dir)
        self.workers = [remote.remote(r, update_s, logprob_s, rd) for r in range(num_workers)]
        ray.get([w.ready.remote() for w in self.workers])

    @property
    def device(self) -> str:
        return "cpu"

    def _shares(self, n: int) -> list[slice]:
        k = min(len(self.workers), max(1, n))
        bounds = [round(i * n / k) for i in range(k + 1)]
        return [slice(bounds[i], bounds[i + 1]) for i in range(k)]

    def _log_probs(self, responses: Sequence[Sequence[int]], kind: str) -> torch.Tensor:
        import ray

        width = max((len(r) for r in responses), default=0)
        shares = self._shares(len(responses))
        work = zip(self.workers, shares, strict=False)  # fewer rows than workers: the first ones
        refs = [w.log_probs.remote([list(r) for r in responses[s]], width, kind) for w, s in work]
        return torch.cat(ray.get(refs)) if refs else torch.zeros(0, width)

    def compute_log_probs(self, batch: PolicyBatch, *, temperature: float | None = None) -> torch.Tensor:
        return self._log_probs(batch.responses, "old_logprob")

    def compute_ref_log_probs(self, batch: PolicyBatch) -> torch.Tensor:
        return self._log_probs(batch.responses, "ref_logprob")

    def response_log_probs(
        self, prompts: Sequence[PolicyPrompt], responses: Sequence[Sequence[int]], *, temperature: float | None = None
    ) -> torch.Tensor:
        return self._log_probs(responses, "probe_logprob")

    def update_policy(self, batch: PolicyBatch) -> dict[str, float]:
        """Every worker updates on its share of the rows (in the same ``update_s``); the ranks' metrics averaged."""
        import ray

        if batch.advantages is None:
            raise ValueError("update_policy needs the batch's advantages")
        valid = batch.valid if batch.valid is not None else torch.ones(len(batch), dtype=torch.bool)
        refs = []
        for w, s in zip(self.workers, self._shares(len(batch)), strict=False):
            old = None if batch.old_log_probs is None else batch.old_log_probs[s]
            ids = [p.id for p in batch.prompts[s]]
            responses = [list(r) for r in batch.responses[s]]
            refs.append(w.update.remote(ids, responses, batch.advantages[s], old, valid[s]))
        parts = ray.get(refs)
        return {k: float(np.mean([p[k] for p in parts])) for k in parts[0]}

    def full_state_dict_ref(self) -> Any:
        return self.workers[0].state.remote()

    def weight_plan(self, engine_dtype: str, bucket_bytes: int) -> Any:
        raise NotImplementedError("the simulated actor pool syncs through the object store only")

    def start_weight_sync_server(self) -> tuple[str, int]:
        raise NotImplementedError("the simulated actor pool syncs through the object store only")

    def join_weight_sync_async(self, host: str, port: int, world_size: int, backend: str) -> Any:
        raise NotImplementedError("the simulated actor pool syncs through the object store only")

    def broadcast_weights_async(self, plan: Any) -> list[Any]:
        raise NotImplementedError("the simulated actor pool syncs through the object store only")

    def save_checkpoint(self, path: str) -> None:
        import ray

        ray.get([w.save.remote(str(Path(path) / "actor")) for w in self.workers])

    def load_checkpoint(self, path: str) -> None:
        import ray

        ray.get([w.load.remote(str(Path(path) / "actor")) for w in self.workers])

    def export_hf(self, path: str, dtype: str | None = None) -> None:
        import ray

        Path(path).mkdir(parents=True, exist_ok=True)
        state = ray.get(self.full_state_dict_ref())
        Path(path, "simulated_weights.json").write_text(json.dumps({"version": int(state["version"])}))

    def close(self) -> None:
        import ray

        for w in self.workers:
            ray.kill(w)
        self.workers = []
