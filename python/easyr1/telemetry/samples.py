"""Sample rows (source | preliminary | final with CoT, Re_edit and scores) and the PNG/HTML report of a step."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from easyr1.config import DIMENSIONS

TILE = 256
"""Long side of each image tile in grids (pixels)."""


@dataclass
class SampleRow:
    """One sample of a step as shown in image tables. ``final`` is ``None`` when the re-edit failed (or was not
    made); ``scores``/``reward`` are ``None`` when the sample was masked before being scored."""

    source: Image.Image
    preliminary: Image.Image
    final: Image.Image | None
    cot: str = ""
    """The reasoning (``<CoT>`` blocks)."""
    re_edit: str = ""
    """The re-edit instruction sent to the editor."""
    response: str = ""
    """The full policy output (shown when ``cot`` is empty)."""
    scores: Mapping[str, float] | None = None
    """Judge scores by dimension (0-10)."""
    reward: float | None = None
    """Combined reward."""
    status: str = "ok"
    """``ok`` or the mask reason."""
    format_score: float | None = None
    """Format rule score (0-5)."""
    instruction: str = ""
    id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    """Other columns for the tables (strings or numbers)."""

    @classmethod
    def coerce(cls, row: SampleRow | Mapping[str, Any]) -> SampleRow:
        """Accept a :class:`SampleRow` or a mapping with the same keys (``final_image`` etc. also work)."""
        if isinstance(row, SampleRow):
            return row
        data = dict(row)
        aliases = {
            "source_image": "source",
            "preliminary_image": "preliminary",
            "edited_image": "preliminary",
            "final_image": "final",
            "format": "format_score",
        }
        for alias, name in aliases.items():
            if alias in data:
                data[name] = data.pop(alias)
        missing = [name for name in ("source", "preliminary") if data.get(name) is None]
        if missing:
            raise ValueError(f"sample row {data.get('id', '?')!r}: missing {', '.join(missing)} image")
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**{k: v for k, v in data.items() if k in known}, extra=extra)

    def caption(self) -> str:
        """A one-line summary: reward, status and scores."""
        parts = [f"reward {_fmt(self.reward)}", f"status {self.status}"]
        if self.format_score is not None:
            parts.append(f"format {_fmt(self.format_score)}")
        if self.scores:
            parts.append(" ".join(f"{_short(d)} {_fmt(self.scores.get(d))}" for d in DIMENSIONS if d in self.scores))
        return " | ".join(parts)


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2f}"


def _short(dimension: str) -> str:
    return "".join(part[0] for part in dimension.split("_")).upper()


def fit(image: Image.Image, side: int = TILE) -> Image.Image:
    """An RGB copy with its long side scaled to ``side``."""
    rgb = image.convert("RGB")
    scale = side / max(rgb.size)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    return rgb.resize(size, Image.Resampling.BICUBIC)


def row_strip(row: SampleRow, side: int = TILE) -> Image.Image:
    """source | preliminary | final side by side with a caption; a missing final is an empty, labelled cell."""
    header = 18
    strip = Image.new("RGB", (3 * side, side + header * 2), "white")
    draw = ImageDraw.Draw(strip)
    for i, (label, image) in enumerate(
        (("source", row.source), ("preliminary", row.preliminary), ("final", row.final))
    ):
        x = i * side
        draw.text((x + 4, 3), label, fill="black")
        if image is None:
            draw.rectangle([x + 1, header, x + side - 2, header + side - 1], outline="gray")
            draw.text((x + 8, header + side // 2 - 6), f"no final image ({row.status})", fill="gray")
            continue
        tile = fit(image, side)
        strip.paste(tile, (x + (side - tile.width) // 2, header + (side - tile.height) // 2))
    draw.text((4, header + side + 3), row.caption()[:150], fill="black")
    return strip


def grid(rows: Sequence[SampleRow], side: int = TILE) -> Image.Image:
    """All row strips stacked vertically."""
    strips = [row_strip(r, side) for r in rows]
    out = Image.new("RGB", (3 * side, sum(s.height for s in strips)), "white")
    y = 0
    for s in strips:
        out.paste(s, (0, y))
        y += s.height
    return out


def write_report(step: int, rows: Sequence[SampleRow], folder: Path, title: str = "samples") -> Path:
    """Write ``folder/step_<step>/``: each image as PNG, ``grid.png`` and ``index.html``; refresh
    ``folder/index.html`` (a list of steps). Returns the step's ``index.html``."""
    step_dir = folder / f"step_{step:06d}"
    step_dir.mkdir(parents=True, exist_ok=True)
    body = [
        f"<h1>{html.escape(title)}, step {step}</h1>",
        '<p><img src="grid.png" alt="grid of all rows"></p>',
        "<table border=1 cellpadding=4><tr><th>#</th><th>source</th><th>preliminary</th><th>final</th>"
        "<th>instruction / CoT / Re_edit</th><th>scores</th></tr>",
    ]
    for i, row in enumerate(rows):
        cells = []
        for name, image in (("source", row.source), ("preliminary", row.preliminary), ("final", row.final)):
            if image is None:
                cells.append(f"<td>no final image<br>({html.escape(row.status)})</td>")
                continue
            file_name = f"row{i:02d}_{name}.png"
            fit(image).save(step_dir / file_name)
            cells.append(f'<td><img src="{file_name}" alt="{name}"></td>')
        text = (
            f"<b>id</b> {html.escape(row.id)}<br><b>instruction</b> {html.escape(row.instruction)}<br>"
            f"<b>CoT</b><pre>{html.escape(row.cot)}</pre><b>Re_edit</b><pre>{html.escape(row.re_edit)}</pre>"
        )
        if row.response and not row.cot:
            text += f"<b>response</b><pre>{html.escape(row.response)}</pre>"
        scores = "".join(
            f"{html.escape(k)}: {_fmt(v)}<br>" for k, v in (row.scores or {}).items() if isinstance(v, (int, float))
        )
        scores += f"format: {_fmt(row.format_score)}<br><b>reward: {_fmt(row.reward)}</b><br>status: "
        scores += html.escape(row.status)
        scores += "".join(f"<br>{html.escape(str(k))}: {html.escape(str(v))}" for k, v in row.extra.items())
        body.append(f"<tr><td>{i}</td>{''.join(cells)}<td>{text}</td><td>{scores}</td></tr>")
    body.append("</table>")
    grid(rows).save(step_dir / "grid.png")
    page = step_dir / "index.html"
    page.write_text(_html(f"easyr1 {title}, step {step}", "\n".join(body)))
    steps = sorted(p.name for p in folder.glob("step_*") if (p / "index.html").exists())
    links = "".join(f'<li><a href="{name}/index.html">{name}</a></li>' for name in steps)
    (folder / "index.html").write_text(_html(f"easyr1 {title}", f"<h1>{html.escape(title)}</h1><ul>{links}</ul>"))
    return page


def _html(title: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>\n'
        f"<body>\n{body}\n</body></html>\n"
    )
