"""Actor checkpoints: sharded model + optimizer (torch.distributed.checkpoint), schedule, RNG; Hugging Face export.

Layout of ``<checkpoint>/actor/``::

    dcp/                     model and optimizer shards (DCP; loadable with another world size); with LoRA the
                             trainable parameters only (adapters, and a vision tower that is trained)
    extra_state_rank{r}.pt   scheduler, global step and RNG states of rank r
    huggingface/             config.json, generation_config.json and the processor files (no weights)
    meta.json                world size, global step, model family, source model path (with LoRA: the LoRA
                             settings and ``trainable_only``: the base weights come from the source model)

``export_checkpoint(<checkpoint>, out)`` turns that into a normal Hugging Face folder without Ray or a process
group (``easyr1 export``); ``ActorPool.export_hf(out)`` does the same from a live pool.
"""

from __future__ import annotations

import dataclasses
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
    model_sd = _checkpointed(worker, model_sd)
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
            "model_path": str(Path(worker.settings.actor.model.model_path).resolve()),
            "param_dtype": str(next(worker.model.parameters()).dtype).removeprefix("torch."),
        }
        if worker.settings.lora:
            meta["lora"] = dataclasses.asdict(worker.settings.actor.lora)
            meta["trainable_only"] = True
            meta["vision_tower_trained"] = not worker.settings.actor.model.freeze_vision_tower
        (root / "meta.json").write_text(json.dumps(meta, indent=2))
    _barrier(worker)
    logger.info("rank %d saved actor checkpoint to %s", worker.rank, root)


def _checkpointed(worker: ActorWorker, model_sd: dict[str, Any]) -> dict[str, Any]:
    """The model entries a checkpoint holds: all of them, or with LoRA the trainable parameters only."""
    if not worker.settings.lora:
        return model_sd
    trainable = {n for n, p in worker.model.named_parameters() if p.requires_grad}
    return {k: v for k, v in model_sd.items() if k in trainable}


def load_checkpoint(worker: ActorWorker, path: str | Path) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

    root = Path(path) / ACTOR_DIR
    if not (root / "dcp").is_dir():
        raise FileNotFoundError(f"{root}: not an actor checkpoint (no dcp/ folder)")
    meta = json.loads((root / "meta.json").read_text())
    if bool(meta.get("trainable_only")) != worker.settings.lora:
        raise ValueError(
            f"{root}: a {'LoRA' if meta.get('trainable_only') else 'full fine-tuning'} checkpoint cannot resume a "
            f"{'LoRA' if worker.settings.lora else 'full fine-tuning'} actor (worker.actor.lora.rank)"
        )
    model_sd, optim_sd = get_state_dict(worker.model, worker.optimizer)
    model_sd = _checkpointed(worker, model_sd)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(root / "dcp"))
    set_state_dict(
        worker.model,
        worker.optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optim"],
        options=StateDictOptions(strict=not worker.settings.lora),
    )
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


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, dtype: str | None = None, *, adapter: bool = False
) -> Path:
    """A Hugging Face folder from an actor checkpoint, in this process (no Ray, no process group).

    A LoRA checkpoint (``meta.json`` ``trainable_only``) is applied to its source model: by default the merged
    weights are written (a plain model folder); with ``adapter`` a PEFT adapter folder (``adapter_config.json`` +
    ``adapter_model.safetensors``, for ``PeftModel.from_pretrained`` over the source model)."""
    from transformers import AutoConfig

    root = Path(checkpoint) / ACTOR_DIR
    if not (root / "dcp").is_dir() or not (root / "huggingface" / "config.json").is_file():
        raise FileNotFoundError(
            f"{checkpoint}: not an easyr1 checkpoint (expected {ACTOR_DIR}/dcp and {ACTOR_DIR}/huggingface/config.json)"
        )
    meta = json.loads((root / "meta.json").read_text())
    param_dtype = _dtype(meta.get("param_dtype"), torch.float32)
    if adapter and not meta.get("trainable_only"):
        raise ValueError(f"{checkpoint}: a full fine-tuning checkpoint has no adapters to export (drop --adapter)")
    processor = load_processor(root / "huggingface")
    if meta.get("trainable_only"):
        return _export_lora(root, meta, processor, out, _dtype(dtype, param_dtype), adapter=adapter)
    config = AutoConfig.from_pretrained(root / "huggingface")
    model = instantiate_policy(config, dtype=param_dtype)
    state = {"model": dict(model.state_dict())}
    _dcp_load(state, root)
    return save_hf_folder(config, state["model"], processor, out, _dtype(dtype, param_dtype))


def _dcp_load(state: dict[str, Any], root: Path) -> None:
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, checkpoint_id=str(root / "dcp"), no_dist=True)


def _export_lora(
    root: Path, meta: dict[str, Any], processor: Any, out: str | Path, dtype: torch.dtype, *, adapter: bool
) -> Path:
    from safetensors.torch import save_file

    from easyr1.config.actor import LoRAConfig
    from easyr1.models.loading import load_policy
    from easyr1.transfer.lora import merge_state_dict

    from .lora import adapter_state_dict, apply_lora, peft_lora_config

    cfg = LoRAConfig(**meta["lora"])
    base_path = meta["model_path"]
    if adapter and meta.get("vision_tower_trained"):
        raise ValueError(
            f"{root.parent}: the vision tower was trained beside the adapters; a PEFT adapter folder cannot carry "
            "it — export the merged model (without --adapter)"
        )
    model = load_policy(base_path, dtype=meta.get("param_dtype", "float32")).model
    targets = apply_lora(model, cfg, train_vision_tower=bool(meta.get("vision_tower_trained")), seed=0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    state = {"model": {k: v for k, v in model.state_dict().items() if k in trainable}}
    _dcp_load(state, root)
    model.load_state_dict(state["model"], strict=False)
    full = model.state_dict()
    out = Path(out)
    if adapter:
        out.mkdir(parents=True, exist_ok=True)
        peft_lora_config(cfg, targets, base_model=str(base_path)).save_pretrained(out)
        save_file({k: v.to(dtype) for k, v in adapter_state_dict(full).items()}, out / "adapter_model.safetensors")
        processor.save_pretrained(out)
        logger.info("exported LoRA adapters (%d layers) to %s", len(targets), out)
        return out
    merged = merge_state_dict(full, cfg.alpha / cfg.rank)
    return save_hf_folder(model.config, merged, processor, out, dtype)
