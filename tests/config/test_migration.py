"""Migration from the reference implementation: its own config and launch scripts load, every key is accounted
for, ``compat: reference`` reproduces its behaviour, and a reference-style file says what differs.

The reference's files are copied into tests/config/data (keys and values unchanged), never fetched at test time.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from easyr1.config import ConfigValidationError, dump_yaml, load_config
from easyr1.config import aliases as alias_module
from easyr1.config.compat import BEHAVIOURS, PROFILES, differences, reference_key_table
from easyr1.config.loader import _flatten, did_you_mean, is_secret_key

DATA = Path(__file__).parent / "data"
REFERENCE_YAML = DATA / "reference_image_edit_config_combined.yaml"
LAUNCH_SETS: dict[str, list[str]] = yaml.safe_load((DATA / "reference_launch_overrides.yaml").read_text())


def script_args(name: str) -> list[str]:
    """A launch script's arguments with its ``config=`` pointing at our copy of the reference YAML."""
    return [f"config={REFERENCE_YAML}" if a.startswith("config=") else a for a in LAUNCH_SETS[name]]


def deprecated_keys(keys) -> set[str]:
    return {k for k in keys if k in alias_module.ALIASES or k in alias_module.SECRET_ALIASES}


def run_cli(*args: str, env_key: str = "placeholder") -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": env_key, "HOME": "/tmp"}
    return subprocess.run(
        [sys.executable, "-m", "easyr1", "validate-config", *args], capture_output=True, text=True, timeout=120, env=env
    )


def deprecation_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "easyr1.config.aliases" in line and "deprecated" in line]


@pytest.fixture(autouse=True)
def _fresh_alias_log(monkeypatch):
    alias_module._warned.clear()
    monkeypatch.setenv("OPENAI_API_KEY", "placeholder")  # the scripts' gpt41_api_key must not leak into the env


# --- the reference's files load ------------------------------------------------------------------------------


def test_reference_yaml_loads_with_one_line_per_deprecated_key():
    result = run_cli(str(REFERENCE_YAML))
    assert result.returncode == 0, result.stderr
    flat = _flatten(yaml.safe_load(REFERENCE_YAML.read_text()))
    lines = deprecation_lines(result.stderr)
    expected = deprecated_keys(flat)
    assert len(expected) >= 47  # the issue counted 47 keys that used to be unknown, plus the old aliases
    assert len(lines) == len(expected)
    for key in expected:
        assert sum(f" {key} is deprecated" in line for line in lines) == 1, key


@pytest.mark.parametrize("script", sorted(LAUNCH_SETS))
def test_each_launch_script_loads_on_the_reference_yaml(script):
    args = script_args(script)
    assert args[0].startswith("config=")  # EasyR1's spelling, in the config position
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    keys = set(_flatten(yaml.safe_load(REFERENCE_YAML.read_text()))) | {a.split("=", 1)[0] for a in args[1:]}
    assert len(deprecation_lines(result.stderr)) == len(deprecated_keys(keys))
    assert "api_key" not in result.stdout


def test_launch_script_values_arrive():
    cfg = load_config(None, script_args("qwen2_5_vl_7b_image_edit_combined_v2.1.sh"))
    assert cfg.worker.reward.strategy == "max_deviation"
    assert (cfg.worker.reward.max_deviation_gpt_weight, cfg.worker.reward.max_deviation_rule_weight) == (0.8, 0.2)
    assert (cfg.worker.reward.re_edit_length_ideal, cfg.worker.reward.re_edit_length_tolerable) == (100, 200)
    assert cfg.worker.rollout.tensor_parallel_size == 4 and cfg.worker.rollout.response_length == 4096
    assert cfg.data.pattern == "omniedit_qwen_edit_full_batch_*.parquet" and cfg.data.seed == 43
    assert cfg.trainer.logger == ["console", "wandb"] and cfg.trainer.resume == "auto"
    assert cfg.worker.image_edit.num_replicas == 4 and cfg.worker.image_edit.dtype == "bfloat16"
    assert cfg.judge.max_tokens == 100 and cfg.judge.timeout_s == 30


def test_every_reference_key_is_honoured_or_not_applicable():
    keys = list(_flatten(yaml.safe_load(REFERENCE_YAML.read_text())))
    for name in LAUNCH_SETS:
        keys += [a.split("=", 1)[0] for a in LAUNCH_SETS[name][1:] if a.split("=", 1)[0] not in keys]
    table = reference_key_table(keys)
    statuses = {status for _, status, _ in table}
    assert statuses <= {"honoured", "not applicable"}, [row for row in table if row[1] == "rejected"]
    for key, _status, became in table:
        assert became, key  # every row says what it became or why it does not apply


@pytest.mark.parametrize(
    "key", ["trainer.n_gpus_per_node", "trainer.nnodes", "data.max_num_batched_tokens", "worker.image_edit.enable_fsdp"]
)
def test_keys_once_accepted_silently_now_say_why(key, caplog):
    caplog.set_level(logging.WARNING, logger="easyr1.config.aliases")
    load_config(None, [f"{key}=1"])
    assert any(key in r.getMessage() and "not applicable" in r.getMessage() for r in caplog.records)


def test_rejected_reference_values_load_with_their_meaning(caplog):
    caplog.set_level(logging.INFO)
    cfg = load_config(
        None,
        [
            "worker.rollout.limit_images=0",
            "worker.image_edit.negative_prompt=",
            "worker.image_edit.true_cfg_scale=4.0",
            "worker.rollout.max_model_len=30000",
            "data.max_prompt_length=30000",
            "data.max_response_length=1024",
        ],
    )
    assert cfg.worker.rollout.limit_images == 2  # "no explicit limit": the two images a prompt carries
    assert cfg.worker.image_edit.true_cfg_scale == 1.0  # no negative prompt: the pipeline ran without true CFG
    assert cfg.worker.rollout.max_model_len == 30000
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "limit_images=0" in text and "true CFG is off" in text and "max_model_len=30000 is below" in text


def test_value_a_not_applicable_key_cannot_meet_is_an_error():
    with pytest.raises(ConfigValidationError) as info:
        load_config(None, ["worker.actor.ulysses_size=2"])
    assert info.value.keys == ["worker.actor.ulysses_size"]
    load_config(None, ["worker.actor.ulysses_size=1"])


# --- every problem in one run ------------------------------------------------------------------------------


def test_every_problem_of_a_file_in_one_run(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"format": "csv", "parquet_pattern": "a*.parquet", "pattern": "b*.parquet", "imagekey": "x"},
                "worker": {
                    "rollout": {"temprature": 0.7, "n": "many"},
                    "actor": {"global_batch_size": 3},
                },
                "judge": {"mode": "batch"},
                "trainer": {"total_epoch": 2},
            }
        )
    )
    result = run_cli(str(path))
    assert result.returncode == 2
    for key in (
        "data.format",
        "data.pattern",
        "data.imagekey",
        "worker.rollout.temprature",
        "worker.rollout.n",
        "judge.mode",
        "trainer.total_epoch",
        "data.rollout_batch_size",  # the last one: a cross-section rule
    ):
        assert key in result.stderr, key
    assert "did you mean worker.rollout.temperature?" in result.stderr
    assert "did you mean trainer.total_epochs?" in result.stderr
    assert "data.parquet_pattern and data.pattern both set data.pattern" in result.stderr


def test_did_you_mean():
    assert did_you_mean("worker.rollout.temprature") == "worker.rollout.temperature"
    assert did_you_mean("worker.reward.gpt41_max_token") == "worker.reward.gpt41_max_tokens"
    assert did_you_mean("totally.unrelated.thing") is None


def test_old_and_new_spelling_in_one_file_is_an_error_naming_both(tmp_path):
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump({"worker": {"reward": {"gpt41_max_tokens": 100}}, "judge": {"max_tokens": 400}}))
    with pytest.raises(ConfigValidationError) as info:
        load_config(path)
    message = str(info.value)
    assert "worker.reward.gpt41_max_tokens" in message and "judge.max_tokens" in message
    # a command-line override of a file setting is not a conflict, whatever the spelling
    path.write_text(yaml.safe_dump({"worker": {"reward": {"gpt41_max_tokens": 100}}}))
    assert load_config(path, ["judge.max_tokens=300"]).judge.max_tokens == 300


def test_config_equals_file_in_the_config_position(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"worker": {"rollout": {"n": 6}}}))
    assert load_config(f"config={path}").worker.rollout.n == 6
    result = run_cli(f"config={path}")
    assert result.returncode == 0, result.stderr
    assert f"{path}: valid" in result.stdout


# --- --print masks only secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["api_key", "gpt41_api_key", "hf_token", "token", "db_password", "client_secret"])
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "max_tokens",
        "max_num_batched_tokens",
        "max_token_len_per_device",
        "tokens_per_minute",
        "api_key_env",
        "api_key_file",
        "tokenizer_path",
        "price_per_1k_prompt_tokens",
    ],
)
def test_not_secret_keys(key):
    assert not is_secret_key(key)


def test_print_keeps_token_budgets():
    result = run_cli(str(REFERENCE_YAML), "--print")
    assert result.returncode == 0, result.stderr
    dump = result.stdout[result.stdout.index("\ncompat:") + 1 :]  # the YAML dump starts with the root key compat
    printed = yaml.safe_load(dump)
    assert printed["judge"]["max_tokens"] == 100
    assert printed["worker"]["rollout"]["max_num_batched_tokens"] == 32768
    assert "***" not in result.stdout


# --- compat: reference ---------------------------------------------------------------------------------------


def reference_with(*extra: str):
    return load_config(REFERENCE_YAML, list(extra))


def test_profile_reproduces_the_reference_settings():
    cfg = reference_with("compat=reference")
    assert cfg.compat == "reference"
    assert cfg.worker.rollout.name == "vllm"
    assert cfg.worker.reward.format_mode == "seed"
    assert cfg.worker.reward.missing_re_edit == "fallback_instruction"
    assert cfg.worker.reward.fallback_instruction == "Improve the image quality and consistency"
    assert cfg.judge.mode == "per_dimension" and cfg.judge.max_tokens == 100
    assert (cfg.judge.jpeg_quality, cfg.judge.image_max_side, cfg.judge.image_detail) == (60, 512, "low")
    assert cfg.judge.temperature == 0.3  # the file's value wins over nothing: the profile does not set it
    assert cfg.worker.image_edit.true_cfg_scale == 1.0
    assert cfg.data.prompt_layout == "reference" and cfg.data.max_long_side == 1024
    # the file's own values are kept
    assert cfg.worker.reward.strategy == "weighted_sum" and cfg.worker.rollout.n == 2
    for key, value in PROFILES["reference"].items():
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        if key != "worker.image_edit.negative_prompt":
            assert node == value, key


def test_file_keys_override_the_profile():
    cfg = reference_with("compat=reference", "judge.mode=single_call", "judge.max_tokens=400")
    assert cfg.judge.mode == "single_call" and cfg.judge.max_tokens == 400


def test_seed_compat_example_uses_the_profile(repo_root, caplog):
    caplog.set_level(logging.WARNING)
    cfg = load_config(repo_root / "examples" / "seed_compat.yaml")
    assert cfg.compat == "reference" and cfg.judge.mode == "per_dimension" and cfg.judge.max_tokens == 100
    assert not any("cannot hold" in r.getMessage() for r in caplog.records)


def test_summary_lists_each_difference(caplog):
    caplog.set_level(logging.WARNING, logger="easyr1.config.compat")
    cfg = reference_with()
    summaries = [r.getMessage() for r in caplog.records if "runs differently from the reference" in r.getMessage()]
    assert len(summaries) == 1
    summary = summaries[0]
    for behaviour in BEHAVIOURS:
        if not behaviour.same(cfg):
            assert f"- {behaviour.what}:" in summary, behaviour.what
    for what in (
        "rollout engine",
        "format rule",
        "response without <Re_edit>",
        "judge calls",
        "judge image encoding",
        "judge request",
        "judge task description",
        "policy image sizing",
        "policy prompt layout",
    ):
        assert f"- {what}:" in summary


def test_profile_leaves_only_the_unreproducible_differences(caplog):
    caplog.set_level(logging.WARNING, logger="easyr1.config.compat")
    cfg = reference_with("compat=reference")
    assert not any("runs differently" in r.getMessage() for r in caplog.records)
    (remaining_line,) = [r.getMessage() for r in caplog.records if "still differs from the reference" in r.getMessage()]
    remaining = {line.split(":", 1)[0] for line in differences(cfg)}
    assert all(f"- {what}:" in remaining_line for what in remaining)
    assert remaining == {"editor seed"}  # not reproduced on purpose (it correlates every sample of a group)


def test_non_reference_file_gets_no_summary(repo_root, caplog):
    caplog.set_level(logging.WARNING, logger="easyr1.config.compat")
    load_config(repo_root / "examples" / "sandbox.yaml")
    assert not caplog.records


# --- judge budget --------------------------------------------------------------------------------------------


def test_budget_warning_fires_for_single_call(caplog, repo_root):
    caplog.set_level(logging.WARNING, logger="easyr1.config.loader")
    load_config(repo_root / "examples" / "seed_compat.yaml", ["compat=null"])  # the file without its profile
    warnings = [r.getMessage() for r in caplog.records if "cannot hold" in r.getMessage()]
    assert len(warnings) == 1 and "judge.max_tokens=100" in warnings[0] and "single_call" in warnings[0]


def test_budget_warning_quiet_when_the_answer_fits(caplog):
    caplog.set_level(logging.WARNING, logger="easyr1.config.loader")
    load_config(None, ["judge.mode=per_dimension", "judge.max_tokens=100"])
    load_config(None, ["judge.mode=single_call", "judge.max_tokens=400"])
    load_config(None, ["judge.backend=sandbox", "judge.max_tokens=10"])
    assert not [r for r in caplog.records if "cannot hold" in r.getMessage()]
    load_config(None, ["judge.mode=per_dimension", "judge.max_tokens=4"])
    assert [r for r in caplog.records if "cannot hold" in r.getMessage()]


def test_dump_does_not_carry_the_api_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    cfg = load_config(None, script_args("qwen2_5_vl_7b_image_edit_combined_v1.sh"))
    assert "gpt41_api_key" not in dump_yaml(cfg, redact=False)


def test_docs_key_table_matches_the_code(repo_root):
    text = (repo_root / "docs" / "migration.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    documented = {}
    for line in rows:
        key_cell, status, became = (c.strip() for c in line.strip("|").split("|"))
        documented[key_cell.split("`")[1]] = (status, became)
    keys = list(documented)
    assert keys[:3] == ["data.train_files", "data.val_files", "data.data_format"]
    for key, status, became in reference_key_table(keys):
        assert documented[key] == (status, became.replace("|", "/")), key
    reference_keys = set(_flatten(yaml.safe_load(REFERENCE_YAML.read_text())))
    for args in LAUNCH_SETS.values():
        reference_keys |= {a.split("=", 1)[0] for a in args[1:]}
    assert set(keys) == reference_keys
    honoured = sum(s == "honoured" for s, _ in documented.values())
    not_applicable = sum(s == "not applicable" for s, _ in documented.values())
    assert f"{len(keys)} keys: {honoured} honoured, {not_applicable} not applicable, 0 rejected" in text


def test_explain_reference_keys():
    from easyr1.config.docs import explain

    text = explain("worker.reward.gpt41_max_tokens")
    assert text.startswith("worker.reward.gpt41_max_tokens: reference key, an alias of judge.max_tokens")
    assert "Completion token limit per call" in text
    assert "not applicable: placement comes from cluster" in explain("trainer.n_gpus_per_node")
    assert "compat" in explain("compat") and "reference" in explain("compat")


def test_unknown_compat_value_is_an_error():
    with pytest.raises(ConfigValidationError) as info:
        load_config(None, ["compat=verl"])
    assert info.value.keys == ["compat"]


def test_online_filtering_difference_only_when_filtering(caplog):
    assert not any(line.startswith("online filtering") for line in differences(reference_with()))
    cfg = reference_with("algorithm.online_filtering=true")
    assert any(line.startswith("online filtering") and "std" in line for line in differences(cfg))
