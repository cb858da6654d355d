"""The driver's handle on the actor: ``ActorPool(cfg)`` starts the FSDP2 workers and shards every call over them.

Typical GRPO step (driver)::

    pool = ActorPool(cfg, total_steps=training_steps * optimizer_steps_per_training_step(cfg))
    batch = PolicyBatch(prompts, responses)                    # one prompt object per response
    batch.old_log_probs = pool.compute_log_probs(batch)        # (B, T)
    batch.ref_log_probs = pool.compute_ref_log_probs(batch)    # (B, T), KL on
    batch.advantages, batch.valid = adv, sample_mask           # from easyr1.algorithms
    metrics = pool.update_policy(batch)

Every call waits by ``worker.actor.call_timeout_s``: a rank still in a call past it (alive but hung) is killed and
the call raises :class:`ActorCallTimeout`; the driver then rebuilds the pool like after a lost worker
(``easyr1.trainer.recovery``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from easyr1.config import EasyR1Config
from easyr1.config.actor import OptimConfig
from easyr1.core.types import PolicyPrompt
from easyr1.pools import Deadline, RayPool, ray_actor_options

from .batch import PolicyBatch, shard_batch
from .settings import actor_settings

logger = logging.getLogger(__name__)


def optimizer_steps_per_training_step(cfg: EasyR1Config) -> int:
    """Mini-batches per rollout batch × PPO epochs (the unit of the lr schedule)."""
    actor = cfg.worker.actor
    return max(1, cfg.data.rollout_batch_size // actor.global_batch_size) * actor.ppo_epochs


def _pad_cat(parts: list[torch.Tensor], counts: list[int], width: int) -> torch.Tensor:
    rows = []
    for part, real in zip(parts, counts, strict=True):
        part = part[:real]
        if part.shape[1] < width:
            part = torch.nn.functional.pad(part, (0, width - part.shape[1]))
        rows.append(part[:, :width])
    return torch.cat(rows, dim=0)


class ActorCallTimeout(TimeoutError):
    """An actor pool call missed ``worker.actor.call_timeout_s``: the ranks still in it were killed (hung but alive
    — a deadlock, a stuck collective, a stopped process), so the pool counts as lost and the driver rebuilds it
    (``easyr1.trainer.recovery``)."""

    def __init__(self, call: str, ranks: list[int], seconds: float):
        super().__init__(
            f"actor pool: rank(s) {ranks} did not finish {call} within worker.actor.call_timeout_s={seconds:g}s; "
            "killed them"
        )
        self.call = call
        self.ranks = ranks
        self.seconds = seconds


class ActorPool(RayPool):
    """FSDP2 actor workers (Ray actors) forming one torch.distributed world (gloo on CPU, NCCL on GPU).

    Args:
        cfg: the full config (``worker.actor``, ``worker.ref``, ``algorithm``, ``cluster.actor`` are used).
        total_steps: optimizer steps the lr schedule spans (needed for cosine decay or a warm-up ratio).
        optim: optimizer settings to use instead of ``worker.actor.optim`` (e.g. the SFT learning rate).
        with_reference: load the frozen reference copy; default: when a KL term is configured.
        startup_timeout_s: how long the workers may take to be placed and start before a clear error.
    """

    def __init__(
        self,
        cfg: EasyR1Config,
        *,
        total_steps: int | None = None,
        optim: OptimConfig | None = None,
        with_reference: bool | None = None,
        startup_timeout_s: float = 600.0,
    ):
        from .worker import ActorWorker

        super().__init__(
            "actor pool", max_restarts=cfg.worker.actor.max_restarts, restart_config="worker.actor.max_restarts"
        )
        self.cfg = cfg
        self.startup_timeout_s = startup_timeout_s
        self.settings = actor_settings(cfg, total_steps=total_steps, optim=optim, with_reference=with_reference)
        self.world_size = cfg.worker.actor.num_workers
        self.call_timeouts = 0
        """Calls that missed ``worker.actor.call_timeout_s`` (their hung ranks killed) over the pool's life."""
        self._timeouts_reported = 0
        self._hung: dict[int, str] = {}  # ranks killed by a call deadline, until the pool is rebuilt
        options = ray_actor_options(cfg.cluster.actor)
        self.workers = self.start_members(
            ActorWorker, options, self.world_size, lambda rank: ((self.settings, rank, self.world_size), {})
        )
        try:
            self._form_world()
        except Exception:
            self.shutdown(graceful=False)
            raise
        logger.info("actor pool ready: %d workers on %s", self.world_size, self.info[0]["device"])
        self._restarts_reported = 0

    def _form_world(self) -> None:
        """Wait for the started workers, then build their torch.distributed world and load the model."""
        import ray

        self.wait_ready([w.ping.remote() for w in self.workers], Deadline(self.startup_timeout_s))
        host, port = ray.get(self.workers[0].rendezvous.remote(), timeout=self.startup_timeout_s)
        self.info = self._get([w.setup.remote(host, port) for w in self.workers], "setup")

    # ------------------------------------------------------------ lost workers
    def lost_workers(self, timeout_s: float = 60.0) -> dict[int, str]:
        """``{rank: cause}`` of the workers whose process is gone (or that do not answer a ping within
        ``timeout_s``): asked after a failed call, to tell a lost worker from an error a worker raised. Ranks a
        call deadline killed (:class:`ActorCallTimeout`) are named with that cause."""
        lost = self.lost_members(self.workers, lambda w: w.ping.remote(), Deadline(timeout_s))
        return dict(sorted({**lost, **self._hung}.items()))

    def restart_workers(self, rank: int, cause: str) -> None:
        """Rank ``rank`` was lost (``cause``): kill every worker and start the whole world again (FSDP state is
        sharded: the survivors cannot go on without it) with the current settings. The fresh workers hold the
        start weights and a fresh optimizer; the caller restores them (:meth:`load_checkpoint`). Raises
        :class:`~easyr1.pools.WorkerLost` past ``worker.actor.max_restarts`` or when the fresh world cannot form."""
        from easyr1.pools import WorkerLost, describe

        self._hung = {}
        self.workers = self.replace_all(self.workers, rank, f"rank {rank}: {cause}")
        try:
            self._form_world()
        except Exception as exc:
            self.kill_members(self.workers)
            raise WorkerLost(self.what, rank, f"{cause}; the restarted workers did not start: {describe(exc)}") from exc
        logger.warning("actor pool: all %d workers restarted (restart %d)", self.world_size, self.pool_restarts)

    def drain_metrics(self) -> dict[str, float]:
        """``actor/restarts``: restarts of the whole pool since the previous call; ``actor/call_timeouts``: calls
        that missed ``worker.actor.call_timeout_s`` since then."""
        metrics = {
            "actor/restarts": float(self.pool_restarts - self._restarts_reported),
            "actor/call_timeouts": float(self.call_timeouts - self._timeouts_reported),
        }
        self._restarts_reported, self._timeouts_reported = self.pool_restarts, self.call_timeouts
        return metrics

    # --------------------------------------------------------------- helpers
    @property
    def call_timeout_s(self) -> float:
        """``worker.actor.call_timeout_s`` (read at each call)."""
        return float(self.cfg.worker.actor.call_timeout_s)

    def _get(self, refs: Any, call: str, ranks: Sequence[int] | None = None) -> Any:
        """``ray.get`` of one call's refs (``ranks[i]`` made ``refs[i]``; default rank ``i``; one ref: rank 0) by
        ``worker.actor.call_timeout_s``, failing at the first failed worker call: when a rank dies, the others may
        be blocked in a collective with it (gloo fails them soon, NCCL only at its timeout); the restart kills them.
        Past the deadline the ranks still in the call are killed and :class:`ActorCallTimeout` is raised."""
        import ray

        single = not isinstance(refs, list)
        pending = [refs] if single else list(refs)
        rank_of = dict(zip(pending, ranks if ranks is not None else range(len(pending)), strict=True))
        deadline = Deadline(self.call_timeout_s)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=deadline.remaining())
            if not ready:
                self._hung_ranks(call, sorted(rank_of[ref] for ref in pending))
            ray.get(ready)  # raises the worker's error (or Ray's lost-actor error) now
        return ray.get(refs)

    def _hung_ranks(self, call: str, ranks: list[int]) -> None:
        """``ranks`` missed the deadline of ``call``: kill them (alive but hung: the pool cannot go on with them),
        count it, and raise :class:`ActorCallTimeout` (the driver then rebuilds the pool from a checkpoint)."""
        seconds = self.call_timeout_s
        self.call_timeouts += 1
        logger.error(
            "actor pool: rank(s) %s still in %s after worker.actor.call_timeout_s=%gs; killing them",
            ranks,
            call,
            seconds,
        )
        self.kill_members([self.workers[r] for r in ranks])
        for r in ranks:
            self._hung[r] = f"hung in {call}: no answer within worker.actor.call_timeout_s={seconds:g}s (killed)"
        raise ActorCallTimeout(call, ranks, seconds)

    def _sharded(self, method: str, batch: PolicyBatch, *args: Any) -> tuple[list[Any], list[int]]:
        shards, counts = shard_batch(batch, self.world_size)
        refs = [getattr(w, method).remote(shard, *args) for w, shard in zip(self.workers, shards, strict=True)]
        return self._get(refs, method), counts

    @property
    def mini_batch_size_per_worker(self) -> int:
        """Responses per optimizer step on each worker: ``global_batch_size × n / num_workers``."""
        a = self.cfg.worker.actor
        return max(1, a.global_batch_size * self.settings.rollout_n // self.world_size)

    # ------------------------------------------------------------ experience
    def compute_log_probs(self, batch: PolicyBatch, *, temperature: float | None = None) -> torch.Tensor:
        """(B, T) per-token log-probs of ``batch.responses`` under the current policy (T = longest response;
        zeros beyond each response), at the sampling temperature unless ``temperature`` is given."""
        parts, counts = self._sharded("compute_log_probs", batch, "actor", temperature)
        return _pad_cat(parts, counts, batch.max_response_length)

    def response_log_probs(
        self, prompts: Sequence[PolicyPrompt], responses: Sequence[Sequence[int]], *, temperature: float | None = None
    ) -> torch.Tensor:
        """:meth:`compute_log_probs` of ``responses[i]`` after ``prompts[i]`` (one prompt per response): what the
        rollout pool's sync probe asks for, without it having to build a :class:`PolicyBatch`."""
        return self.compute_log_probs(PolicyBatch(list(prompts), [list(r) for r in responses]), temperature=temperature)

    def compute_ref_log_probs(self, batch: PolicyBatch) -> torch.Tensor:
        """(B, T) per-token log-probs under the frozen reference."""
        parts, counts = self._sharded("compute_log_probs", batch, "ref")
        return _pad_cat(parts, counts, batch.max_response_length)

    # --------------------------------------------------------------- updates
    def update_policy(self, batch: PolicyBatch) -> dict[str, float]:
        """PPO (or GSPO) update over ``batch``: mini-batches of ``global_batch_size × n`` responses, ``ppo_epochs``
        passes. Needs ``advantages``; ``old_log_probs`` (else computed first) and ``ref_log_probs`` (KL loss on).
        Returns metrics (``actor/...``), identical from every rank."""
        if batch.advantages is None:
            raise ValueError("update_policy: batch.advantages is required")
        per_worker = min(self.mini_batch_size_per_worker, -(-len(batch) // self.world_size))
        results, _ = self._sharded("update_policy", batch, per_worker)
        return results[0]

    def sft_step(self, batch: PolicyBatch) -> dict[str, float]:
        """One optimizer step of cross-entropy on the response tokens (``sft/...`` metrics)."""
        results, _ = self._sharded("sft_step", batch)
        return results[0]

    def configure_optimizer(self, optim: OptimConfig, total_steps: int | None = None) -> None:
        """Fresh AdamW and schedule (e.g. GRPO after an SFT warm start in the same pool)."""
        self.settings.optim, self.settings.total_steps = optim, total_steps  # what a restarted world starts with
        self._get([w.configure_optimizer.remote(optim, total_steps) for w in self.workers], "configure_optimizer")

    # ----------------------------------------------------------------- state
    def save_checkpoint(self, path: str) -> None:
        """Sharded model + optimizer + schedule + RNG into ``path/actor`` (see ``actor.checkpoint``)."""
        self._get([w.save_checkpoint.remote(str(path)) for w in self.workers], "save_checkpoint")

    def load_checkpoint(self, path: str) -> None:
        self._get([w.load_checkpoint.remote(str(path)) for w in self.workers], "load_checkpoint")

    def export_hf(self, path: str, dtype: str | None = None) -> None:
        """Write the current policy as a Hugging Face folder (weights + processor) to ``path``."""
        self._get([w.export_hf.remote(str(path), dtype) for w in self.workers], "export_hf")

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The unsharded weights on CPU (through the object store)."""
        return self._get([w.full_state_dict.remote() for w in self.workers], "full_state_dict")[0]

    def full_state_dict_ref(self) -> Any:
        """A Ray ref to the unsharded weights (rank 0's result), for engines to fetch without the driver."""
        refs = [w.full_state_dict.remote() for w in self.workers]
        self._get(refs[1:], "full_state_dict", ranks=range(1, self.world_size))
        return refs[0]

    def optimizer_state_summary(self) -> list[dict[str, Any]]:
        return self._get([w.optimizer_state_summary.remote() for w in self.workers], "optimizer_state_summary")

    # ----------------------------------------------------- weight sync hooks
    def weight_plan(self, engine_dtype: str, bucket_bytes: int) -> Any:
        return self._get(self.workers[0].weight_plan.remote(engine_dtype, bucket_bytes), "weight_plan")

    def start_weight_sync_server(self) -> tuple[str, int]:
        return self._get(self.workers[0].start_weight_sync_server.remote(), "start_weight_sync_server")

    def join_weight_sync_async(self, host: str, port: int, world_size: int, backend: str) -> Any:
        """Rank 0 joins the weight-sync group; returns the Ray ref (wait for it together with the engines')."""
        return self.workers[0].join_weight_sync.remote(host, port, world_size, backend)

    def broadcast_weights_async(self, plan: Any) -> list[Any]:
        """All ranks gather, rank 0 broadcasts; returns Ray refs (bytes sent per rank)."""
        return [w.broadcast_weights.remote(plan) for w in self.workers]

    @property
    def device(self) -> str:
        return self.info[0]["device"]

    def shutdown(self, graceful: bool = True) -> None:
        """End the workers (``graceful``: leave the process group first)."""
        import ray

        workers, self.workers = getattr(self, "workers", []), []
        if workers and graceful:
            try:
                ray.get([w.shutdown.remote() for w in workers], timeout=30)
            except Exception as exc:  # a crashed worker must not stop the others from going away
                logger.warning("actor shutdown: %s", exc)
        self.kill_members(workers)
