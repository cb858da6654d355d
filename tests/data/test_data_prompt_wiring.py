"""``data.prompt_layout`` reaches every place that builds the policy prompt: the rollout (``Components.build_prompt``),
the SFT warm start and the prompt-length filter. Prompts are encoded with the tiny policy's own processor through
``easyr1.models.inputs.encode_prompt``, the function the actor and the HF rollout engine use."""

from __future__ import annotations

from dataclasses import replace

import pytest

from easyr1.config import load_config
from easyr1.data import build_dataset
from easyr1.data.prompts import SYSTEM_PROMPT, PromptLengthFilter
from easyr1.models.inputs import encode_prompt
from easyr1.models.loading import load_processor
from easyr1.trainer.components import Components

REFERENCE_START = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nSystem: "
CHAT_START = f"<|im_start|>system\n{SYSTEM_PROMPT[:40]}"


@pytest.fixture(scope="module")
def processor(tiny_policy_dir):
    return load_processor(tiny_policy_dir)


def rendered(processor, prompt) -> str:
    """The text the policy model reads (image pads included), decoded from the encoded prompt's token ids."""
    return processor.tokenizer.decode(encode_prompt(processor, prompt).input_ids)


def rows(helpers, tmp_path, **extra):
    path = helpers.write_seed_parquet(helpers.seed_rows(2, size=(56, 56), **extra), tmp_path / "train.parquet")
    return path


def components_for(cfg) -> Components:
    none = None
    return Components(cfg, none, none, none, none, none, none, none)  # type: ignore[arg-type]


@pytest.mark.parametrize(("layout", "start"), [("reference", REFERENCE_START), ("chat", CHAT_START)])
def test_rollout_prompt_follows_the_key(helpers, tmp_path, processor, layout, start):
    path = rows(helpers, tmp_path)
    cfg = load_config(None, [f"data.train_files={path}", f"data.prompt_layout={layout}", "data.min_pixels=64"])
    row = next(iter(build_dataset(cfg.data, "train").iter_epoch(0)))[1]
    text = rendered(processor, components_for(cfg).build_prompt(row))
    assert text.startswith(start)
    if layout == "reference":
        user = text.split("<|im_start|>user\n", 1)[1]
        assert user.index("User: <desired_editing_instruction>") < user.index("<|vision_start|>")
        assert user.count("<|vision_start|>") == 2


def test_compat_reference_selects_the_reference_layout(helpers, tmp_path, processor):
    path = rows(helpers, tmp_path)
    cfg = load_config(None, ["compat=reference", f"data.train_files={path}", "data.min_pixels=64"])
    assert cfg.data.prompt_layout == "reference"
    row = next(iter(build_dataset(cfg.data, "train").iter_epoch(0)))[1]
    assert rendered(processor, components_for(cfg).build_prompt(row)).startswith(REFERENCE_START)


def test_length_filter_measures_the_configured_layout(helpers, tmp_path, processor):
    path = rows(helpers, tmp_path)
    cfg = replace(helpers.data_config(path), shuffle=False)
    row = next(iter(build_dataset(cfg, "train").iter_epoch(0)))[1]
    chat = PromptLengthFilter(processor, 10**6).length(row)
    reference = PromptLengthFilter(processor, 10**6, layout="reference").length(row)
    assert chat < reference
    # a limit between the two lengths keeps the rows under the chat layout and drops them under the reference one
    kept = {
        layout: len(
            list(
                build_dataset(
                    replace(cfg, prompt_layout=layout, max_prompt_length=chat), "train", processor
                ).iter_epoch(0)
            )
        )
        for layout in ("chat", "reference")
    }
    assert kept == {"chat": 2, "reference": 0}


def test_sft_trains_on_the_configured_layout(helpers, tmp_path, processor, tiny_policy_dir, monkeypatch):
    """``easyr1 sft`` hands the actor prompts in ``data.prompt_layout`` (the actor pool is replaced by a recorder;
    the prompts are encoded with the policy's processor as the actor would)."""
    import easyr1.actor.pool as pool
    import easyr1.pools.placement as placement
    from easyr1.trainer.sft import run_sft

    seen = []

    class RecordingActor:
        def __init__(self, *args, **kwargs):
            pass

        def sft_step(self, batch):
            seen.extend(rendered(processor, prompt) for prompt in batch.prompts)
            return {"sft/loss": 1.0}

        def export_hf(self, path):
            pass

        def shutdown(self):
            pass

    monkeypatch.setattr(pool, "ActorPool", RecordingActor)
    monkeypatch.setattr(placement, "init_ray", lambda *args, **kwargs: False)
    path = rows(helpers, tmp_path, demonstration="<CoT>a</CoT>\n<Re_edit>b</Re_edit>")
    for layout, start in (("reference", REFERENCE_START), ("chat", CHAT_START)):
        seen.clear()
        cfg = load_config(
            None,
            [
                f"data.train_files={path}",
                f"data.prompt_layout={layout}",
                "data.min_pixels=64",
                f"worker.actor.model.model_path={tiny_policy_dir}",
                f"trainer.output_dir={tmp_path / layout}",
                "sft.batch_size=2",
                "sft.max_steps=1",
            ],
        )
        run_sft(cfg)
        assert len(seen) == 2 and all(text.startswith(start) for text in seen), layout
