"""report.html as a person sees it: opened in a real headless browser (Chromium through Playwright).

Needs the ``playwright`` Python package (``pip install -e .[dev]``) and a Chromium binary — Debian's ``chromium``
package (``/usr/bin/chromium``) or ``$EASYR1_CHROMIUM``; ``playwright install`` is not used. Skipped, with the
reason, when either is missing.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest

from easyr1.trainer.report import RepairedRow, read_metrics, summarize, write_report

DIMS = ("physical_geometric", "environment_context", "cultural_social", "logical_causal", "target_attribution")


def _chromium() -> str:
    path = os.environ.get("EASYR1_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("no Chromium binary (apt-get install chromium, or set EASYR1_CHROMIUM)")
    return path


def _run_dir(tmp_path: Path) -> Path:
    """A run folder like ``easyr1 demo`` leaves: metrics with validation rows, sample grids, repaired rows."""
    from PIL import Image

    from easyr1.sandbox.render import render_scene
    from easyr1.sandbox.scene import Scene, SceneObject

    lines = []
    for step in range(0, 9):
        row = {"step": step, "reward/mean": 6 + step / 8, "reward/format": 4.5, "timing/step_s": 2.0}
        row.update({f"reward/{d}": 6 + step / 8 for d in DIMS})
        lines.append(row)
        if step % 4 == 0:
            lines.append(
                {
                    "step": step,
                    "val/reward/mean": 7 + step / 10,
                    "val/reward/format": 5.0,
                    **{f"val/reward/{d}": 7 + step / 10 for d in DIMS},
                }
            )
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    scene = Scene(seed=1, objects=[SceneObject("tree", "green", 0.3), SceneObject("ball", "red", 0.6)])
    for folder in ("samples/step_000008", "samples/val/step_000008"):
        (tmp_path / folder).mkdir(parents=True)
        render_scene(scene, 96).save(tmp_path / folder / "grid.png")
    images = {}
    for name in ("preliminary", "sft", "grpo"):
        images[name] = tmp_path / f"{name}.png"
        render_scene(scene, 64).save(images[name])
    repaired = [
        RepairedRow(
            "row-1", "Make it dusk.", ["wrong_exposure"], "<Re_edit>Darken</Re_edit>", "grpo", 5.0, 10.0, images
        )
    ]
    rows = read_metrics(tmp_path / "metrics.jsonl")
    outcome = {"judge_before": 7.2, "judge_after": 8.4, "repair_before": 0.5, "repair_after": 0.75}
    write_report(tmp_path, summarize(rows), rows, outcome=outcome, repaired=repaired)
    assert Image.open(images["grpo"]).size == (64, 64)
    return tmp_path


def test_report_renders_in_headless_chromium(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the [dev] extra)")
    from PIL import Image, ImageStat

    executable = _chromium()
    run_dir = _run_dir(tmp_path)
    page_url = (run_dir / "report.html").resolve().as_uri()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            failed: list[str] = []
            page.on("requestfailed", lambda req: failed.append(req.url))
            page.goto(page_url, wait_until="load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => ({src: e.getAttribute('src'), ok: e.complete && e.naturalWidth > 0}))"
            )
            shot = page.screenshot(full_page=True)
            title = page.title()
        finally:
            browser.close()
    assert not failed, f"requests failed: {failed}"
    srcs = [i["src"] for i in images]
    # the plots (training reward, validation judge mean), both sample grids and the repaired row's three images
    assert any("val_reward" in s for s in srcs) and any("train_reward" in s for s in srcs), srcs
    assert "samples/step_000008/grid.png" in srcs and "samples/val/step_000008/grid.png" in srcs, srcs
    assert len(images) >= 7, srcs
    assert all(i["ok"] for i in images), [i["src"] for i in images if not i["ok"]]
    assert title
    grey = Image.open(io.BytesIO(shot)).convert("L")
    assert grey.size[0] >= 1000 and grey.size[1] > 900  # the page is longer than one screen
    stat = ImageStat.Stat(grey)
    assert stat.stddev[0] > 20, f"screenshot looks blank (pixel std {stat.stddev[0]:.1f})"
    assert grey.getextrema()[0] < 60  # some dark pixels: text and plot lines were drawn
