"""Can the tiny policy read an image-only repair's direction when it is *told* the answer? An oracle SFT probe.

The gate before any GRPO run on ``misplaced_object`` (issue 18): if supervised training on the right answers cannot
teach the policy to read the object's side from its preliminary image, no GRPO setting will. Per run:

1. sandbox data from the packaged preset (``--seed``; training twins on by default — rows 2k/2k+1 share scene and
   text and differ only in which way the image-only defect went wrong, so no text can tell their repairs apart),
   or the ``train``/``val`` folders of an earlier run (``--data``);
2. a fresh tiny policy: ``SANDBOX_POLICY_SPEC`` with ``--spec key=value`` changes (any ``TinyPolicySpec`` field),
   of ``--family``; or a copy of an existing one (``--policy``);
3. SFT on the rows' own demonstrations (``sft.demonstrations`` unset: the oracle teacher, which names the right
   direction; checked on every training row before training), ``--steps`` steps at ``--lr``;
4. greedy answers on every held-out validation row (and on the first ``--train-rows`` training rows: can it fit
   what it was shown?), counted by needed vs said direction per image-only kind.

Prints the tables, then one JSON line: ``side_right`` (share of held-out ``misplaced_object`` rows whose answer
names exactly the needed side), ``said_right_share`` (share of them that say "right": 1.0 or 0.0 is a policy that
ignores the image), ``exposure_right``, ``side_right_train``, ``twin_sensitivity`` (per kind: how much the last
hidden state at the direction word moves when the preliminary image is swapped for its twin's, or blanked),
``judge_mean``, ``sft_s``, ``params``. Existing ``OUT/sft`` is reused (delete it to retrain).

    python benchmarks/vision_probe.py --out /tmp/probe --seed 2 [--spec mrope_section=1,1,14 ...] [--steps 300]

``--vision-pretrain-steps N`` trains the fresh policy's vision tower for N steps on rendered scenes of its own
stream before the oracle SFT (:mod:`easyr1.sandbox.vision_pretrain`; its report lands in ``OUT/vision_pretrain.json``
and the JSON line's ``vision_pretrain``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning import NEEDED, direction_table, parse_spec  # the benchmark's own side counter and --spec

SIDE_KIND = "misplaced_object"
EXPOSURE_KIND = "wrong_exposure"


def oracle_check(rows: list) -> int:
    """Every training row's demonstration names the direction its image-only defect needs; returns how many rows
    carry an image-only defect. Raises if a demonstration names the wrong or no direction."""
    import re

    from learning import DIRECTION_WORDS

    checked = 0
    for row in rows:
        for clause in json.loads(row.metadata["scene_json"]).get("intent", []):
            kind = {"center": SIDE_KIND, "exposure": EXPOSURE_KIND}.get(clause.get("kind"))
            if kind is None or kind not in (row.metadata.get("defects") or []):
                continue
            needed = NEEDED[kind][clause["args"]["off"]]
            tail = row.metadata["demonstration"].split("<Re_edit>", 1)[-1].lower()
            said = {v for w, v in DIRECTION_WORDS[kind].items() if re.search(rf"\b{w}\b", tail)}
            if said != {needed}:
                raise RuntimeError(f"row {row.id}: oracle demonstration says {sorted(said)}, the repair needs {needed}")
            checked += 1
    return checked


def twin_sensitivity(model_dir: Path, cfg, rows: list, per_kind: int = 12) -> dict[str, dict[str, float]]:
    """Per image-only kind: how much the policy's last hidden state at the direction word (teacher-forced on the
    row's demonstration) changes, relative to its norm, when the row's preliminary image is replaced by its twin's
    (same scene and text, the other direction) and when it is blanked. A policy that reads the direction changes a
    lot under the twin swap; one that ignores the image changes little under either. Needs twin rows
    (ids ``…-2k`` / ``…-2k+1``); mean over the first ``per_kind`` pairs of each kind."""
    import torch

    from easyr1.actor.batch import encode_responses
    from easyr1.data import build_policy_prompt
    from easyr1.models.families import family_of
    from easyr1.models.inputs import collate, encode_prompt
    from easyr1.models.loading import load_policy
    from easyr1.sandbox.evaluate import blank_like

    loaded = load_policy(model_dir, dtype="float32", attn_implementation="sdpa")
    model, tok = loaded.model.eval(), loaded.processor.tokenizer
    side_ids = {tok.convert_tokens_to_ids("Ġleft"), tok.convert_tokens_to_ids("Ġright")}
    edit_id = tok.convert_tokens_to_ids("_edit")

    def last_hidden(row, images) -> torch.Tensor:
        prompt = build_policy_prompt(row, cfg.data.system_prompt, cfg.data.prompt_layout)
        prompt.images = images
        response = encode_responses(tok, [row.metadata["demonstration"]])[0]
        # the direction word: "left"/"right", or the verb right after the opening <Re_edit> (Brighten, Dim, …)
        side = [k for k, t in enumerate(response) if t in side_ids]
        j = side[0] if side else response.index(edit_id) + 1
        inputs = collate([encode_prompt(loaded.processor, prompt)], [response], pad_token_id=tok.pad_token_id)
        with torch.no_grad():
            out = model(**family_of(model).forward_kwargs(inputs.model_inputs), output_hidden_states=True)
        return out.hidden_states[-1][0, inputs.prompt_length + j - 1]

    by_id = {r.id: r for r in rows}
    result: dict[str, dict[str, float]] = {}
    for kind in (SIDE_KIND, EXPOSURE_KIND):
        twin_rel, blank_rel = [], []
        for row in sorted(rows, key=lambda r: r.id):
            head, _, index = row.id.rpartition("-")
            twin = by_id.get(f"{head}-{int(index) + 1:0{len(index)}d}")
            if int(index) % 2 or twin is None or kind not in (row.metadata.get("defects") or []):
                continue
            own = build_policy_prompt(row, cfg.data.system_prompt, cfg.data.prompt_layout).images
            other = build_policy_prompt(twin, cfg.data.system_prompt, cfg.data.prompt_layout).images
            base = last_hidden(row, own)
            swapped = last_hidden(row, [own[0], other[-1]])
            blanked = last_hidden(row, [own[0], blank_like(own[-1])])
            twin_rel.append(float((base - swapped).norm() / base.norm()))
            blank_rel.append(float((base - blanked).norm() / base.norm()))
            if len(twin_rel) >= per_kind:
                break
        if twin_rel:
            result[kind] = {
                "twin_swap": round(sum(twin_rel) / len(twin_rel), 5),
                "blank": round(sum(blank_rel) / len(blank_rel), 5),
                "pairs": len(twin_rel),
            }
    return result


def side_stats(table: dict[str, dict[str, int]]) -> dict[str, float | int | None]:
    """Share right and share of answers saying "right" among the ``misplaced_object`` rows of a direction table."""
    counts = table.get(SIDE_KIND, {})
    total = sum(counts.values())
    right = sum(n for k, n in counts.items() if k.split("->")[0] == k.split("->")[1])
    said_right = sum(n for k, n in counts.items() if k.split("->")[1] == "right")
    exp = table.get(EXPOSURE_KIND, {})
    exp_total = sum(exp.values())
    exp_right = sum(n for k, n in exp.items() if k.split("->")[0] == k.split("->")[1])
    return {
        "rows": total,
        "right": round(right / total, 4) if total else None,
        "said_right_share": round(said_right / total, 4) if total else None,
        "exposure_rows": exp_total,
        "exposure_right": round(exp_right / exp_total, 4) if exp_total else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="run folder (data/, tiny/policy, sft/, probe.json)")
    parser.add_argument("--seed", type=int, default=2, help="data, policy and training seed (issue 18's hard seed: 2)")
    parser.add_argument("--data", default=None, help="use DATA/train and DATA/val instead of generating data")
    parser.add_argument("--no-twins", action="store_true", help="generate plain training rows (no twins)")
    parser.add_argument("--policy", default=None, help="copy this tiny policy instead of building one")
    parser.add_argument("--family", default="qwen2_5_vl", help="tiny policy family (qwen2_5_vl, qwen3_vl)")
    parser.add_argument(
        "--spec", action="append", default=[], help="a TinyPolicySpec change over SANDBOX_POLICY_SPEC (repeatable)"
    )
    parser.add_argument(
        "--vision-pretrain-steps",
        type=int,
        default=0,
        help="pretrain the fresh tiny policy's vision tower on rendered scenes first (easyr1.sandbox.vision_pretrain)",
    )
    parser.add_argument("--vision-pretrain-lr", type=float, default=2.0e-3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=2.0e-3)
    parser.add_argument("--train-rows", type=int, default=64, help="also evaluate the first N training rows")
    parser.add_argument("overrides", nargs="*", help="config key=value overrides over the packaged sandbox preset")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from easyr1.config import load_config
    from easyr1.data.images import ImageOptions
    from easyr1.models.tiny import SANDBOX_POLICY_SPEC, build_tiny_policy
    from easyr1.sandbox.evaluate import evaluate_policy, load_rows
    from easyr1.sandbox.generator import write_sandbox_splits
    from easyr1.sandbox.vision_pretrain import pretrain_vision_tower
    from easyr1.trainer.demo import demo_overrides, preset_path
    from easyr1.trainer.sft import run_sft

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    spec_changes = parse_spec(args.spec)
    overrides = [
        *demo_overrides(out, None, args.seed),
        f"sandbox.train_image_pairs={'false' if args.no_twins else 'true'}",
        f"sft.max_steps={args.steps}",
        f"sft.lr={args.lr}",
        f"worker.actor.model.model_family={args.family}",
        "trainer.logger=[console,file]",
        *args.overrides,
    ]
    cfg = load_config(preset_path(), overrides)
    cfg.sft.demonstrations = None  # the rows' own demonstrations: the oracle teacher

    data = out / "data"
    if args.data:
        for split in ("train", "val"):
            if not (data / split).exists():
                shutil.copytree(Path(args.data) / split, data / split)
    elif not any((data / "train").glob("*.parquet")):
        write_sandbox_splits(data, cfg.sandbox)
    policy = out / "tiny" / "policy"
    spec = dataclasses.replace(SANDBOX_POLICY_SPEC, **spec_changes)
    if not (policy / "config.json").is_file():
        if args.policy:
            shutil.copytree(args.policy, policy)
        else:
            build_tiny_policy(policy, seed=args.seed, spec=spec, family=args.family)
        if args.vision_pretrain_steps:
            report = pretrain_vision_tower(
                policy,
                args.vision_pretrain_steps,
                seed=cfg.sandbox.seed,
                image_size=cfg.sandbox.image_size,
                image_options=ImageOptions(
                    min_pixels=cfg.data.min_pixels,
                    max_pixels=cfg.data.max_pixels,
                    max_long_side=cfg.data.max_long_side,
                ),
                lr=args.vision_pretrain_lr,
            )
            (out / "vision_pretrain.json").write_text(json.dumps(dataclasses.asdict(report), indent=1))
    pretrain_path = out / "vision_pretrain.json"
    vision_pretrain = json.loads(pretrain_path.read_text()) if pretrain_path.is_file() else None

    train_rows = load_rows(cfg, "train")
    checked = oracle_check(train_rows)
    logging.info("oracle teacher: %d training rows' image-only repairs name the needed direction", checked)

    sft_dir = Path(cfg.sft.output_dir)
    sft_s = None  # an existing OUT/sft is reused, not timed
    if not (sft_dir / "config.json").is_file():
        t0 = time.perf_counter()
        run_sft(cfg)
        sft_s = round(time.perf_counter() - t0, 1)

    val_rows = load_rows(cfg, "val")
    val = evaluate_policy(sft_dir, cfg, val_rows)
    val_table = direction_table(val_rows, val.rows)
    fit_rows = train_rows[: args.train_rows]
    fit = evaluate_policy(sft_dir, cfg, fit_rows) if fit_rows else None
    fit_table = direction_table(fit_rows, fit.rows) if fit else {}
    vs, ts = side_stats(val_table), side_stats(fit_table)

    from easyr1.models.loading import load_policy

    params = sum(p.numel() for p in load_policy(sft_dir, dtype="float32").model.parameters())
    sensitivity = twin_sensitivity(sft_dir, cfg, train_rows) if not args.no_twins and not args.data else {}
    print(f"oracle SFT probe: {args.family} {spec_changes or 'SANDBOX_POLICY_SPEC'} {args.steps} steps lr {args.lr}")
    for name, table in (("held-out", val_table), (f"training (first {len(fit_rows)})", fit_table)):
        for kind, counts in table.items():
            print(f"  {name:>22} {kind:>16}: " + " ".join(f"{k}={n}" for k, n in counts.items()))
    for kind, v in sensitivity.items():
        print(
            f"  {'twin sensitivity':>22} {kind:>16}: last hidden state at the direction word changes "
            f"{v['twin_swap']:.4f} (twin's image) / {v['blank']:.4f} (blank image) of its norm, {v['pairs']} pairs"
        )
    summary = val.summary()
    result = {
        "benchmark": "vision_probe",
        "seed": args.seed,
        "family": args.family,
        "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in spec_changes.items()},
        "steps": args.steps,
        "lr": args.lr,
        "twins": not args.no_twins and not args.data,
        "overrides": args.overrides,
        "side_right": vs["right"],
        "said_right_share": vs["said_right_share"],
        "side_rows": vs["rows"],
        "exposure_right": vs["exposure_right"],
        "side_right_train": ts["right"],
        "twin_sensitivity": sensitivity,
        "judge_mean": round(summary["judge_mean"], 4),
        "format": round(summary["format"], 4),
        "vision_pretrain": vision_pretrain,
        "sft_s": sft_s,
        "params": params,
        "directions_val": val_table,
        "directions_train": fit_table,
    }
    (out / "probe.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
