"""LoRA on the wire (``easyr1.transfer.lora``): names, the merge against peft's own ``merge_and_unload``, and an
engine serving adapters (injected layers start as a no-op; plain merged weights still load into it)."""

from __future__ import annotations

import copy

import pytest
import torch

from easyr1.transfer.lora import lora_parts, merge_state_dict, serve_adapters, served_state_key, wire_name


def test_wire_names() -> None:
    q = "model.language_model.layers.0.self_attn.q_proj"
    assert wire_name(f"{q}.base_layer.weight") == f"{q}.weight"
    assert wire_name(f"{q}.base_layer.bias") == f"{q}.bias"
    assert wire_name(f"{q}.lora_A.default.weight") == f"{q}.lora_A.weight"
    assert wire_name("model.visual.blocks.0.attn.qkv.weight") == "model.visual.blocks.0.attn.qkv.weight"
    assert lora_parts(f"{q}.lora_B.weight") == (q, "B") and lora_parts(f"{q}.weight") is None
    assert served_state_key(f"{q}.weight", {q}) == f"{q}.base_layer.weight"
    assert served_state_key(f"{q}.lora_B.weight", {q}) == f"{q}.lora_B.default.weight"
    assert served_state_key("lm_head.weight", {q}) == "lm_head.weight"


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = torch.nn.Linear(6, 4)
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.q_proj(x))


def test_merge_equals_peft_merge_and_unload() -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    plain = _Tiny()
    model = get_peft_model(copy.deepcopy(plain), LoraConfig(r=2, lora_alpha=6, target_modules=["q_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    state = {k.removeprefix("base_model.model."): v for k, v in model.state_dict().items()}
    merged = merge_state_dict(state, scaling=3.0)
    expected = model.merge_and_unload().state_dict()
    assert merged.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(merged[key], value, rtol=0, atol=1e-6)


def test_served_adapters_start_as_a_no_op_and_compute_base_plus_b_a() -> None:
    torch.manual_seed(0)
    model = _Tiny()
    x = torch.randn(5, 6)
    before = model(x)
    serve_adapters(model, {"q_proj": 2})
    assert not any(p.requires_grad for p in model.parameters())
    torch.testing.assert_close(model(x), before)
    a, b = torch.randn(2, 6), torch.randn(4, 2)
    state = model.state_dict()
    state[served_state_key("q_proj.lora_A.weight", {"q_proj"})].copy_(a)
    state[served_state_key("q_proj.lora_B.weight", {"q_proj"})].copy_(b)
    w = model.q_proj.base_layer.weight
    expected = model.head(x @ (w + b @ a).T + model.q_proj.base_layer.bias)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore")
def test_hf_engine_serving_adapters_takes_plain_weights_too(tiny_policy_dir) -> None:
    """After an adapter sync, the object-store path (plain merged weights) still loads: as base weights, with the
    adapters zeroed, so the engine computes exactly the plain model."""
    from easyr1.rollout.hf_engine import HFRolloutEngine
    from easyr1.rollout.probe import probe_prompts
    from easyr1.transfer.weight_sync import TensorSpec, make_plan

    engine = HFRolloutEngine(str(tiny_policy_dir), dtype="float32", threads=1)
    prompts, responses = probe_prompts(2), [[5, 6, 7], [8, 9]]
    plain = {k: v.clone() for k, v in engine.model.state_dict().items()}
    before = engine.log_probs(prompts, responses)
    q = "model.language_model.layers.0.self_attn.q_proj"
    width = plain[f"{q}.weight"].shape[1]
    specs = [TensorSpec(k, tuple(v.shape), "float32", static=True) for k, v in plain.items()]
    specs += [
        TensorSpec(f"{q}.lora_A.weight", (4, width), "float32"),
        TensorSpec(f"{q}.lora_B.weight", (width, 4), "float32"),
    ]
    engine._serve_plan_adapters(make_plan(specs, 1 << 20))
    served = engine.model.state_dict()
    served[f"{q}.lora_A.default.weight"].normal_()
    served[f"{q}.lora_B.default.weight"].normal_()
    assert engine.log_probs(prompts, responses) != before
    engine.update_weights(plain)
    assert engine.log_probs(prompts, responses) == before
