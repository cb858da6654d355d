"""wandb: mode resolution, an offline run with the image table, and no secret in any logged file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from telemetry_testkit import make_config, run_synthetic_driver

from easyr1.telemetry import Telemetry, resolve_wandb_mode

FAKE_WANDB_KEY = "local-0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"
FAKE_OPENAI_KEY = "sk-test-FAKEFAKEFAKE0123456789abcdefABCDEF"


@pytest.mark.parametrize(
    ("mode", "env", "expected"),
    [
        ("auto", {"WANDB_API_KEY": FAKE_WANDB_KEY}, "online"),
        ("auto", {}, "offline"),
        ("auto", {"WANDB_API_KEY": "  "}, "offline"),
        ("offline", {"WANDB_API_KEY": FAKE_WANDB_KEY}, "offline"),
        ("online", {}, "online"),
        ("disabled", {}, "disabled"),
    ],
)
def test_resolve_wandb_mode(mode: str, env: dict[str, str], expected: str) -> None:
    assert resolve_wandb_mode(mode, env) == expected


def test_resolve_wandb_mode_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="wandb_mode"):
        resolve_wandb_mode("sometimes", {})


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.slow
def test_offline_run_has_image_table_and_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    for var, sub in (("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"), ("HOME", "")):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("WANDB_DATA_DIR", "unset-below")
    monkeypatch.delenv("WANDB_DATA_DIR")  # the logger then keeps staged table images inside the run folder
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", FAKE_WANDB_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_OPENAI_KEY)
    cfg = make_config(
        "trainer.logger=[console,file,wandb,tensorboard]",
        "trainer.wandb_mode=offline",
        "trainer.experiment_name=wandb-test",
        "telemetry.log_images_every=2",
    )
    run_dir = tmp_path / "run"
    with Telemetry(cfg, run_dir, revision="abc") as telemetry:
        assert telemetry.wandb is not None and telemetry.wandb.mode == "offline"
        run_synthetic_driver(telemetry, steps=2)
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    tables = list(runs[0].rglob("samples_2_*.table.json"))
    assert len(tables) == 1, sorted(str(p) for p in runs[0].rglob("*"))
    table = json.loads(tables[0].read_text())
    assert table["columns"][:5] == ["step", "id", "source", "preliminary", "final"]
    assert {"cot", "re_edit", "reward", "status", "physical_geometric", "format"} <= set(table["columns"])
    final = table["columns"].index("final")
    status = table["columns"].index("status")
    assert len(table["data"]) == 3
    assert [row[final] for row in table["data"]] == ["Image", "Image", None]  # a failed edit has no image
    assert table["data"][2][status] == "edit_failed"
    staged_pngs = [p for p in (run_dir / "wandb").rglob("*") if p.is_file() and p.read_bytes()[:4] == b"\x89PNG"]
    assert len(staged_pngs) >= 8  # 3 sources + 3 preliminaries + 2 finals, kept with the run
    # the config went to wandb (redacted dict), and no secret reached any file anywhere we wrote
    assert files_containing(runs[0], b"price_per_1k_prompt_tokens")
    for root in (tmp_path,):
        assert files_containing(root, FAKE_WANDB_KEY.encode()) == []
        assert files_containing(root, FAKE_OPENAI_KEY.encode()) == []
