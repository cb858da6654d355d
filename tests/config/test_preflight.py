"""Preflight: setup errors found before any model loads, one line each, exit 2, no traceback
(``easyr1 train``, ``sft``, ``demo`` and ``validate-config --preflight``)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from easyr1.cli import main
from easyr1.config import load_config
from easyr1.trainer import preflight as pf


@pytest.fixture
def ready(tmp_path: Path, repo_root: Path):
    """The sandbox example with every path present (a model folder with a config.json, data folders)."""
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "config.json").write_text("{}")
    for split in ("train", "val"):
        (tmp_path / "data" / split).mkdir(parents=True)
        (tmp_path / "data" / split / "part-0.parquet").write_bytes(b"")
    overrides = [
        f"worker.actor.model.model_path={policy}",
        f"data.train_files={tmp_path / 'data' / 'train'}",
        f"data.val_files={tmp_path / 'data' / 'val'}",
        f"trainer.output_dir={tmp_path / 'run'}",
    ]
    return repo_root / "examples" / "sandbox.yaml", overrides


def lines(cfg_path, overrides, command="train"):
    return [f.line() for f in pf.preflight(load_config(cfg_path, overrides), command)]


def test_ready_config_passes(ready):
    assert lines(*ready) == []


def test_two_editor_replicas_on_the_sandbox_preset_do_not_fit(ready):
    path, overrides = ready
    (line,) = lines(path, [*overrides, "worker.image_edit.num_replicas=2"])
    assert line.startswith("preflight resources: the pools need 5 CPU")
    assert "editor 2 x 1" in line and "has 4 (cluster.num_cpus)" in line


def test_validate_config_preflight_exits_2_with_one_line_per_failure(ready, capsys):
    path, overrides = ready
    assert main(["validate-config", "--preflight", str(path), *overrides]) == 0
    assert "preflight: ok" in capsys.readouterr().out
    assert main(["validate-config", "--preflight", str(path), *overrides, "worker.image_edit.num_replicas=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "5 CPU" in err[0] and "Traceback" not in err[0]
    # without --preflight the same config still only validates
    assert main(["validate-config", str(path), *overrides, "worker.image_edit.num_replicas=2"]) == 0


@pytest.fixture
def judge_port():
    """A loopback port that accepts connections (the judge endpoint's reachability is checked by TCP)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_train_fails_preflight_before_ray_or_a_model(ready, tmp_path, judge_port):
    path, overrides = ready
    start = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "easyr1",
            "train",
            str(path),
            *overrides,
            "worker.image_edit.num_replicas=2",
            "judge.backend=openai",
            "judge.api_key_env=EASYR1_TEST_NO_SUCH_KEY",
            f"judge.base_url=http://127.0.0.1:{judge_port}/v1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert time.monotonic() - start < 60  # not the editor pool's 600 s wait
    err = result.stderr.strip().splitlines()
    assert len(err) == 2 and "Traceback" not in result.stderr
    assert err[0].startswith("easyr1 train: preflight resources:")
    assert err[1].startswith("easyr1 train: preflight judge: no judge API key") and "EASYR1_TEST_NO_SUCH_KEY" in err[1]
    assert not (tmp_path / "run").exists()  # nothing written: Ray not started, no config dumped


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_unwritable_checkpoint_folder(ready, tmp_path, where):
    path, overrides = ready
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / "ckpt" if where == "under_a_file" else Path("/proc/easyr1-preflight-test/ckpt")
    (line,) = lines(path, [*overrides, f"trainer.save_checkpoint_path={target}"])
    assert line.startswith("preflight folders: trainer.save_checkpoint_path:")


def test_free_space_against_the_checkpoint_size(ready, monkeypatch):
    path, overrides = ready
    cfg = load_config(path, [*overrides, "worker.actor.model.model_path=Qwen/Qwen2.5-VL-7B-Instruct"])
    need = pf.expected_checkpoint_bytes(cfg)
    assert need is not None and need > 8e9 * 12  # fp32 weights + two fp32 AdamW states of ~8.3 B parameters
    monkeypatch.setattr(pf.shutil, "disk_usage", lambda p: type("U", (), {"free": need // 2})())
    (failure,) = pf.preflight(cfg, "train")
    assert failure.check == "disk" and "one checkpoint needs about" in failure.message
    monkeypatch.setattr(pf.shutil, "disk_usage", lambda p: type("U", (), {"free": need * 10})())
    assert pf.preflight(cfg, "train") == []


def test_lora_checkpoints_are_sized_by_their_adapters(ready):
    """Issue 22: a LoRA checkpoint holds the adapters and their AdamW states only (the frozen base is not saved)."""
    path, overrides = ready
    model = ["worker.actor.model.model_path=Qwen/Qwen2.5-VL-7B-Instruct", "worker.actor.model.freeze_vision_tower=true"]
    full = pf.expected_checkpoint_bytes(load_config(path, [*overrides, *model]))
    lora = pf.expected_checkpoint_bytes(load_config(path, [*overrides, *model, "worker.actor.lora.rank=16"]))
    assert full is not None and lora is not None
    assert 0 < lora < full / 50  # ~40 M adapter parameters against ~8.3 B


def test_custom_resource_on_a_local_ray_never_fits(ready, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    path, overrides = ready
    (line,) = lines(path, [*overrides, "cluster.actor.resource=actor"])
    assert "2 actor" in line and "no custom resources" in line
    # a remote cluster is not probed here
    assert lines(path, [*overrides, "cluster.actor.resource=actor", "cluster.address=ray://head:10001"]) == []


def test_gpus_against_the_visible_ones(ready, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    path, overrides = ready
    (line,) = lines(path, [*overrides, "cluster.actor.num_gpus_per_worker=1"])
    assert "need 2 GPU" in line and "has 1" in line


def test_judge_credentials(ready, tmp_path, monkeypatch, judge_port):
    path, overrides = ready
    monkeypatch.delenv("EASYR1_TEST_KEY", raising=False)
    judge = [
        "judge.backend=openai",
        "judge.api_key_env=EASYR1_TEST_KEY",
        f"judge.base_url=http://127.0.0.1:{judge_port}/v1",
    ]
    (line,) = lines(path, [*overrides, *judge])
    assert line.startswith("preflight judge:") and "EASYR1_TEST_KEY" in line
    monkeypatch.setenv("EASYR1_TEST_KEY", "EMPTY")
    assert lines(path, [*overrides, *judge]) == []
    key_file = tmp_path / "missing-key"
    (line,) = lines(path, [*overrides, *judge, f"judge.api_key_file={key_file}"])
    assert "cannot be read" in line


def test_unreachable_judge_endpoint(ready, monkeypatch):
    import socket

    path, overrides = ready
    monkeypatch.setenv("EASYR1_TEST_KEY", "EMPTY")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    judge = ["judge.backend=openai", "judge.api_key_env=EASYR1_TEST_KEY", f"judge.base_url=http://127.0.0.1:{port}/v1"]
    (line,) = lines(path, [*overrides, *judge])
    assert line.startswith(f"preflight judge: judge.base_url http://127.0.0.1:{port}/v1: unreachable")


def test_model_and_data_paths(ready, tmp_path):
    path, overrides = ready
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    got = lines(path, [*overrides, f"worker.actor.model.model_path={empty}", f"data.train_files={tmp_path / 'nope'}"])
    assert got == [
        f"preflight paths: worker.actor.model.model_path: {empty} holds no config.json (not a model folder)",
        f"preflight paths: data.train_files: {tmp_path / 'nope'} does not exist",
    ]


def test_sft_and_demo_run_the_preflight_before_anything(ready, tmp_path, capsys):
    path, overrides = ready
    demos = tmp_path / "missing.jsonl"
    assert main(["sft", str(path), *overrides, f"sft.demonstrations={demos}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"easyr1 sft: preflight paths: sft.demonstrations: {demos} does not exist"]
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["demo", "--out", str(blocker / "demo")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all(line.startswith("easyr1 demo: preflight folders:") for line in err)
    assert not (blocker.parent / "tiny").exists()
