"""The config loader: defaults, YAML, overrides, aliases and every validation error path."""

from __future__ import annotations

import logging
import os
from dataclasses import fields, is_dataclass

import pytest
import yaml

from easyr1.config import (
    ConfigValidationError,
    EasyR1Config,
    config_to_dict,
    dump_yaml,
    load_config,
)
from easyr1.config import aliases as alias_module
from easyr1.config.docs import explain, field_docs, iter_sections


def write_yaml(tmp_path, data, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_are_valid():
    cfg = load_config()
    assert isinstance(cfg, EasyR1Config)
    assert cfg.worker.rollout.n == 4
    assert cfg.worker.reward.weights["format"] == pytest.approx(0.25)


def test_yaml_then_overrides_take_precedence(tmp_path):
    path = write_yaml(tmp_path, {"worker": {"rollout": {"n": 8, "temperature": 0.7}}})
    cfg = load_config(path, ["worker.rollout.n=16", "trainer.logger=[console,wandb]"])
    assert cfg.worker.rollout.n == 16
    assert cfg.worker.rollout.temperature == pytest.approx(0.7)
    assert cfg.trainer.logger == ["console", "wandb"]


def test_config_equals_override_names_the_file(tmp_path):
    path = write_yaml(tmp_path, {"worker": {"rollout": {"n": 6}}})
    cfg = load_config(None, [f"config={path}"])
    assert cfg.worker.rollout.n == 6


def test_value_yaml_cannot_read_is_a_string():
    cfg = load_config(None, ["data.pattern=*.jsonl", "data.format=jsonl"])
    assert cfg.data.pattern == "*.jsonl"


def test_nested_dict_override():
    cfg = load_config(None, ["worker.reward.weights.format=0.5"])
    assert cfg.worker.reward.weights["format"] == 0.5
    assert cfg.worker.reward.weights["physical_geometric"] == pytest.approx(0.15)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("no.such.key=1", "no.such.key"),
        ("worker.rollout.nn=1", "worker.rollout.nn"),
        ("worker.rollout.n=abc", "worker.rollout.n"),
        ("trainer.val_freq=often", "trainer.val_freq"),
        ("worker.actor.optim.lr=fast", "worker.actor.optim.lr"),
    ],
)
def test_unknown_keys_and_wrong_types_name_the_key(override, key):
    with pytest.raises(ConfigValidationError) as info:
        load_config(None, [override])
    assert info.value.keys == [key]
    assert key in str(info.value)


def test_yaml_unknown_key_names_the_full_key(tmp_path):
    path = write_yaml(tmp_path, {"worker": {"rollout": {"temprature": 0.5}}})
    with pytest.raises(ConfigValidationError) as info:
        load_config(path)
    assert info.value.keys == ["worker.rollout.temprature"]


def test_yaml_problems(tmp_path):
    with pytest.raises(ConfigValidationError, match="file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("worker: [unclosed")
    with pytest.raises(ConfigValidationError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42")
    with pytest.raises(ConfigValidationError, match="mapping"):
        load_config(scalar)


def test_override_without_equals_sign():
    with pytest.raises(ConfigValidationError, match="key=value"):
        load_config(None, ["worker.rollout.n"])


# Every validation rule, each triggered on its own: (overrides, the key the error must name).
VALIDATION_CASES = [
    (["data.format=csv"], "data.format"),
    (["data.instruction_variant=long"], "data.instruction_variant"),
    (["data.on_bad_row=ignore"], "data.on_bad_row"),
    (["data.max_prompt_length=0"], "data.max_prompt_length"),
    (["data.max_response_length=-1"], "data.max_response_length"),
    (["data.val_batch_size=0"], "data.val_batch_size"),
    (["data.min_pixels=0"], "data.min_pixels"),
    (["data.min_pixels=5000", "data.max_pixels=4000"], "data.max_pixels"),
    (["data.read_batch_rows=0"], "data.read_batch_rows"),
    (["algorithm.adv_estimator=ppo"], "algorithm.adv_estimator"),
    (["algorithm.kl_penalty=k9"], "algorithm.kl_penalty"),
    (["algorithm.kl_type=pid"], "algorithm.kl_type"),
    (["algorithm.gamma=1.5"], "algorithm.gamma"),
    (["algorithm.kl_coef=-1"], "algorithm.kl_coef"),
    (["algorithm.filter_low=5", "algorithm.filter_high=4"], "algorithm.filter_low"),
    (["algorithm.filter_key=nonsense"], "algorithm.filter_key"),
    (["algorithm.max_try_make_batch=-1"], "algorithm.max_try_make_batch"),
    (["worker.actor.strategy=deepspeed"], "worker.actor.strategy"),
    (["worker.actor.num_workers=0"], "worker.actor.num_workers"),
    (["worker.actor.loss_type=dpo"], "worker.actor.loss_type"),
    (["worker.actor.loss_agg_mode=sum"], "worker.actor.loss_agg_mode"),
    (["worker.actor.clip_ratio_low=1.5"], "worker.actor.clip_ratio_low"),
    (["worker.actor.clip_ratio_dual=1.0"], "worker.actor.clip_ratio_dual"),
    (["worker.actor.entropy_coeff=-0.1"], "worker.actor.entropy_coeff"),
    (["worker.actor.max_grad_norm=0"], "worker.actor.max_grad_norm"),
    (["worker.actor.model.dtype=int8"], "worker.actor.model.dtype"),
    (["worker.actor.model.attn_implementation=xformers"], "worker.actor.model.attn_implementation"),
    (["worker.actor.optim.lr=0"], "worker.actor.optim.lr"),
    (["worker.actor.optim.betas=[0.9]"], "worker.actor.optim.betas"),
    (["worker.actor.optim.lr_scheduler_type=step"], "worker.actor.optim.lr_scheduler_type"),
    (["worker.actor.optim.lr_warmup_ratio=2"], "worker.actor.optim.lr_warmup_ratio"),
    (["worker.actor.fsdp.param_dtype=int8"], "worker.actor.fsdp.param_dtype"),
    (
        ["worker.ref.micro_batch_size_per_device_for_experience=0"],
        "worker.ref.micro_batch_size_per_device_for_experience",
    ),
    (["worker.rollout.name=sglang"], "worker.rollout.name"),
    (["worker.rollout.n=0"], "worker.rollout.n"),
    (["worker.rollout.top_p=0"], "worker.rollout.top_p"),
    (["worker.rollout.gpu_memory_utilization=1.5"], "worker.rollout.gpu_memory_utilization"),
    (["worker.rollout.weight_sync=nfs"], "worker.rollout.weight_sync"),
    (["worker.rollout.val_override_config.n=0"], "worker.rollout.val_override_config.n"),
    (["worker.reward.format_mode=lenient"], "worker.reward.format_mode"),
    (["worker.reward.missing_re_edit=default"], "worker.reward.missing_re_edit"),
    (["worker.reward.strategy=sum"], "worker.reward.strategy"),
    (["worker.reward.re_edit_length_ideal=200"], "worker.reward.re_edit_length_ideal"),
    (["worker.reward.max_blocks=1"], "worker.reward.max_blocks"),
    (["worker.reward.weights.format=-0.1"], "worker.reward.weights.format"),
    (["worker.reward.weights.aesthetics=0.1"], "worker.reward.weights.aesthetics"),
    (["worker.reward.gate_threshold=6"], "worker.reward.gate_threshold"),
    (["worker.reward.max_deviation_gpt_weight=1.5"], "worker.reward.max_deviation_gpt_weight"),
    (["worker.image_edit.backend=sdxl"], "worker.image_edit.backend"),
    (["worker.image_edit.num_replicas=0"], "worker.image_edit.num_replicas"),
    (["worker.image_edit.target_area=100"], "worker.image_edit.target_area"),
    (["worker.image_edit.seed_mode=random"], "worker.image_edit.seed_mode"),
    (["worker.image_edit.true_cfg_scale=-1"], "worker.image_edit.true_cfg_scale"),
    (["judge.backend=anthropic"], "judge.backend"),
    (["judge.mode=batch"], "judge.mode"),
    (["judge.image_detail=ultra"], "judge.image_detail"),
    (["judge.max_concurrency=0"], "judge.max_concurrency"),
    (["judge.temperature=3"], "judge.temperature"),
    (["judge.base_url=ftp://x"], "judge.base_url"),
    (["judge.requests_per_minute=0"], "judge.requests_per_minute"),
    (["sandbox.image_size=8"], "sandbox.image_size"),
    (["sft.lr=0"], "sft.lr"),
    (["trainer.logger=[console,mlflow]"], "trainer.logger[1]"),
    (["trainer.wandb_mode=sometimes"], "trainer.wandb_mode"),
    (["trainer.resume=always"], "trainer.resume"),
    (["trainer.save_freq=0"], "trainer.save_freq"),
    (["trainer.max_steps=0"], "trainer.max_steps"),
    (["telemetry.prometheus.port=70000"], "telemetry.prometheus.port"),
    (["cluster.actor.num_gpus_per_worker=-1"], "cluster.actor.num_gpus_per_worker"),
    # cross-section checks
    (["data.rollout_batch_size=12", "worker.actor.global_batch_size=8"], "data.rollout_batch_size"),
    (
        ["worker.actor.num_workers=3", "worker.actor.global_batch_size=8", "worker.rollout.n=4"],
        "worker.actor.global_batch_size",
    ),
    (["worker.actor.micro_batch_size_per_device_for_update=3"], "worker.actor.micro_batch_size_per_device_for_update"),
    (["worker.rollout.response_length=9000"], "worker.rollout.response_length"),
    (["worker.rollout.n=1"], "worker.rollout.n"),
    (["judge.use_logprobs=true", "judge.mode=single_call"], "judge.use_logprobs"),
    (["worker.reward.improvement=true"], "worker.image_edit.seed_mode"),
]


@pytest.mark.parametrize(("overrides", "key"), VALIDATION_CASES, ids=[c[1] + ":" + c[0][-1] for c in VALIDATION_CASES])
def test_each_validation_rule_names_its_key(overrides, key):
    with pytest.raises(ConfigValidationError) as info:
        load_config(None, overrides)
    assert key in info.value.keys, str(info.value)
    assert all(e.allowed for e in info.value.errors)


def test_all_errors_are_reported_together():
    with pytest.raises(ConfigValidationError) as info:
        load_config(None, ["data.format=csv", "judge.mode=batch", "worker.reward.strategy=sum"])
    assert {"data.format", "judge.mode", "worker.reward.strategy"} <= set(info.value.keys)


def test_seed_aliases_map_and_log_once(caplog):
    alias_module._warned.clear()
    caplog.set_level(logging.WARNING, logger="easyr1.config.aliases")
    overrides = [
        "worker.reward.combined_strategy=gated",
        "worker.reward.combined_gpt_logical_causal_weight=0.3",
        "worker.reward.rule_re_edit_max_length_ideal=60",
        "worker.reward.gpt41_model=gpt-4.1",
        "worker.reward.use_gpt41_api=true",
        "worker.image_edit.num_gpus=3",
        "data.parquet_pattern=batch_*.parquet",
        "data.data_format=parquet",
        "trainer.max_try_make_batch=5",
        "worker.reward.gpt41_retry_delay=2.0",
    ]
    cfg = load_config(None, overrides)
    assert cfg.worker.reward.strategy == "gated"
    assert cfg.worker.reward.weights["logical_causal"] == 0.3
    assert cfg.worker.reward.re_edit_length_ideal == 60
    assert cfg.judge.model == "gpt-4.1"
    assert cfg.judge.backend == "openai"
    assert cfg.worker.image_edit.num_replicas == 3
    assert cfg.data.pattern == "batch_*.parquet"
    assert cfg.data.format == "seed"
    assert cfg.algorithm.max_try_make_batch == 5
    messages = [r.getMessage() for r in caplog.records if r.name == "easyr1.config.aliases"]
    assert len(messages) == len(overrides)  # one line per old key
    load_config(None, overrides)
    assert len([r for r in caplog.records if r.name == "easyr1.config.aliases"]) == len(overrides)  # not repeated


def test_secret_alias_moves_key_out_of_config(monkeypatch, caplog):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    caplog.set_level(logging.WARNING)
    cfg = load_config(None, ["worker.reward.gpt41_api_key=sk-test-SECRET-123"])
    assert os.environ["OPENAI_API_KEY"] == "sk-test-SECRET-123"
    assert "sk-test-SECRET-123" not in dump_yaml(cfg, redact=False)
    assert all("SECRET" not in r.getMessage() for r in caplog.records)


def test_redaction_masks_credentials_in_urls():
    cfg = load_config(None, ["judge.base_url=https://user:sk-abc@judge.example/v1?api-key=sk-def"])
    text = dump_yaml(cfg)
    assert "sk-abc" not in text and "sk-def" not in text and "judge.example/v1" in text


def test_redaction_masks_secret_looking_values():
    cfg = load_config()
    data = config_to_dict(cfg)
    assert data["judge"]["api_key_env"] == "OPENAI_API_KEY"  # a variable name, not a secret
    cfg.judge.api_key_env = "X"
    data = config_to_dict(cfg)
    assert data["judge"]["api_key_env"] == "X"


@pytest.mark.parametrize("name", ["sandbox.yaml", "seed_compat.yaml", "qwen2_5_vl_7b_image_edit.yaml"])
def test_examples_load(repo_root, name):
    load_config(repo_root / "examples" / name)


def test_the_example_is_the_packaged_preset_itself(repo_root):
    """One source: examples/sandbox.yaml is a link to the preset ``easyr1 demo`` ships, not a copy to keep equal."""
    example = repo_root / "examples" / "sandbox.yaml"
    packaged = repo_root / "python" / "easyr1" / "presets" / "sandbox.yaml"
    assert example.is_symlink() and example.resolve() == packaged.resolve()


def test_seed_compat_reproduces_reference_settings(repo_root):
    cfg = load_config(repo_root / "examples" / "seed_compat.yaml")
    assert cfg.worker.reward.strategy == "max_deviation"
    assert (cfg.worker.reward.max_deviation_gpt_weight, cfg.worker.reward.max_deviation_rule_weight) == (0.8, 0.2)
    assert cfg.worker.rollout.n == 4 and cfg.data.rollout_batch_size == 16 and cfg.worker.actor.global_batch_size == 8
    assert cfg.worker.actor.optim.lr == pytest.approx(5e-9)
    assert cfg.worker.image_edit.num_replicas == 4 and cfg.worker.image_edit.num_inference_steps == 15
    assert cfg.worker.image_edit.true_cfg_scale == 1.0  # the reference passed no negative prompt: no true CFG
    assert cfg.judge.model == "gpt-4o" and cfg.judge.temperature == 0.0 and cfg.judge.backend == "openai"
    assert cfg.worker.rollout.tensor_parallel_size == 4


def test_every_field_has_a_docstring():
    missing = []
    for path, cls in iter_sections():
        docs = field_docs(cls)
        for f in fields(cls):
            if f.name not in docs:
                missing.append(f"{path}.{f.name}" if path else f.name)
    assert not missing, f"fields without a docstring: {missing}"


def test_explain_prints_docs():
    text = explain("worker.rollout.n")
    assert text is not None and "group size" in text and "default 4" in text
    assert explain("worker.rollout.nope") is None


def test_sections_are_dataclasses():
    assert all(is_dataclass(cls) for _, cls in iter_sections())
