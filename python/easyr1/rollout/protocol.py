"""The rollout contracts: what the driver asks of the rollout pool, what the pool asks of each engine, and what
the pool asks of the actor pool when it moves weights.

* :class:`Rollout` — the driver's side (``RolloutPool``): generate (whole, or streamed per shard), sync weights
  from the actor, shut down.
* :class:`RolloutEngine` — one engine in its Ray actor: generate, answer a ping, and receive weights
  (:class:`WeightReceiver`). Optional capabilities follow the engine's facts in ``easyr1.core.registries.ENGINES``:
  ``owns_processes`` → :class:`OwnsProcesses`, ``supports_log_probs`` → :class:`ScoresResponses`.
* :class:`EngineFactory` — the class-level hooks the pool calls on the driver before starting engine actors.
* :class:`WeightSource` — what ``RolloutPool.sync_weights`` calls on the actor pool.

``tests/rollout/test_protocols.py`` checks every registered engine class and the pool against these, and that the
pool calls nothing on an engine or on the actor pool that these do not declare.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from easyr1.core.types import PolicyPrompt, RolloutOutput, SamplingParams

if TYPE_CHECKING:
    from easyr1.config import EasyR1Config
    from easyr1.transfer.weight_sync import WeightPlan

__all__ = [
    "EngineFactory",
    "OwnsProcesses",
    "Rollout",
    "RolloutEngine",
    "ScoresResponses",
    "WeightReceiver",
    "WeightSource",
]


@runtime_checkable
class WeightReceiver(Protocol):
    """An engine's side of the actor → engine weight transfer (``easyr1.transfer.weight_sync``)."""

    def weight_dtype(self) -> str:
        """The engine's parameter dtype name; floating weights are sent in it."""
        ...

    def update_weights(self, state_dict: Mapping[str, Any]) -> None:
        """Object-store path: load full (unsharded) tensors."""
        ...

    def num_sync_ranks(self) -> int:
        """How many ranks this engine adds to the weight-sync process group (its TP workers)."""
        ...

    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int, backend: str) -> None:
        """Join the weight-sync group at ``host:port`` as ranks ``rank_offset …``."""
        ...

    def receive_weights(self, plan: WeightPlan) -> int:
        """Receive one broadcast following ``plan``; returns the bytes received."""
        ...


@runtime_checkable
class RolloutEngine(WeightReceiver, Protocol):
    """One generation engine: everything the rollout pool calls on every engine."""

    def generate(self, prompts: Sequence[PolicyPrompt], sampling: SamplingParams) -> list[RolloutOutput]:
        """``len(prompts) * sampling.n`` outputs, grouped by prompt in input order."""
        ...

    def ping(self) -> int:
        """Readiness probe of the pool's start-up wait; returns the engine index."""
        ...


@runtime_checkable
class OwnsProcesses(Protocol):
    """Engines that start processes of their own (fact ``owns_processes``)."""

    def shutdown(self) -> None:
        """Stop those processes; the pool calls it before killing the engine's actor."""
        ...


@runtime_checkable
class ScoresResponses(Protocol):
    """Engines with a training-forward scorer (fact ``supports_log_probs``)."""

    def log_probs(self, prompts: Sequence[PolicyPrompt], responses: Sequence[Sequence[int]]) -> list[list[float]]:
        """Per-token log-probs of given responses under the engine's weights."""
        ...


@runtime_checkable
class EngineFactory(Protocol):
    """Class-level hooks of an engine class, called by the pool on the driver (no engine built yet)."""

    def actor_options(self, cfg: EasyR1Config) -> dict[str, Any]:
        """Ray options beyond the pool's placement (e.g. ``runtime_env``)."""
        ...

    def engine_kwargs(self, cfg: EasyR1Config, *, device: str, threads: int | None) -> dict[str, Any]:
        """Constructor keywords besides ``model_path`` and ``engine_index``."""
        ...


@runtime_checkable
class WeightSource(Protocol):
    """What the rollout pool calls on the actor pool to move and check weights (``ActorPool`` satisfies it)."""

    @property
    def device(self) -> str:
        """``cuda`` or ``cpu``: picks NCCL or gloo for the weight-sync group."""
        ...

    def weight_plan(self, engine_dtype: str, bucket_bytes: int) -> Any:
        """The bucketed transfer plan for engines holding weights in ``engine_dtype``."""
        ...

    def start_weight_sync_server(self) -> tuple[str, int]:
        """Host and port of the weight-sync group's rendezvous."""
        ...

    def join_weight_sync_async(self, host: str, port: int, world_size: int, backend: str) -> Any:
        """Rank 0 joins the group; returns a Ray ref to wait on with the engines'."""
        ...

    def broadcast_weights_async(self, plan: Any) -> list[Any]:
        """Gather and broadcast one full copy of the weights; Ray refs (bytes sent first)."""
        ...

    def full_state_dict_ref(self) -> Any:
        """A Ray ref to the unsharded weights (object-store path)."""
        ...

    def response_log_probs(
        self, prompts: Sequence[PolicyPrompt], responses: Sequence[Sequence[int]], *, temperature: float | None = None
    ) -> Any:
        """(B, T) log-probs of ``responses[i]`` after ``prompts[i]`` under the actor, zeros beyond each response
        (the sync probe)."""
        ...


@runtime_checkable
class Rollout(Protocol):
    """The driver's rollout (``RolloutPool``): generation plus the weight sync from the actor."""

    def generate(self, prompts: Sequence[PolicyPrompt], sampling: SamplingParams) -> list[RolloutOutput]:
        """``len(prompts) * sampling.n`` outputs, grouped by prompt in input order."""
        ...

    def generate_stream(
        self, prompts: Sequence[PolicyPrompt], sampling: SamplingParams
    ) -> Iterator[list[RolloutOutput]]:
        """:meth:`generate` in parts, each yielded as soon as it is generated (in completion order, not prompt
        order); ordered by prompt position and ``sample_index`` their concatenation equals :meth:`generate`'s result
        for the same sampling parameters."""
        ...

    def sync_weights(self, actor_pool: WeightSource, *, check: bool | None = None) -> dict[str, float]:
        """Copy the actor's weights into every engine; ``rollout/sync_*`` metrics."""
        ...

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Stop every engine."""
        ...
