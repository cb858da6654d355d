"""The ``easyr1`` command line.

Each sub-command parses its arguments here and hands them to the concern that implements it; heavy modules
(torch, Ray, diffusers) are imported only by the command that needs them, so ``easyr1 --help`` and
``easyr1 validate-config`` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from easyr1 import __version__
from easyr1.logging_setup import configure_logging

logger = logging.getLogger("easyr1.cli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _implementation(target: str) -> Callable[[argparse.Namespace], int]:
    """Resolve ``module:function`` lazily."""
    module_name, func_name = target.split(":")
    module = importlib.import_module(module_name)
    return getattr(module, func_name)


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. worker.rollout.n=8"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="easyr1",
        description="GRPO training of a vision-language model that repairs image edits.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'easyr1 demo' for a complete CPU run of the loop on the sandbox world (no GPU, no network).",
    )
    parser.add_argument("--version", action="version", version=f"easyr1 {__version__}")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="run GRPO training from a config file")
    p.add_argument("config", help="YAML config (see examples/)")
    _add_overrides(p)
    p.set_defaults(target="easyr1.trainer.entry:train_command")

    p = sub.add_parser("demo", help="build tiny models + sandbox data, SFT warm start, then GRPO on CPU")
    p.add_argument("--out", default="runs/demo", help="run folder (models, data, metrics, report)")
    p.add_argument("--steps", type=int, default=None, help="GRPO steps (default: the preset's)")
    p.add_argument("--seed", type=int, default=None, help="seed of data, models and training")
    p.add_argument("--config", default=None, help="start from this YAML instead of the embedded sandbox preset")
    _add_overrides(p)
    p.set_defaults(target="easyr1.trainer.demo:demo_command")

    p = sub.add_parser("sft", help="supervised warm start on demonstrations")
    p.add_argument("config", help="YAML config")
    _add_overrides(p)
    p.set_defaults(target="easyr1.trainer.sft:sft_command")

    p = sub.add_parser(
        "make-tiny", help="build a tiny random Qwen2.5-VL/Qwen3-VL policy and Qwen-Image-Edit pipeline offline"
    )
    p.add_argument("--out", required=True, help="output folder (gets policy/ and editor/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--family", default=None, help="policy model family: qwen2_5_vl (default) or qwen3_vl")
    p.add_argument("--skip-editor", action="store_true", help="build only the policy")
    p.set_defaults(target="easyr1.models.tiny:make_tiny_command")

    p = sub.add_parser("make-sandbox-data", help="write sandbox scenes in the seed parquet format")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--rows", type=int, required=True, help="number of rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--rows-per-file", type=int, default=256)
    p.set_defaults(target="easyr1.sandbox.cli:make_sandbox_data_command")

    p = sub.add_parser("check-data", help="read a dataset end to end and report bad rows")
    p.add_argument("path", help="file or folder")
    p.add_argument("--pattern", default=None, help="glob inside a folder (default: *.parquet, or *.jsonl for jsonl)")
    p.add_argument("--format", choices=["seed", "jsonl", "hf"], default="seed")
    p.add_argument("--on-bad-row", choices=["error", "skip"], default="error")
    p.set_defaults(target="easyr1.data.check:check_data_command")

    p = sub.add_parser("judge", help="score edited images with the multimodal judge")
    p.add_argument("--input", required=True, help="JSONL rows {id, source_image, edited_image, instruction}")
    p.add_argument("--out", required=True, help="output JSONL of scores (one row per input row, same order)")
    p.add_argument("--config", default=None, help="YAML config whose judge section is used")
    p.add_argument("--base-url", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--mode", choices=["per_dimension", "single_call"], default=None)
    p.add_argument("--max-concurrency", type=int, default=None)
    p.add_argument("--timeout", type=float, default=None, help="per-request timeout in seconds")
    _add_overrides(p)
    p.set_defaults(target="easyr1.reward.judge.cli:judge_command")

    p = sub.add_parser("export", help="write a Hugging Face model folder from a training checkpoint")
    p.add_argument("checkpoint", help="checkpoint folder (…/global_step_N)")
    p.add_argument("--out", required=True)
    p.add_argument("--adapter", action="store_true", help="LoRA runs: write a PEFT adapter folder, not merged weights")
    p.set_defaults(target="easyr1.trainer.export:export_command")

    p = sub.add_parser("plan-memory", help="per-GPU memory of each pool from the model configs (no weights)")
    p.add_argument("config", help="YAML config")
    _add_overrides(p)
    _implementation("easyr1.memory_plan.report:add_arguments")(p)
    p.set_defaults(target="easyr1.memory_plan.report:plan_memory_command")

    p = sub.add_parser("validate-config", help="load, merge and validate a config; print a summary")
    p.add_argument("config", help="YAML config")
    p.add_argument("--print", dest="print_yaml", action="store_true", help="print the resolved config")
    p.add_argument("--explain", metavar="KEY", default=None, help="print the documentation of a key")
    p.add_argument(
        "--preflight",
        action="store_true",
        help="also check what 'easyr1 train' needs before it starts: writable folders and disk space, pool "
        "resources against the cluster, judge credentials, model and data paths (exit 2 on a failure)",
    )
    _add_overrides(p)
    p.set_defaults(target="easyr1.cli:validate_config_command")
    return parser


def validate_config_command(args: argparse.Namespace) -> int:
    from easyr1.config import ConfigValidationError, dump_yaml, load_config, summary_lines
    from easyr1.config.docs import explain

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigValidationError as exc:
        print(f"easyr1: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.explain:
        text = explain(args.explain)
        if text is None:
            print(f"easyr1: unknown key {args.explain!r}", file=sys.stderr)
            return EXIT_USAGE
        print(text)
        return EXIT_OK
    print(f"{args.config.removeprefix('config=')}: valid")
    for line in summary_lines(cfg):
        print(f"  {line}")
    from easyr1.memory_plan.report import summary_lines as memory_lines

    for line in memory_lines(cfg):
        print(f"  {line}")
    if args.print_yaml:
        print(dump_yaml(cfg))
    if getattr(args, "preflight", False):
        preflight = _implementation("easyr1.trainer.preflight:preflight")
        report = _implementation("easyr1.trainer.preflight:report")
        failed = report(preflight(cfg, "train"), lambda line: print(f"easyr1: {line}", file=sys.stderr))
        if failed:
            return failed
        print("  preflight: ok")
    return EXIT_OK


PREFLIGHT_BEFORE = ("sft", "demo")
"""Commands whose preflight runs here, before their implementation loads anything (``train`` runs it itself)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        handler = _implementation(args.target)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("easyr1"):
            print(f"easyr1 {args.command}: not available in this build ({exc.name} is missing)", file=sys.stderr)
            return EXIT_FAILED
        raise
    if args.command in PREFLIGHT_BEFORE:
        preflight_command = _implementation("easyr1.trainer.preflight:preflight_command")
        failed = preflight_command(args, lambda line: print(line, file=sys.stderr))
        if failed:
            return failed
    return int(handler(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
