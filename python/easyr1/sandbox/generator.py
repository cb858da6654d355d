"""Generate sandbox rows — source scene, requested edit, defective preliminary edit, demonstration — and write
them in the seed parquet format.

Each row is drawn from its own random stream (``seed``, split, index), so a row does not depend on how many rows
are written or in which file it lands.
"""

from __future__ import annotations

import base64
import io
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ..config.sandbox import IMAGE_ONLY_DEFECTS, SANDBOX_DEFECTS, SandboxConfig
from .defects import CATALOGUE, DefectSpec
from .grammar import parse_instruction
from .ops import SLOTS, apply_ops
from .render import render_scene
from .rules import score_doc
from .scene import COLORS, MOVABLE_KINDS, SETTINGS, SIDES, Clause, Scene, SceneDoc, SceneObject, opposite

log = logging.getLogger(__name__)

SEED_COLUMNS: tuple[str, ...] = (
    "omni_edit_id", "task", "width", "height", "src_img_b64", "edit_prompt", "qwen_edited_img_b64",
)  # fmt: skip
"""The reference dataset's columns, in its order."""
EXTRA_COLUMNS: tuple[str, ...] = ("scene_json", "defects", "demonstration")
"""Sandbox columns after the seed ones: the scene document, the injected defect kinds, a correct answer."""
SCHEMA = pa.schema(
    [
        ("omni_edit_id", pa.string()),
        ("task", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("src_img_b64", pa.string()),
        ("edit_prompt", pa.list_(pa.string())),
        ("qwen_edited_img_b64", pa.string()),
        ("scene_json", pa.string()),
        ("defects", pa.list_(pa.string())),
        ("demonstration", pa.string()),
    ]
)
FILE_PATTERN = "sandbox_{:05d}.parquet"
MAX_RE_EDIT_CHARS = 100
"""Demonstrations keep their Re_edit lines within this many characters in total (the strict format rule's
default budget, 2 × 50), choosing the shortest wordings when the random ones would exceed it."""


@dataclass
class SandboxRow:
    """One generated example, before rendering."""

    id: str
    task: str
    instruction_short: str
    instruction_detailed: str
    doc: SceneDoc
    """Source, preliminary (``doc.scene``) and intent."""
    ideal: Scene
    """The requested edit done right (what a perfect re-edit reaches)."""
    demonstration: str
    re_edits: list[str]
    defects: list[str]
    partial_demonstration: str = ""
    """The demonstration of the first defect only (its reason and its re-edits): a warm start that teaches the
    format and one repair per row, leaving the other defects of multi-defect rows for GRPO."""
    text_only_demonstration: str = ""
    """What a teacher reading only the text would answer: image-only repairs with a random direction (drawn from
    the row's own teacher stream), every other repair as in :attr:`demonstration`."""


def _row_rng(seed: int, split: str, index: int) -> random.Random:
    return random.Random(f"easyr1-sandbox:{split}:{seed}:{index}")


FLIPPED_OFF = {"left": "right", "right": "left", "dark": "bright", "bright": "dark"}
"""The other way an image-only defect can go wrong (``Clause.args["off"]``), for the twin of a row pair."""


def _choose_defects(rng: random.Random, kinds: Sequence[str], low: int, high: int) -> list[DefectSpec]:
    k = rng.randint(low, high)
    pool = list(kinds)
    rng.shuffle(pool)
    chosen: list[DefectSpec] = []
    groups: set[str] = set()
    for name in pool:
        spec = CATALOGUE[name]
        if spec.group is not None and spec.group in groups:
            continue
        chosen.append(spec)
        if spec.group is not None:
            groups.add(spec.group)
        if len(chosen) == k:
            break
    # Present them in catalogue order, so instruction and answer follow one stable order of concerns.
    return sorted(chosen, key=lambda s: list(CATALOGUE).index(s.name))


def _source_scene(rng: random.Random, index: int, n_movable: int) -> Scene:
    scene = Scene(seed=rng.randrange(2**31), setting=rng.choice(SETTINGS), sun_side=rng.choice(SIDES))
    scene.objects.append(SceneObject("tree", "green", round(rng.uniform(0.3, 0.7), 3), shadow=opposite(scene.sun_side)))
    kinds = rng.sample(MOVABLE_KINDS, n_movable)
    colors = rng.sample(COLORS, n_movable)
    slots = sorted(rng.sample(SLOTS, n_movable))
    for kind, color, x in zip(kinds, colors, slots, strict=True):
        scene.objects.append(SceneObject(kind, color, x, shadow=opposite(scene.sun_side)))
    return scene


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _describe(src: Scene, rng: random.Random) -> str:
    things = []
    for o in sorted(src.objects, key=lambda o: o.x):
        if o.kind == "tree":
            things.append("a tree")
        elif o.kind == "candle":
            things.append("a lit candle" if o.lit else "a candle")
        else:
            things.append(f"a {o.color} {o.kind}")
    if src.pond:
        things.append("a pond")
    weather = {"clear": "a clear day", "rainy": "a rainy day", "snowy": "a snowy day"}[src.sky]
    if rng.random() < 0.5:
        return f"A {src.setting} on {weather} with {_join(things)}."
    return f"In a {src.setting} on {weather} there is {_join(things)}."


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def format_demonstration(cots: list[str], re_edits: list[str]) -> str:
    """The strict answer format: one ``<CoT>`` line (the reasons joined, to keep answers short for tiny
    policies), then one ``<Re_edit>`` line per re-edit."""
    reasoning = " ".join(cots)
    return "\n".join([f"<CoT>{reasoning}</CoT>", *(f"<Re_edit>{r}</Re_edit>" for r in re_edits)])


def generate_row(
    seed: int,
    index: int,
    *,
    split: str = "train",
    defects: Sequence[str] | None = None,
    min_defects: int = 1,
    max_defects: int = 3,
    image_pairs: bool = False,
) -> SandboxRow:
    """Generate row ``index`` of the ``split`` stream for ``seed`` (no rendering).

    ``image_pairs``: rows ``2k`` and ``2k + 1`` are drawn from one stream (``k``) and are twins — the same source
    scene, request, instruction text and text-only teacher answer — except that every image-only defect went wrong
    the other way in the odd row (object left instead of right of the middle, picture too bright instead of too
    dark). Only the preliminary image tells the twins apart, so no answer that ignores it repairs both.
    """
    base = index // 2 if image_pairs else index
    kinds = list(defects) if defects else [k for k in SANDBOX_DEFECTS if k not in IMAGE_ONLY_DEFECTS]
    unknown = sorted(set(kinds) - set(CATALOGUE))
    if unknown:
        raise ValueError(f"unknown defect kinds {unknown}; known: {list(CATALOGUE)}")
    if not 1 <= min_defects <= max_defects:
        raise ValueError(f"need 1 <= min_defects ({min_defects}) <= max_defects ({max_defects})")
    rng = _row_rng(seed, split, base)
    specs = _choose_defects(rng, kinds, min_defects, max_defects)
    names = [s.name for s in specs]
    n_movable = 2 if "wrong_object_edited" in names else rng.choice([1, 2])
    source = _source_scene(rng, base, n_movable)
    clauses: list[Clause] = [spec.prepare(source, rng) for spec in specs]
    if image_pairs and index % 2:
        for spec, clause in zip(specs, clauses, strict=True):
            if spec.name in IMAGE_ONLY_DEFECTS:
                clause.args["off"] = FLIPPED_OFF[clause.args["off"]]
    prelim, ideal = source.copy(), source.copy()
    for spec, clause in zip(specs, clauses, strict=True):
        spec.apply(prelim, clause, True)
        spec.apply(ideal, clause, False)
    phrases = [spec.phrases(c, rng) for spec, c in zip(specs, clauses, strict=True)]
    short = _sentence(_join([p[0] for p in phrases]))
    detailed = _describe(source, rng) + " " + _sentence(_join([p[1] for p in phrases]))
    cots = [spec.cot(c, rng) for spec, c in zip(specs, clauses, strict=True)]
    fix_rng_state = rng.getstate()
    per_defect = [spec.fixes(c, rng, False) for spec, c in zip(specs, clauses, strict=True)]
    re_edits = [fix for fixes in per_defect for fix in fixes]
    short_fix = sum(map(len, re_edits)) > MAX_RE_EDIT_CHARS
    if short_fix:
        rng.setstate(fix_rng_state)
        per_defect = [spec.fixes(c, rng, True) for spec, c in zip(specs, clauses, strict=True)]
        re_edits = [fix for fixes in per_defect for fix in fixes]
    doc = SceneDoc(source=source, scene=prelim, intent=clauses, defects=names)
    row_id = f"sandbox-{split}-{seed}-{index:06d}"
    teacher = random.Random(f"easyr1-sandbox-teacher:{split}:{seed}:{base}")
    guessed = [
        spec.guess(c, teacher, short_fix) if spec.guess is not None else fixes
        for spec, c, fixes in zip(specs, clauses, per_defect, strict=True)
    ]
    row = SandboxRow(
        id=row_id,
        task="sandbox:" + "+".join(dict.fromkeys(c.kind for c in clauses)),
        instruction_short=short,
        instruction_detailed=detailed,
        doc=doc,
        ideal=ideal,
        demonstration=format_demonstration(cots, re_edits),
        re_edits=re_edits,
        defects=names,
        partial_demonstration=format_demonstration(cots[:1], per_defect[0]),
        text_only_demonstration=format_demonstration(cots, [fix for fixes in guessed for fix in fixes]),
    )
    _self_check(row)
    return row


def _self_check(row: SandboxRow) -> None:
    """The demonstration must repair the preliminary edit completely; anything else is a generator bug."""
    ops, unparsed = parse_instruction("; ".join(row.re_edits))
    final, report = apply_ops(row.doc.scene, ops, row.doc.source)
    scores, violations = score_doc(row.doc.with_scene(final, stage="final"))
    if unparsed or report.ignored or min(scores.values()) < 10.0:
        raise RuntimeError(
            f"sandbox row {row.id}: demonstration {row.re_edits} does not repair {row.defects} "
            f"(unparsed={unparsed}, ignored={report.ignored}, left={[v.detail for v in violations]})"
        )


def png_b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def row_record(row: SandboxRow, image_size: int) -> dict:
    """The parquet record of a row: seed columns plus the sandbox's extra columns."""
    return {
        "omni_edit_id": row.id,
        "task": row.task,
        "width": image_size,
        "height": image_size,
        "src_img_b64": png_b64(render_scene(row.doc.source, image_size)),
        "edit_prompt": [row.instruction_short, row.instruction_detailed],
        "qwen_edited_img_b64": png_b64(render_scene(row.doc.scene, image_size)),
        "scene_json": row.doc.to_json(),
        "defects": list(row.defects),
        "demonstration": row.demonstration,
    }


def iter_rows(
    rows: int,
    seed: int = 0,
    *,
    split: str = "train",
    defects: Sequence[str] | None = None,
    min_defects: int = 1,
    max_defects: int = 3,
    image_pairs: bool = False,
) -> Iterator[SandboxRow]:
    for i in range(rows):
        yield generate_row(
            seed,
            i,
            split=split,
            defects=defects,
            min_defects=min_defects,
            max_defects=max_defects,
            image_pairs=image_pairs,
        )


def write_sandbox_dataset(
    out_dir: str | Path,
    rows: int,
    seed: int = 0,
    image_size: int = 64,
    rows_per_file: int = 256,
    *,
    split: str = "train",
    defects: Sequence[str] | None = None,
    min_defects: int = 1,
    max_defects: int = 3,
    image_pairs: bool = False,
) -> list[Path]:
    """Write ``rows`` rows as ``sandbox_00000.parquet``, … in ``out_dir`` and return the paths (``image_pairs``:
    see :func:`generate_row`).

    Earlier ``sandbox_*.parquet`` files in ``out_dir`` are removed first, so the folder holds exactly this dataset.
    """
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    if rows_per_file <= 0:
        raise ValueError(f"rows_per_file must be positive, got {rows_per_file}")
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8, got {image_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in sorted(out.glob("sandbox_*.parquet")):
        stale.unlink()
    paths: list[Path] = []
    batch: list[dict] = []
    gen = iter_rows(
        rows,
        seed,
        split=split,
        defects=defects,
        min_defects=min_defects,
        max_defects=max_defects,
        image_pairs=image_pairs,
    )
    for row in gen:
        batch.append(row_record(row, image_size))
        if len(batch) == rows_per_file:
            paths.append(_write_file(out / FILE_PATTERN.format(len(paths)), batch))
            batch = []
    if batch:
        paths.append(_write_file(out / FILE_PATTERN.format(len(paths)), batch))
    log.info("wrote %d sandbox rows (%s, seed %d) to %d file(s) in %s", rows, split, seed, len(paths), out)
    return paths


def _write_file(path: Path, records: list[dict]) -> Path:
    table = pa.Table.from_pylist(records, schema=SCHEMA)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, row_group_size=64)
    tmp.replace(path)
    return path


def write_sandbox_splits(out_dir: str | Path, config: SandboxConfig | None = None) -> dict[str, list[Path]]:
    """Write ``out_dir/train`` and ``out_dir/val`` from a :class:`SandboxConfig` (different row streams;
    ``train_image_pairs`` pairs the training rows only, validation rows are the same either way)."""
    cfg = config or SandboxConfig()
    common = dict(
        seed=cfg.seed,
        image_size=cfg.image_size,
        rows_per_file=cfg.rows_per_file,
        defects=cfg.defects or None,
        min_defects=cfg.min_defects,
        max_defects=cfg.max_defects,
    )
    out = Path(out_dir)
    return {
        "train": write_sandbox_dataset(
            out / "train",
            cfg.train_rows,
            split="train",
            image_pairs=cfg.train_image_pairs,
            **common,  # type: ignore[arg-type]
        ),
        "val": write_sandbox_dataset(out / "val", cfg.val_rows, split="val", **common),  # type: ignore[arg-type]
    }


SFT_DEMONSTRATION_MODES = ("full", "first_defect", "text_only")
"""``full``: the row's demonstration; ``first_defect``: :attr:`SandboxRow.partial_demonstration`; ``text_only``:
:attr:`SandboxRow.text_only_demonstration`."""


def write_sft_demonstrations(path: str | Path, config: SandboxConfig | None = None, mode: str = "first_defect") -> Path:
    """Write the training rows' SFT targets as ``{"id", "response"}`` JSONL (``sft.demonstrations``).

    Rows are regenerated from the config (same seed, same rows as :func:`write_sandbox_splits`'s training split);
    validation rows are never written.
    """
    import json

    if mode not in SFT_DEMONSTRATION_MODES:
        raise ValueError(f"mode must be one of {SFT_DEMONSTRATION_MODES}, not {mode!r}")
    cfg = config or SandboxConfig()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    gen = iter_rows(
        cfg.train_rows,
        cfg.seed,
        split="train",
        defects=cfg.defects or None,
        min_defects=cfg.min_defects,
        max_defects=cfg.max_defects,
        image_pairs=cfg.train_image_pairs,
    )
    with open(out, "w") as handle:
        for row in gen:
            text = {
                "full": row.demonstration,
                "first_defect": row.partial_demonstration,
                "text_only": row.text_only_demonstration,
            }[mode]
            handle.write(json.dumps({"id": row.id, "response": text}) + "\n")
    log.info("wrote %d SFT demonstrations (%s) to %s", cfg.train_rows, mode, out)
    return out


def corpus_texts(rows: int = 200, seed: int = 0) -> list[str]:
    """Instructions (short and detailed) and demonstrations of ``rows`` generated rows — text a tokenizer for the
    sandbox should cover (no rendering; fast)."""
    texts: list[str] = []
    for row in iter_rows(rows, seed, split="corpus"):
        texts += [row.instruction_short, row.instruction_detailed, row.demonstration]
    return texts
