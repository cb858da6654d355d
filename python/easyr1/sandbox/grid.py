"""Draw a grid of sandbox rows: source | preliminary edit | re-edited with the demonstration.

python -m easyr1.sandbox.grid --out docs/images/sandbox_grid.png
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from ..core.types import EditRequest
from ..reward.parsing import extract_re_edit
from .answers import score_preliminary, score_re_edit
from .defects import CATALOGUE
from .editor import SandboxEditor
from .generator import generate_row
from .render import _font, render_scene

HEADERS = ("source", "preliminary edit", "re-edited (demonstration)")

logger = logging.getLogger(__name__)


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    if current:
        lines.append(current)
    return lines


def _pick_rows(rows: int, seed: int, first_index: int) -> list:
    """Rows of the stream from ``first_index`` on, preferring rows that show defect kinds not shown yet."""
    picked, shown, index = [], set(), first_index
    while len(picked) < rows and index < first_index + 50 * rows:
        row = generate_row(seed, index)
        index += 1
        if set(row.defects) - shown or len(shown) == len(CATALOGUE):
            picked.append(row)
            shown |= set(row.defects)
    return picked


def make_grid(rows: int = 7, *, seed: int = 0, size: int = 160, first_index: int = 0) -> Image.Image:
    """The grid image: one line per row with its three pictures and, to the right, instruction, defects, re-edit
    and the judge's mean score before and after. Rows are taken in stream order, skipping rows that show no
    defect kind not already shown (until every kind is shown)."""
    editor = SandboxEditor()
    pad, text_w, header_h = 8, 560, 24
    width = pad + 3 * (size + pad) + text_w
    height = header_h + rows * (size + pad) + pad
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    font, small = _font(14), _font(12)
    for c, title in enumerate(HEADERS):
        draw.text((pad + c * (size + pad), 5), title, fill=(0, 0, 0), font=font)
    draw.text((pad + 3 * (size + pad), 5), "instruction, injected defects, re-edit", fill=(0, 0, 0), font=font)
    for r, row in enumerate(_pick_rows(rows, seed, first_index)):
        doc = row.doc
        source_img = render_scene(doc.source, size)
        prelim_img = render_scene(doc.scene, size)
        re_edit = extract_re_edit(row.demonstration) or ""
        result = editor.edit(
            [EditRequest(prelim_img, re_edit, seed=0, key=row.id, metadata={"scene_json": doc.to_json()})]
        )[0]
        if not result.ok or result.image is None:
            raise RuntimeError(f"sandbox editor failed on {row.id}: {result.reason}")
        y = header_h + r * (size + pad)
        for c, img in enumerate((source_img, prelim_img, result.image)):
            grid.paste(img, (pad + c * (size + pad), y))
        before = score_preliminary(doc).mean
        after = score_re_edit(doc, re_edit).mean
        text = [
            *_wrap(row.instruction_detailed, 80),
            "defects: " + ", ".join(row.defects),
            *_wrap("re-edit: " + re_edit, 80),
            f"judge mean: {before:.1f} -> {after:.1f}",
        ]
        tx = pad + 3 * (size + pad)
        for i, line in enumerate(text[:10]):
            draw.text((tx, y + 2 + i * 15), line, fill=(30, 30, 30), font=small)
    return grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images/sandbox_grid.png")
    parser.add_argument("--rows", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=160, help="side of each picture in pixels")
    parser.add_argument("--first-index", type=int, default=0, help="index of the first row of the stream")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    make_grid(args.rows, seed=args.seed, size=args.size, first_index=args.first_index).save(out)
    logger.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
