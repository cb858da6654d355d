"""Start or join Ray for a run: a KubeRay job joins the cluster (``RAY_ADDRESS``); a laptop starts Ray locally."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from easyr1.config import ClusterConfig

logger = logging.getLogger(__name__)

_WORKER_ENV = {
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def init_ray(cluster: ClusterConfig, run_dir: Path) -> bool:
    """Initialise Ray; return True when this call started a local Ray (so the caller shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    address = cluster.address or os.environ.get("RAY_ADDRESS")
    runtime_env = {"env_vars": {k: v for k, v in _WORKER_ENV.items() if v is not None}}
    if address:
        logger.info("joining Ray cluster at %s", address)
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
        return False
    if cluster.disable_auth:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray's socket paths must stay short: keep its temp dir in the system temp folder, named after the run.
    temp_dir = Path(tempfile.gettempdir()) / f"easyr1-ray-{os.getpid()}"
    logger.info("starting a local Ray (%s CPUs) with temp dir %s", cluster.num_cpus or "all", temp_dir)
    ray.init(
        num_cpus=cluster.num_cpus,
        include_dashboard=False,
        runtime_env=runtime_env,
        _temp_dir=str(temp_dir),
        log_to_driver=True,
        configure_logging=False,
    )
    (run_dir / "ray_temp_dir.txt").write_text(str(temp_dir))
    return True
