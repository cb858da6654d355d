"""Measure what one actor rank really allocates on CPU, for ``test_memory_plan.py`` (run as a subprocess).

``python memory_probe.py OUT_DIR {ckpt,nockpt,bf16}`` builds a small Qwen2.5-VL (random weights) from a
``config.json`` it writes to OUT_DIR, shards it with the project's FSDP2 wrapping (gloo, world size 1), and runs two
updates the way ``easyr1.actor.update`` does (response log-probs with the no-grad entropy metric, backward, AdamW):
fp32 with or without gradient checkpointing, or (``bf16``) fp32 masters with bf16 mixed precision and checkpointing.
``python memory_probe.py EDITOR_DIR editor`` loads a Qwen-Image-Edit checkpoint and runs one batched edit.
Both print one JSON line: the RSS before the model existed (before the edit, for the editor) and the process's peak RSS (``ru_maxrss``). Run it with
``MALLOC_MMAP_THRESHOLD_`` set so that large tensors are mapped and unmapped (RSS then follows live tensor bytes).
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

SMALL_CONFIG = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "model_type": "qwen2_5_vl",
    "image_token_id": 32001,
    "video_token_id": 32002,
    "vision_start_token_id": 32003,
    "vision_end_token_id": 32004,
    "tie_word_embeddings": False,
    "text_config": {
        "model_type": "qwen2_5_vl_text",
        "vocab_size": 32768,
        "hidden_size": 256,
        "intermediate_size": 768,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [8, 12, 12]},
        "use_cache": False,
    },
    "vision_config": {
        "depth": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 2,
        "out_hidden_size": 256,
        "fullatt_block_indexes": [1],
    },
}
PROMPT, RESPONSE, MICRO = 512, 1024, 2
"""Prompt and response tokens of each sequence, and sequences per micro-batch."""


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def main(out_dir: str, mode: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from easyr1.actor.fsdp import apply_fsdp2, device_mesh
    from easyr1.actor.optim import build_optimizer
    from easyr1.config.actor import FSDPConfig, OptimConfig
    from easyr1.models.forward import response_log_probs
    from easyr1.models.inputs import PolicyInputs
    from easyr1.models.loading import enable_gradient_checkpointing, vision_tower

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(SMALL_CONFIG))
    dist.init_process_group("gloo", init_method=f"file://{folder / 'rendezvous'}", rank=0, world_size=1)
    mesh = device_mesh("cpu", 1)
    torch.manual_seed(0)
    baseline = rss_bytes()

    model = Qwen2_5_VLForConditionalGeneration._from_config(Qwen2_5_VLConfig(**SMALL_CONFIG), dtype=torch.float32)
    vision_tower(model).requires_grad_(False)
    if mode in ("ckpt", "bf16"):
        enable_gradient_checkpointing(model)
    model = apply_fsdp2(model, mesh=mesh, fsdp=FSDPConfig(mixed_precision=mode == "bf16"), device="cpu")
    optimizer = build_optimizer(model.parameters(), OptimConfig(lr=1e-6))
    model.train()

    vocab = SMALL_CONFIG["text_config"]["vocab_size"]
    ids = torch.randint(0, 30000, (MICRO, PROMPT + RESPONSE))
    inputs = PolicyInputs(
        {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "mm_token_type_ids": torch.zeros_like(ids, dtype=torch.int32),
        },
        ids[:, PROMPT:],
        torch.ones(MICRO, RESPONSE),
        PROMPT,
    )
    assert vocab > int(ids.max())
    for _ in range(2):
        logp, entropy = response_log_probs(model, inputs, with_entropy=True, entropy_grad=False, chunk_size=1024)
        loss = -(logp * inputs.response_mask).sum() / inputs.response_mask.sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        del logp, entropy, loss
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    dist.destroy_process_group()
    print(json.dumps({"baseline": baseline, "peak": peak, "mode": mode}))


EDIT_SIDE, EDIT_BATCH = 512, 2
"""``python memory_probe.py EDITOR_DIR editor``: one batched edit (fp32, 1 step, true CFG) at this size."""


def edit(editor_dir: str) -> None:
    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(1)
    from easyr1.config.editing import ImageEditConfig
    from easyr1.core.types import EditRequest
    from easyr1.editing.factory import build_editor

    cfg = ImageEditConfig(
        model_path=editor_dir,
        num_inference_steps=1,
        target_area=EDIT_SIDE * EDIT_SIDE,
        batch_size=EDIT_BATCH,
        dtype="float32",
    )
    editor = build_editor(cfg)
    rng = np.random.default_rng(0)
    shape = (EDIT_SIDE, EDIT_SIDE, 3)
    requests = [
        EditRequest(Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)), "Add a red ball", i, f"k{i}")
        for i in range(EDIT_BATCH)
    ]
    baseline = rss_bytes()  # the pipeline is loaded: what follows is the edit's working memory
    results = editor.edit(requests)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert all(r.ok for r in results), [r.reason for r in results]
    print(json.dumps({"baseline": baseline, "peak": peak, "mode": "editor"}))


if __name__ == "__main__":
    if sys.argv[2] == "editor":
        edit(sys.argv[1])
    else:
        main(sys.argv[1], sys.argv[2])
