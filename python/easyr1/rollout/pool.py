"""The driver's handle on the generation engines, and the actor → engines weight sync.

``RolloutPool(cfg)`` starts ``worker.rollout.num_engines`` engines (``hf`` or ``vllm``) as Ray actors placed with
``cluster.rollout``; ``generate`` splits prompts over them (``generate_stream``: the same, one engine's shard at a time
as it finishes); ``sync_weights(actor_pool)`` moves the actor's current
weights into every engine (collective broadcast, or the object store) and checks them on a fixed probe.

**Lost engines (issue 21).** An engine whose process died (Ray raises ``RayActorError``/``ActorDiedError``/
``ActorUnavailableError``) or that missed ``worker.rollout.call_timeout_s`` is replaced by a fresh actor with the
same options (:meth:`~easyr1.pools.RayPool.restart`, at most ``worker.rollout.max_restarts`` times per engine). The
fresh engine loads the latest weights through the object store from the actor pool of the last
:meth:`RolloutPool.sync_weights` (a collective group cannot take in one new member: the group is rebuilt for every
engine at the next sync, whose first broadcast is then full). ``generate`` then runs that engine's share again with
the same sampling parameters and engine index — so the same seeds and the same outputs. Past the limit,
:class:`~easyr1.pools.WorkerLost` names the engine and the cause. Restarts are counted as ``rollout/restarts``
(:meth:`RolloutPool.drain_metrics`, also merged into ``sync_weights``' metrics). An engine lost *during* a
collective broadcast leaves the sender and the other engines waiting until the group's timeout, so then every
engine is replaced and the sync runs again over a new group (:meth:`RolloutPool._broadcast`). When the actor pool
restarted its workers, :meth:`RolloutPool.reset_weight_sync` has the next sync build a new group.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from easyr1.config import EasyR1Config
from easyr1.core.registries import ENGINES
from easyr1.core.types import PolicyPrompt, RolloutOutput, SamplingParams
from easyr1.pools import Deadline, RayPool, describe, is_lost, ray_actor_options, worker_device, worker_threads

from .probe import probe_prompts
from .protocol import WeightSource

logger = logging.getLogger(__name__)

PROBE_TOKENS = 16


def _engine_class(name: str) -> type:
    """The engine class registered as ``name`` in :data:`easyr1.core.registries.ENGINES`."""
    return ENGINES.load(name)


class RolloutPool(RayPool):
    """Generation engines as Ray actors: the driver's :class:`~easyr1.rollout.protocol.Rollout`. Each engine
    satisfies :class:`~easyr1.rollout.protocol.RolloutEngine`; its class, the
    :class:`~easyr1.rollout.protocol.EngineFactory` hooks.

    Args:
        cfg: the full config (``worker.rollout``, ``worker.actor.model`` for the policy path and dtype,
            ``cluster.rollout`` for placement).
        model_path: policy folder to start from (default ``worker.actor.model.model_path``).
        startup_timeout_s: how long the engines may take to be placed and load before a clear error.
    """

    def __init__(self, cfg: EasyR1Config, *, model_path: str | None = None, startup_timeout_s: float = 600.0):
        rollout = cfg.worker.rollout
        super().__init__(
            "rollout pool", max_restarts=rollout.max_restarts, restart_config="worker.rollout.max_restarts"
        )
        self.cfg = cfg
        self.startup_timeout_s = startup_timeout_s
        model = cfg.worker.actor.model
        placement = cfg.cluster.rollout
        cls = _engine_class(rollout.name)
        self.facts = ENGINES.facts(rollout.name)
        options = ray_actor_options(placement)
        options.update(cls.actor_options(cfg))
        engine_kwargs = cls.engine_kwargs(cfg, device=worker_device(placement), threads=worker_threads(placement))
        self.engines = self.start_members(
            cls,
            options,
            rollout.num_engines,
            lambda i: ((model_path or model.model_path,), {"engine_index": i, **engine_kwargs}),
        )
        try:  # surfaces placement and load errors here, not at first use
            self.wait_ready([e.ping.remote() for e in self.engines], Deadline(startup_timeout_s))
        except Exception:
            self.shutdown()
            raise
        self._plan: Any = None
        self._group_ready = False
        self._probe = probe_prompts(2)
        self._source: WeightSource | None = None
        """The actor pool of the last sync: where a restarted engine gets the latest weights."""
        self._state_ref: Any = None
        """Or the object-store weights of the last :meth:`update_weights`."""
        self._restarts_reported = 0
        self._syncs = 0
        """Weight syncs done (``worker.rollout.sync_probe_interval`` counts them)."""
        self._replaced_since_probe = False

    # ------------------------------------------------------------ lost engines
    def _call_timeout(self) -> float:
        return self.cfg.worker.rollout.call_timeout_s

    def _recover(self, i: int, cause: str, *, load_weights: bool = True) -> None:
        """Replace engine ``i`` (lost: ``cause``) by a fresh one holding the latest weights."""
        import ray

        self._replaced_since_probe = True

        if self.facts.owns_processes:  # a hung engine's own processes first (a dead one's went with it)
            try:
                ray.get(self.engines[i].shutdown.remote(), timeout=30.0)
            except Exception as exc:
                logger.debug("rollout engine %d shutdown before restart: %s", i, exc)
        self.engines[i] = self.restart(
            i,
            self.engines[i],
            cause=f"engine {i}: {cause}",
            ready=lambda h: h.ping.remote(),
            deadline=Deadline(self.startup_timeout_s),
        )
        self._group_ready = False  # the group lost a member: rebuilt, for every engine, at the next sync
        if load_weights:
            self._load_latest(i)

    def _load_latest(self, i: int) -> None:
        """Engine ``i`` (fresh) loads the weights of the last sync; it already holds the start weights when there
        was none."""
        import ray

        ref = self._source.full_state_dict_ref() if self._source is not None else self._state_ref
        if ref is None:
            return
        ray.get(self.engines[i].update_weights.remote(ref), timeout=self._call_timeout())
        logger.info("rollout engine %d restarted and loaded the latest weights", i)

    def _ensure_alive(self) -> None:
        """Ping every engine by the call deadline; replace the lost ones (before a sync, which needs them all)."""
        import ray

        refs = {e.ping.remote(): i for i, e in enumerate(self.engines)}
        ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=self._call_timeout())
        for ref in ready:
            try:
                ray.get(ref)
            except Exception as exc:
                if not is_lost(exc):
                    raise
                self._recover(refs[ref], describe(exc), load_weights=False)
        for ref in pending:
            self.kill_members([self.engines[refs[ref]]])
            self._recover(refs[ref], f"no answer to ping within {self._call_timeout():g}s", load_weights=False)

    def drain_metrics(self) -> dict[str, float]:
        """``rollout/restarts``: engines replaced since the previous call."""
        total = sum(self.restarts)
        metrics = {"rollout/restarts": float(total - self._restarts_reported)}
        self._restarts_reported = total
        return metrics

    # ------------------------------------------------------------ generation
    def generate(self, prompts: Sequence[PolicyPrompt], sampling: SamplingParams) -> list[RolloutOutput]:
        """``len(prompts) × sampling.n`` outputs grouped by prompt in input order; prompts are split into
        contiguous chunks, one per engine."""
        shards: dict[int, list[RolloutOutput]] = {}
        for i, part in self._generate_shards(prompts, sampling):
            shards[i] = part
        return [out for i in sorted(shards) for out in shards[i]]

    def generate_stream(
        self, prompts: Sequence[PolicyPrompt], sampling: SamplingParams
    ) -> Iterator[list[RolloutOutput]]:
        """:meth:`generate`, one engine's shard at a time, each as soon as that engine is done (completion order).

        The shards are the same contiguous prompt ranges, with the same engine index and sampling parameters, as
        :meth:`generate`'s, so each output is the same; ordered by prompt position and ``sample_index`` their
        concatenation is :meth:`generate`'s list. A lost or late engine is replaced and its share run again before
        its shard is yielded (the same deadline and restart rules as :meth:`generate`). Closing the iterator early
        stops waiting; calls still running finish on their engines (a Ray actor call that runs cannot be taken
        back) and the next call queues behind them."""
        for _, part in self._generate_shards(prompts, sampling):
            yield part

    def _generate_shards(
        self, prompts: Sequence[PolicyPrompt], sampling: SamplingParams
    ) -> Iterator[tuple[int, list[RolloutOutput]]]:
        """``(engine index, its shard's outputs)`` as the engines finish; lost or late engines are replaced and
        their share run again."""
        import ray

        if not prompts:
            return
        k = min(len(self.engines), len(prompts))
        bounds = [round(i * len(prompts) / k) for i in range(k + 1)]
        shares = [list(prompts[bounds[i] : bounds[i + 1]]) for i in range(k)]
        timeout = self._call_timeout()
        calls: dict[Any, tuple[int, Deadline]] = {}

        def submit(i: int) -> None:
            calls[self.engines[i].generate.remote(shares[i], sampling)] = (i, Deadline(timeout))

        for i in range(k):
            submit(i)
        try:
            while calls:
                wait_s = min(d.remaining() or 0.0 for _, d in calls.values())
                ready, _ = ray.wait(list(calls), num_returns=1, timeout=wait_s)
                done: list[tuple[int, list[RolloutOutput]]] = []
                for ref in ready:
                    i, _ = calls.pop(ref)
                    try:
                        done.append((i, ray.get(ref)))
                    except Exception as exc:
                        if not is_lost(exc):
                            raise
                        self._recover(i, describe(exc))
                        submit(i)  # same share, same sampling, same engine index: the same seeds
                for ref, (i, deadline) in list(calls.items()):
                    if deadline.expired:
                        del calls[ref]
                        self.kill_members([self.engines[i]])
                        self._recover(i, f"no answer within worker.rollout.call_timeout_s={timeout:g}s")
                        submit(i)
                yield from done
        finally:
            if calls:
                logger.info("rollout pool: stopped waiting for %d engine call(s) still running", len(calls))

    # ----------------------------------------------------------------- weights
    def update_weights(self, state_dict: Mapping[str, Any]) -> None:
        """Object-store path: one ``ray.put`` of the full state dict, loaded by every engine."""
        import ray

        ref = ray.put(dict(state_dict))
        self._ensure_alive()
        ray.get([e.update_weights.remote(ref) for e in self.engines], timeout=self._call_timeout())
        self._source, self._state_ref = None, ref

    def _engine_dtype(self) -> str:
        import ray

        return ray.get(self.engines[0].weight_dtype.remote())

    def _setup_collective(self, actor_pool: WeightSource) -> None:
        import ray

        rollout = self.cfg.worker.rollout
        engine_dtype = self._engine_dtype()
        self._plan = actor_pool.weight_plan(engine_dtype, rollout.weight_sync_bucket_mb * 2**20)
        ranks = ray.get([e.num_sync_ranks.remote() for e in self.engines])
        world = 1 + sum(ranks)
        engines_on_gpu = worker_device(self.cfg.cluster.rollout) == "cuda"
        backend = "nccl" if actor_pool.device == "cuda" and engines_on_gpu else "gloo"
        host, port = actor_pool.start_weight_sync_server()
        refs = [actor_pool.join_weight_sync_async(host, port, world, backend)]
        offset = 1
        for engine, n in zip(self.engines, ranks, strict=True):
            refs.append(engine.init_weight_sync.remote(host, port, offset, world, backend))
            offset += n
        ray.get(refs, timeout=self._call_timeout())
        self._group_ready = True
        logger.info(
            "weight sync group ready: %d ranks, %s, %d buckets, %.1f MB",
            world,
            backend,
            len(self._plan.buckets),
            self._plan.total_bytes / 2**20,
        )

    def reset_weight_sync(self) -> None:
        """The sender was replaced (the actor pool restarted its workers): the next sync builds the weight-sync
        group again, and its first broadcast is full."""
        self._group_ready = False

    def _broadcast(self, actor_pool: WeightSource) -> int | None:
        """One collective sync; bytes sent, or ``None`` when engines were lost during it and have been replaced
        (the caller rebuilds the group and syncs again).

        A gloo or NCCL broadcast does not fail when a receiver dies: the sender and the other receivers wait for it
        until the group's timeout. So when an engine's call fails with a lost-actor error (or an engine misses the
        call deadline), every engine is killed — which ends the sender's broadcast at once — the actor ranks are
        waited for (rank 0 gathers the remaining tensors with the other ranks and drops the group), and every
        engine is started again (counted in ``rollout/restarts``); the next broadcast over the new group is full.
        A lost *actor* worker is raised as it is (the driver restarts the actor pool)."""
        import ray

        timeout = self._call_timeout()
        actor_refs = actor_pool.broadcast_weights_async(self._plan)
        engine_refs = {e.receive_weights.remote(self._plan): i for i, e in enumerate(self.engines)}
        deadline = Deadline(timeout)
        pending = [*actor_refs, *engine_refs]
        lost: dict[int, str] = {}
        while pending and not lost:
            ready, pending = ray.wait(pending, num_returns=1, timeout=deadline.remaining())
            if not ready:  # the deadline: every engine not done counts as lost
                lost = {
                    i: f"no answer within worker.rollout.call_timeout_s={timeout:g}s during a weight sync"
                    for ref, i in engine_refs.items()
                    if ref in pending
                }
                if not lost:
                    raise TimeoutError(f"actor pool: weight broadcast not done within {timeout:g}s")
                break
            try:
                ray.get(ready)
            except Exception as exc:
                if ready[0] in engine_refs and is_lost(exc):
                    lost[engine_refs[ready[0]]] = f"lost during a weight sync: {describe(exc)}"
                elif not is_lost(exc):  # a receiver's error while the sync goes on: a peer may have been lost
                    lost = self._lost_engines()
                    if not lost:
                        raise
                else:
                    raise  # an actor rank: the driver restarts the actor pool
        if not lost:
            return int(ray.get(actor_refs[0]))
        logger.warning("rollout pool: engine(s) %s lost during a weight sync; restarting every engine", sorted(lost))
        self.kill_members(self.engines)  # ends the sender's broadcast (a receiver's death alone does not)
        try:
            ray.get(actor_refs, timeout=timeout)
        except Exception as exc:
            if is_lost(exc):
                raise
            logger.info("actor's weight broadcast ended: %s", describe(exc))
        for i in range(len(self.engines)):
            cause = lost.get(i, f"blocked in a weight sync with engine(s) {sorted(lost)} lost")
            self._recover(i, cause, load_weights=False)
        return None

    def _lost_engines(self) -> dict[int, str]:
        return self.lost_members(self.engines, lambda e: e.ping.remote(), Deadline(min(30.0, self._call_timeout())))

    def sync_weights(self, actor_pool: WeightSource, *, check: bool | None = None) -> dict[str, float]:
        """Copy the actor's current weights into every engine (``worker.rollout.weight_sync``), then — when
        ``check`` (default: ``worker.rollout.check_sync_logprobs`` on every ``sync_probe_interval``-th sync and on
        a sync after an engine was replaced) — compare engine and actor log-probs on the fixed probe. Returns
        ``rollout/sync_*`` metrics."""
        import ray

        rollout = self.cfg.worker.rollout
        if check is None:
            due = self._syncs % rollout.sync_probe_interval == 0 or self._replaced_since_probe
            check = rollout.check_sync_logprobs and due
        self._syncs += 1
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        self._ensure_alive()  # a lost engine is replaced first (the sync below gives it the weights)
        if rollout.weight_sync == "collective":
            sent = None
            while sent is None:  # again after replacing engines lost mid-broadcast (bounded by max_restarts)
                if not self._group_ready:
                    self._setup_collective(actor_pool)
                sent = self._broadcast(actor_pool)
            metrics["rollout/sync_bytes"] = float(sent)
        else:
            state_ref = actor_pool.full_state_dict_ref()
            ray.get([e.update_weights.remote(state_ref) for e in self.engines], timeout=self._call_timeout())
        self._source, self._state_ref = actor_pool, None
        metrics["rollout/sync_time_s"] = time.perf_counter() - start
        metrics.update(self.drain_metrics())
        if check:
            metrics["rollout/sync_probe_max_abs_diff"] = self.verify_sync(actor_pool)
            self._replaced_since_probe = False
        return metrics

    def verify_sync(self, actor_pool: WeightSource) -> float:
        """:meth:`probe_difference`, raising ``RuntimeError`` above ``worker.rollout.sync_probe_tolerance``."""
        diff = self.probe_difference(actor_pool)
        tolerance = self.cfg.worker.rollout.sync_probe_tolerance
        if tolerance is not None and diff > tolerance:
            raise RuntimeError(
                f"weight sync check failed: engine and actor log-probs differ by {diff:.3g} on the probe "
                f"(worker.rollout.sync_probe_tolerance={tolerance})"
            )
        return diff

    def probe_difference(self, actor_pool: WeightSource) -> float:
        """Greedy-generate on the probe with every engine, score the same tokens with the actor; the largest
        absolute per-token log-prob difference over all engines."""
        import ray

        sampling = SamplingParams(n=1, temperature=0.0, max_tokens=PROBE_TOKENS, seed=0)
        per_engine = ray.get([e.generate.remote(self._probe, sampling) for e in self.engines])
        outputs = [o for part in per_engine for o in part]
        prompts = [p for _ in per_engine for p in self._probe]
        # Engines report raw (temperature-1) log-probs; ask the actor for the same.
        actor_lp = actor_pool.response_log_probs(prompts, [o.token_ids for o in outputs], temperature=1.0)
        worst = 0.0
        for i, out in enumerate(outputs):
            if out.logprobs is None:
                raise RuntimeError("engine returned no log-probs for the probe")
            engine_lp = torch.tensor(out.logprobs)
            worst = max(worst, float((engine_lp - actor_lp[i, : len(out.logprobs)]).abs().max()))
        return worst

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Stop the engines: engines that own processes (vLLM: engine core and workers) shut them down first
        (killing the actor alone would orphan them), then every actor is killed."""
        import ray

        engines, self.engines = getattr(self, "engines", []), []
        if engines and self.facts.owns_processes:
            refs = [e.shutdown.remote() for e in engines]
            try:
                ray.get(refs, timeout=timeout_s)
            except Exception as exc:  # still kill the actors below
                logger.warning("%s engine shutdown: %s: %s", self.cfg.worker.rollout.name, type(exc).__name__, exc)
        self.kill_members(engines)
