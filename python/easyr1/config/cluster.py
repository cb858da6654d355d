"""``cluster``: where Ray is and which nodes each pool lands on (Ray custom resources per worker group)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .base import ConfigError, check_non_negative


@dataclass
class PoolPlacement:
    resource: str | None = None
    """Ray custom resource each worker of the pool asks for (``actor``/``rollout``/``editor`` on the Helm chart's
    worker groups); ``None`` places by CPU/GPU only."""
    resource_per_worker: float = 1.0
    """Amount of ``resource`` per worker."""
    num_gpus_per_worker: float = 0.0
    """GPUs per worker (0 on CPU)."""
    num_cpus_per_worker: float = 1.0
    """CPUs per worker."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_non_negative(f"{path}.resource_per_worker", self.resource_per_worker)
        yield from check_non_negative(f"{path}.num_gpus_per_worker", self.num_gpus_per_worker)
        yield from check_non_negative(f"{path}.num_cpus_per_worker", self.num_cpus_per_worker)


@dataclass
class ClusterConfig:
    address: str | None = None
    """Ray address; ``None`` uses ``RAY_ADDRESS`` if set (a KubeRay job), else starts Ray locally."""
    num_cpus: int | None = None
    """CPUs of a locally started Ray (``None``: all)."""
    disable_auth: bool = True
    """Locally started Ray only: turn off Ray's token authentication (``RAY_AUTH_MODE=disabled``)."""
    actor: PoolPlacement = field(default_factory=lambda: PoolPlacement())
    """Placement of the FSDP actor workers."""
    rollout: PoolPlacement = field(default_factory=lambda: PoolPlacement())
    """Placement of the generation engines."""
    editor: PoolPlacement = field(default_factory=lambda: PoolPlacement())
    """Placement of the editor replicas."""
