"""The Grafana dashboards (JSON model v1) of the exporter's series, built in code and written to
``helm/files/dashboards/`` (the Helm chart ships them as ConfigMaps labelled ``grafana_dashboard: "1"``).

``python -m easyr1.telemetry.dashboards [--out helm/files/dashboards] [--check]`` rewrites (or checks) the files.
Every panel filters on the ``namespace`` and ``job`` variables; ``window`` is the smoothing window of the
per-step counters (steps are minutes apart, so Grafana's ``$__rate_interval`` would often hold no step).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .operations import judge, pools, throughput
from .training import overview, reward_by_dimension

logger = logging.getLogger(__name__)

BUILDERS = {
    "easyr1-overview": overview,
    "easyr1-reward": reward_by_dimension,
    "easyr1-judge": judge,
    "easyr1-throughput": throughput,
    "easyr1-pools": pools,
}


def build_dashboards() -> dict[str, dict[str, Any]]:
    """All dashboards by file stem (``<stem>.json``)."""
    return {name: build() for name, build in BUILDERS.items()}


def render(model: dict[str, Any]) -> str:
    """The file text of a dashboard (stable formatting, so regenerating gives the same bytes)."""
    return json.dumps(model, indent=2, ensure_ascii=False) + "\n"


def panel_queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title, expr)`` of every target of every panel (rows included)."""
    out: list[tuple[str, str]] = []
    for panel in model["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for t in inner.get("targets", []):
                out.append((inner.get("title", ""), t["expr"]))
    return out


def write_dashboards(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in build_dashboards().items():
        path = out_dir / f"{name}.json"
        path.write_text(render(model))
        written.append(path)
    return written


def stale_dashboards(out_dir: Path) -> list[str]:
    """File names under ``out_dir`` that are missing or differ from the builder's output."""
    return [
        f"{name}.json"
        for name, model in build_dashboards().items()
        if not (out_dir / f"{name}.json").is_file() or (out_dir / f"{name}.json").read_text() != render(model)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("helm/files/dashboards"), help="output folder")
    parser.add_argument("--check", action="store_true", help="only report files that differ (exit 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.check:
        stale = stale_dashboards(args.out)
        for name in stale:
            logger.error("%s is out of date; run python -m easyr1.telemetry.dashboards", args.out / name)
        return 1 if stale else 0
    for path in write_dashboards(args.out):
        logger.info("wrote %s", path)
    return 0
