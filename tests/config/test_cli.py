"""The ``easyr1`` command: help and ``validate-config`` exit codes (run as a real subprocess)."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = [
    "train",
    "demo",
    "sft",
    "make-tiny",
    "make-sandbox-data",
    "check-data",
    "judge",
    "export",
    "validate-config",
]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "easyr1", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_command():
    result = run("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("example", ["sandbox.yaml", "seed_compat.yaml", "qwen2_5_vl_7b_image_edit.yaml"])
def test_validate_config_examples(repo_root, example):
    result = run("validate-config", str(repo_root / "examples" / example))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


@pytest.mark.parametrize(
    ("override", "key"), [("no.such.key=1", "no.such.key"), ("worker.rollout.n=abc", "worker.rollout.n")]
)
def test_validate_config_bad_override_exits_2(repo_root, override, key):
    result = run("validate-config", str(repo_root / "examples" / "sandbox.yaml"), override)
    assert result.returncode == 2
    assert key in result.stderr


def test_validate_config_print_redacts(repo_root, monkeypatch):
    result = run("validate-config", str(repo_root / "examples" / "sandbox.yaml"), "--print")
    assert result.returncode == 0
    assert "worker:" in result.stdout and "rollout:" in result.stdout


def test_no_command_prints_help():
    result = run()
    assert result.returncode == 2
    assert "usage" in result.stdout
