"""Preflight: the setup errors a run would otherwise find hours in, checked before any model loads.

``easyr1 train``, ``sft``, ``demo`` and ``validate-config --preflight`` run :func:`preflight` right after the config
is validated and before Ray starts or a weight is read:

* **folders** — the run folder and the checkpoint folder (SFT: its output folder) can be written: a file is created
  and removed in the folder, or in its nearest existing parent when it does not exist yet;
* **disk** — the checkpoint folder's file system has room for one checkpoint of the expected size (parameter counts
  from :mod:`easyr1.memory_plan`; skipped when the model's config cannot be read);
* **resources** — the pools' Ray requests (actor workers, rollout engines, editor replicas), computed with the
  placement's own functions, fit the cluster: ``cluster.num_cpus`` or the CPUs of this machine, the GPUs Ray would
  detect, and no custom resources on a locally started Ray. A remote cluster (``cluster.address``/``RAY_ADDRESS``)
  is not probed here; its pools are checked when they start;
* **judge** — the API key of the ``openai`` judge can be read (the environment variable or the key file);
* **paths** — the policy, tokenizer, editor model, data and demonstration paths that are local exist and can be
  read (a Hugging Face hub id is left to the loader).

Each failure is one line; the commands print them and exit with code 2, without a traceback.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from easyr1.config import EasyR1Config

logger = logging.getLogger(__name__)

EXIT_PREFLIGHT = 2
RESOURCE_EPSILON = 1e-9


@dataclass(frozen=True)
class PreflightFailure:
    """One problem found by the preflight."""

    check: str
    """``folders``, ``disk``, ``resources``, ``judge`` or ``paths``."""
    message: str
    """One line that names the setting and what to change."""

    def line(self) -> str:
        return f"preflight {self.check}: {self.message}"


# ---------------------------------------------------------------------------------------------------- folders
def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def folder_problem(path: Path) -> str | None:
    """Why files cannot be written in ``path`` (or where it would be created), or ``None``. Writes and removes a
    probe file, so it also catches read-only mounts and permissions, for root too."""
    wanted = path.expanduser().absolute()
    target = _nearest_existing(wanted)
    if not target.is_dir():
        return f"{target} is not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".easyr1-preflight-"):
            pass
    except OSError as exc:
        where = "" if target == wanted else f" ({wanted} does not exist yet and would be created there)"
        return f"cannot write in {target}{where}: {exc.strerror or type(exc).__name__}"
    return None


def checkpoint_root(cfg: EasyR1Config) -> Path:
    """Where ``easyr1 train`` writes checkpoints (the driver's rule)."""
    return Path(cfg.trainer.save_checkpoint_path or Path(cfg.trainer.output_dir) / "checkpoints")


def _output_folders(cfg: EasyR1Config, command: str) -> list[tuple[str, Path]]:
    run = Path(cfg.trainer.output_dir)
    sft = Path(cfg.sft.output_dir or run / "sft")
    if command == "sft":
        return [("sft.output_dir", sft)]
    folders = [("trainer.output_dir", run), ("trainer.save_checkpoint_path", checkpoint_root(cfg))]
    return [*folders, ("sft.output_dir", sft)] if command == "demo" else folders


def check_folders(cfg: EasyR1Config, command: str) -> Iterator[PreflightFailure]:
    for key, folder in _output_folders(cfg, command):
        problem = folder_problem(folder)
        if problem is not None:
            yield PreflightFailure("folders", f"{key}: {problem}")


# ------------------------------------------------------------------------------------------------------- disk
def expected_checkpoint_bytes(cfg: EasyR1Config, command: str = "train") -> int | None:
    """Bytes of one checkpoint: a full one holds the parameters (fp32 with mixed precision) and AdamW's two states
    of the trainable ones; ``save_model_only`` and SFT write the weights in the model dtype. ``None`` when the
    policy's config cannot be read (a hub id not in the cache, a model still to be built)."""
    from easyr1.memory_plan import ModelConfigUnavailable, policy_shape
    from easyr1.memory_plan.estimate import dtype_bytes

    actor = cfg.worker.actor
    try:
        shape = policy_shape(actor.model.model_path)
    except (ModelConfigUnavailable, OSError, ValueError, KeyError) as exc:
        logger.debug("preflight: checkpoint size not estimated (%s)", exc)
        return None
    total = shape.total_params
    model_bytes = dtype_bytes(actor.model.dtype, "cuda")
    if command == "sft" or cfg.trainer.save_model_only:
        return total * model_bytes
    master = 4 if actor.fsdp.mixed_precision else model_bytes
    state = 2 if actor.optim.strategy == "adamw_bf16" else master
    trainable = total - (shape.vision_params if actor.model.freeze_vision_tower else 0)
    if actor.lora.enabled:  # adapter-only checkpoints: the adapters (and a trained vision tower) with their states
        adapters = shape.num_layers * shape.lora_layer_params(actor.lora.rank, list(actor.lora.target_modules))
        trainable = adapters + (0 if actor.model.freeze_vision_tower else shape.vision_params)
        return trainable * (master + 2 * state)
    return total * master + trainable * 2 * state


def check_disk(cfg: EasyR1Config, command: str) -> Iterator[PreflightFailure]:
    if command == "demo":  # the demo builds its policy first; a tiny one
        return
    folder = (
        Path(cfg.sft.output_dir or Path(cfg.trainer.output_dir) / "sft") if command == "sft" else checkpoint_root(cfg)
    )
    need = expected_checkpoint_bytes(cfg, command)
    target = _nearest_existing(folder.expanduser().absolute())
    if need is None or not target.is_dir():
        return
    free = shutil.disk_usage(target).free
    if free < need:
        yield PreflightFailure(
            "disk",
            f"{folder}: {_gib(free)} free, one checkpoint needs about {_gib(need)}; free space or point "
            f"{'sft.output_dir' if command == 'sft' else 'trainer.save_checkpoint_path'} elsewhere",
        )
    elif command != "sft" and cfg.trainer.save_limit > 0 and free < need * (cfg.trainer.save_limit + 1):
        logger.warning("preflight: %s has room for fewer checkpoints than trainer.save_limit keeps", folder)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


# -------------------------------------------------------------------------------------------------- resources
def pool_requests(cfg: EasyR1Config) -> list[tuple[str, int, dict[str, Any]]]:
    """``(pool, workers, Ray options per worker)`` of the pools ``easyr1 train`` starts, from the same functions
    the pools call (:func:`easyr1.actor.placement.ray_actor_options`, ``EditorPool.actor_options``)."""
    from easyr1.core.registries import EDITOR_BACKENDS
    from easyr1.pools.placement import ray_actor_options

    pools = [
        ("actor", cfg.worker.actor.num_workers, ray_actor_options(cfg.cluster.actor)),
        ("rollout", cfg.worker.rollout.num_engines, ray_actor_options(cfg.cluster.rollout)),
    ]
    edit = cfg.worker.image_edit
    if EDITOR_BACKENDS.facts(edit.backend).heavy or edit.num_replicas > 1:  # the rule of build_editor_for
        from easyr1.editing.pool import EditorPool

        pools.append(("editor", edit.num_replicas, EditorPool.actor_options(cfg.cluster.editor, 0)))
    return pools


def _detected_cpus() -> int:
    """The CPUs a local Ray would offer: its own count (cgroup quota aware) when Ray is importable."""
    try:
        from ray._private.utils import get_num_cpus

        return int(get_num_cpus())
    except Exception:  # a private helper of Ray: fall back to this process's CPU affinity
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _detected_gpus() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no usable CUDA build: Ray would see no GPU either
        return 0


def cluster_capacity(cfg: EasyR1Config, *, need_gpus: bool = True) -> dict[str, float] | None:
    """What a locally started Ray offers (``CPU``, ``GPU``; no custom resources); ``None`` for a remote cluster."""
    if cfg.cluster.address or os.environ.get("RAY_ADDRESS"):
        return None
    cpus = cfg.cluster.num_cpus
    if cpus is None:
        cpus = _detected_cpus()
    return {"CPU": float(cpus), "GPU": float(_detected_gpus()) if need_gpus else 0.0}


def check_resources(cfg: EasyR1Config, command: str) -> Iterator[PreflightFailure]:
    if command == "sft":  # SFT trains in this process
        return
    if cfg.worker.rollout.name == "vllm":
        from easyr1.rollout.vllm_engine import vllm_actor_options

        try:
            vllm_actor_options(cfg.worker.rollout, cfg.cluster.rollout.num_gpus_per_worker)
        except ValueError as exc:
            yield PreflightFailure("resources", str(exc))
    pools = pool_requests(cfg)
    demand: dict[str, float] = {}
    parts: dict[str, list[str]] = {}
    for name, count, options in pools:
        wanted = {"CPU": options.get("num_cpus", 1), "GPU": options.get("num_gpus", 0) or 0}
        wanted.update(options.get("resources") or {})
        for resource, amount in wanted.items():
            if amount:
                demand[resource] = demand.get(resource, 0.0) + count * float(amount)
                parts.setdefault(resource, []).append(f"{name} {count} x {amount:g}")
    capacity = cluster_capacity(cfg, need_gpus=demand.get("GPU", 0) > 0)
    if capacity is None:
        logger.info("preflight: Ray cluster at an address; pool resources are checked when the pools start")
        return
    for resource, amount in demand.items():
        have = capacity.get(resource, 0.0)
        if amount > have + RESOURCE_EPSILON:
            source = {
                "CPU": "cluster.num_cpus" if cfg.cluster.num_cpus is not None else "CPUs of this machine",
                "GPU": "GPUs visible here",
            }.get(resource, "a locally started Ray has no custom resources")
            yield PreflightFailure(
                "resources",
                f"the pools need {amount:g} {resource} ({' + '.join(parts[resource])}) but the cluster has "
                f"{have:g} ({source}); lower the pool sizes or cluster.<pool> requests, or give Ray more",
            )


# ------------------------------------------------------------------------------------------------------ judge
def check_judge(cfg: EasyR1Config, command: str) -> Iterator[PreflightFailure]:
    if command == "sft" or cfg.judge.backend != "openai":
        return
    from easyr1.reward.judge.credentials import JudgeCredentialError, resolve_api_key

    try:
        resolve_api_key(cfg.judge)
    except JudgeCredentialError as exc:
        yield PreflightFailure("judge", str(exc))
    problem = endpoint_problem(cfg.judge.base_url)
    if problem is not None:
        yield PreflightFailure("judge", f"judge.base_url {cfg.judge.base_url}: {problem}")


ENDPOINT_TIMEOUT_S = 5.0


def endpoint_problem(url: str, timeout_s: float = ENDPOINT_TIMEOUT_S) -> str | None:
    """Whether a TCP connection to ``url``'s host (or to the proxy the standard variables name for it) opens:
    no HTTP request is sent, so no key is used and nothing is billed. ``None`` when it does."""
    import socket
    import urllib.parse
    import urllib.request

    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return "not an http(s) URL"
    target = parsed
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(parsed.hostname):
        target = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((target.hostname, port), timeout=timeout_s):
            return None
    except OSError as exc:
        via = f" (via proxy {target.hostname}:{port})" if target is not parsed else ""
        return f"unreachable{via}: {exc.strerror or exc}"


# ------------------------------------------------------------------------------------------------------ paths
def _looks_like_hub_id(value: str) -> bool:
    parts = value.split("/")
    return len(parts) == 2 and all(parts) and not value.startswith((".", "~")) and not Path(value).exists()


def path_problem(value: str, *, kind: str) -> str | None:
    """Why a local file or folder cannot be read, or ``None``."""
    path = Path(value).expanduser()
    if not path.exists():
        return f"{value} does not exist"
    if not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.X_OK)):
        return f"{value} cannot be read"
    if path.is_dir():
        try:
            next(iter(os.scandir(path)), None)
        except OSError as exc:
            return f"{value} cannot be listed ({exc.strerror})"
        if kind == "model" and not (path / "config.json").is_file() and not (path / "model_index.json").is_file():
            return f"{value} holds no config.json (not a model folder)"
    return None


def check_paths(cfg: EasyR1Config, command: str) -> Iterator[PreflightFailure]:
    if command == "demo":  # the demo builds its model and data in its folder first
        return
    model = cfg.worker.actor.model
    items: list[tuple[str, str | None, str]] = [
        ("worker.actor.model.model_path", model.model_path, "model"),
        ("worker.actor.model.tokenizer_path", model.tokenizer_path, "model"),
        ("data.train_files", cfg.data.train_files, "data"),
    ]
    if command == "sft":
        items.append(("sft.demonstrations", cfg.sft.demonstrations, "data"))
    else:
        from easyr1.core.registries import EDITOR_BACKENDS

        items.append(("data.val_files", cfg.data.val_files, "data"))
        if EDITOR_BACKENDS.facts(cfg.worker.image_edit.backend).heavy:
            items.append(("worker.image_edit.model_path", cfg.worker.image_edit.model_path, "model"))
    for key, value, kind in items:
        if not value or (kind == "model" and _looks_like_hub_id(value)):
            continue
        problem = path_problem(value, kind=kind)
        if problem is not None:
            yield PreflightFailure("paths", f"{key}: {problem}")


CHECKS = (check_folders, check_disk, check_resources, check_judge, check_paths)


def preflight(cfg: EasyR1Config, command: str = "train") -> list[PreflightFailure]:
    """Every problem found for ``command`` (``train``, ``sft``, ``demo``); empty when the run may start."""
    if command not in ("train", "sft", "demo"):
        raise ValueError(f"preflight for {command!r}: expected train, sft or demo")
    failures: list[PreflightFailure] = []
    for check in CHECKS:
        failures.extend(check(cfg, command))
    return failures


def report(failures: list[PreflightFailure], print_line: Any) -> int:
    """Print one line per failure with ``print_line``; the exit code (0, or 2 when anything failed)."""
    for failure in failures:
        print_line(failure.line())
    return EXIT_PREFLIGHT if failures else 0


def config_for(args: Any) -> EasyR1Config | None:
    """The config ``easyr1 train|sft|demo`` will run with (``None`` when it does not load: the command itself then
    reports why)."""
    from easyr1.config import ConfigValidationError, load_config

    try:
        if args.command == "demo":
            from .demo import demo_overrides, preset_path

            out = Path(args.out).resolve()
            overrides = [*demo_overrides(out, args.steps, args.seed), *args.overrides]
            return load_config(args.config or preset_path(), overrides)
        return load_config(args.config, args.overrides)
    except ConfigValidationError:
        return None


def preflight_command(args: Any, print_line: Any) -> int:
    """Preflight of a parsed ``easyr1 train|sft|demo`` command line: 0, or 2 after one line per failure."""
    cfg = config_for(args)
    if cfg is None:
        return 0
    return report(preflight(cfg, args.command), lambda line: print_line(f"easyr1 {args.command}: {line}"))
