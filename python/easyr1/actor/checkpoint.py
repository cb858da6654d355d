"""Actor checkpoints: sharded model + optimizer (torch.distributed.checkpoint), schedule, RNG; Hugging Face export.

Layout of ``<checkpoint>/actor/``::

    dcp/                     model and optimizer shards (DCP; loadable with another world size)
    extra_state_rank{r}.pt   scheduler, global step and RNG states of rank r
    huggingface/             config.json, generation_config.json and the processor files (no weights)
    meta.json                world size, global step, model family, source model path

``export_checkpoint(<checkpoint>, out)`` turns that into a normal Hugging Face folder without Ray or a process
group (``easyr1 export``); ``ActorPool.export_hf(out)`` does the same from a live pool.
"""

from __future__ import annotations

import json
import logging
import random
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

from easyr1.models.loading import instantiate_policy, load_processor, policy_generation_config

if TYPE_CHECKING:
    from .worker import ActorWorker

logger = logging.getLogger(__name__)

ACTOR_DIR = "actor"


def _rng_state(device: str) -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device == "cuda":
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any], device: str) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


def _barrier(worker: ActorWorker) -> None:
    if worker.world_size > 1:
        dist.barrier()


def save_checkpoint(worker: ActorWorker, path: str | Path) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    root = Path(path) / ACTOR_DIR
    if worker.rank == 0:
        root.mkdir(parents=True, exist_ok=True)
    _barrier(worker)
    model_sd, optim_sd = get_state_dict(worker.model, worker.optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(root / "dcp"))
    torch.save(
        {
            "scheduler": worker.scheduler.state_dict(),
            "global_step": worker.global_step,
            "rng": _rng_state(worker.device),
        },
        root / f"extra_state_rank{worker.rank}.pt",
    )
    if worker.rank == 0:
        hf = root / "huggingface"
        worker.policy.model.config.save_pretrained(hf)
        policy_generation_config(worker.policy.model.config, worker.processor.tokenizer).save_pretrained(hf)
        worker.processor.save_pretrained(hf)
        meta = {
            "world_size": worker.world_size,
            "global_step": worker.global_step,
            "family": worker.policy.family,
            "model_path": str(worker.settings.actor.model.model_path),
            "param_dtype": str(next(worker.model.parameters()).dtype).removeprefix("torch."),
        }
        (root / "meta.json").write_text(json.dumps(meta, indent=2))
    _barrier(worker)
    logger.info("rank %d saved actor checkpoint to %s", worker.rank, root)


def load_checkpoint(worker: ActorWorker, path: str | Path) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    root = Path(path) / ACTOR_DIR
    if not (root / "dcp").is_dir():
        raise FileNotFoundError(f"{root}: not an actor checkpoint (no dcp/ folder)")
    model_sd, optim_sd = get_state_dict(worker.model, worker.optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(root / "dcp"))
    set_state_dict(worker.model, worker.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    meta = json.loads((root / "meta.json").read_text())
    extra_file = root / f"extra_state_rank{worker.rank}.pt"
    fallback = root / "extra_state_rank0.pt"
    extra = torch.load(extra_file if extra_file.exists() else fallback, weights_only=False)
    worker.scheduler.load_state_dict(extra["scheduler"])
    worker.global_step = int(extra["global_step"])
    if meta["world_size"] == worker.world_size:
        _set_rng_state(extra["rng"], worker.device)
    else:
        logger.warning(
            "checkpoint saved with %d ranks, loading on %d: RNG states not restored",
            meta["world_size"],
            worker.world_size,
        )
    _barrier(worker)
    logger.info("rank %d loaded actor checkpoint %s (step %d)", worker.rank, root, worker.global_step)


def _dtype(name: str | None, default: torch.dtype) -> torch.dtype:
    if name is None:
        return default
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def save_hf_folder(
    config: Any, state_dict: dict[str, torch.Tensor], processor: Any, out: str | Path, dtype: torch.dtype
) -> Path:
    """Write ``state_dict`` as a Hugging Face folder of ``config``'s policy class, with the processor."""
    out = Path(out)
    model = instantiate_policy(config, dtype=dtype)
    missing, unexpected = model.load_state_dict(
        {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}, strict=False
    )
    if unexpected or [k for k in missing if k not in dict(model.named_buffers())]:
        raise RuntimeError(
            f"state dict does not fit {type(model).__name__}: missing {missing}, unexpected {unexpected}"
        )
    model.generation_config = policy_generation_config(model.config, processor.tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def export_hf(worker: ActorWorker, path: str | Path, dtype: str | None = None) -> None:
    """Full weights → ``path`` as a Hugging Face folder (rank 0 writes; all ranks must call)."""
    state = worker.full_state_dict()
    if worker.rank == 0:
        default = next(iter(state.values())).dtype if state else torch.float32
        save_hf_folder(worker.policy.model.config, state, worker.processor, path, _dtype(dtype, default))
        logger.info("exported the policy to %s", path)
    _barrier(worker)


def export_checkpoint(checkpoint: str | Path, out: str | Path, dtype: str | None = None) -> Path:
    """A Hugging Face folder from an actor checkpoint, in this process (no Ray, no process group)."""
    import torch.distributed.checkpoint as dcp
    from transformers import AutoConfig

    root = Path(checkpoint) / ACTOR_DIR
    if not (root / "dcp").is_dir() or not (root / "huggingface" / "config.json").is_file():
        raise FileNotFoundError(
            f"{checkpoint}: not an easyr1 checkpoint (expected {ACTOR_DIR}/dcp and {ACTOR_DIR}/huggingface/config.json)"
        )
    meta = json.loads((root / "meta.json").read_text())
    param_dtype = _dtype(meta.get("param_dtype"), torch.float32)
    config = AutoConfig.from_pretrained(root / "huggingface")
    model = instantiate_policy(config, dtype=param_dtype)
    state = {"model": dict(model.state_dict())}
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, checkpoint_id=str(root / "dcp"), no_dist=True)
    processor = load_processor(root / "huggingface")
    return save_hf_folder(config, state["model"], processor, out, _dtype(dtype, param_dtype))
