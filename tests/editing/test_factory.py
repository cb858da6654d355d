"""The factory builds the configured backend; replicas are placed by ``cluster.editor``."""

from __future__ import annotations

import pytest

from easyr1.config import load_config
from easyr1.config.cluster import PoolPlacement
from easyr1.config.editing import ImageEditConfig
from easyr1.editing import Editor, build_editor
from easyr1.editing.pool import EditorPool


def test_sandbox_backend_builds_the_sandbox_editor():
    from easyr1.sandbox.editor import SandboxEditor

    editor = build_editor(ImageEditConfig(backend="sandbox"))
    assert isinstance(editor, SandboxEditor) and isinstance(editor, Editor)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend"):
        build_editor(ImageEditConfig(backend="photoshop"))


def test_qwen_backend_names_a_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_path"):
        build_editor(ImageEditConfig(backend="qwen_image_edit", model_path=str(tmp_path / "none")))


def test_replica_placement_uses_the_editor_resource():
    gpu = PoolPlacement(resource="editor", resource_per_worker=1.0, num_gpus_per_worker=1.0, num_cpus_per_worker=4)
    options = EditorPool.actor_options(gpu, max_replica_restarts=5)
    assert options["resources"] == {"editor": 1.0}
    assert options["num_gpus"] == 1.0 and options["num_cpus"] == 4
    assert options["max_restarts"] == 0 and options["max_task_retries"] == 0  # the pool restarts, not Ray
    cpu = EditorPool.actor_options(PoolPlacement(), max_replica_restarts=-1)
    assert "resources" not in cpu and cpu["num_gpus"] == 0.0 and cpu["max_restarts"] == 0


def test_empty_negative_prompt_turns_true_cfg_off_with_a_log_line(caplog):
    """The reference's ``negative_prompt: ""`` meant no true CFG (its pipeline ignored the scale without one)."""
    with caplog.at_level("WARNING"):
        config = load_config(None, ["worker.image_edit.true_cfg_scale=4.0", "worker.image_edit.negative_prompt="])
    assert config.worker.image_edit.true_cfg_scale == 1.0
    assert config.worker.image_edit.negative_prompt == ""
    assert any("true CFG is off" in r.getMessage() for r in caplog.records)
