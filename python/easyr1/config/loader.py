"""Load a config: dataclass defaults ← YAML file ← ``key=value`` overrides (OmegaConf), then validate."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .aliases import translate
from .base import ConfigError, ConfigValidationError
from .root import EasyR1Config

logger = logging.getLogger(__name__)

SECRET_MARKERS = ("api_key", "token", "secret", "password")


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> EasyR1Config:
    """Build an :class:`EasyR1Config` from defaults, an optional YAML file and dotted ``key=value`` overrides.

    An override ``config=FILE`` (EasyR1's spelling) names the YAML file. Raises :class:`ConfigValidationError`
    naming every bad key.
    """
    overrides = list(overrides)
    rest = []
    for item in overrides:
        if item.startswith("config="):
            path = item.split("=", 1)[1]
        else:
            rest.append(item)
    merged = OmegaConf.structured(EasyR1Config)
    if path is not None:
        yaml_flat = _flatten(_read_yaml(Path(path)))
        merged = _merge(merged, translate(yaml_flat), source=str(path))
    for item in rest:
        if "=" not in item:
            raise ConfigValidationError([ConfigError(item, None, "overrides must look like key=value")])
        key, raw = item.split("=", 1)
        key = key.strip().lstrip("+")
        value = _parse_value(raw)
        merged = _merge(merged, translate({key: value}), source="command line")
    try:
        cfg: EasyR1Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:  # pragma: no cover - interpolation errors surface here
        raise ConfigValidationError([ConfigError(getattr(exc, "full_key", "?") or "?", None, str(exc))]) from None
    errors = list(cfg.validate())
    if errors:
        raise ConfigValidationError(errors)
    return cfg


def _parse_value(raw: str) -> Any:
    """A command-line value as YAML (numbers, booleans, lists); what YAML cannot read (``*.jsonl``) is a string."""
    if not raw.strip():
        return ""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigValidationError([ConfigError("config", str(path), "file not found")])
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigValidationError([ConfigError("config", str(path), f"not valid YAML: {exc}")]) from None
    if not isinstance(data, Mapping):
        raise ConfigValidationError([ConfigError("config", str(path), "the top level must be a mapping")])
    return dict(data)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def _merge(base: Any, flat: Mapping[str, Any], *, source: str) -> Any:
    for key, value in flat.items():
        try:
            base = OmegaConf.merge(base, _nested(key, value))
        except OmegaConfBaseException as exc:
            raise ConfigValidationError([_explain(key, value, exc, source)]) from None
    return base


def _nested(key: str, value: Any) -> dict[str, Any]:
    node: Any = value
    for part in reversed(key.split(".")):
        node = {part: node}
    return node


def _explain(key: str, value: Any, exc: OmegaConfBaseException, source: str) -> ConfigError:
    name = type(exc).__name__
    message = str(exc).splitlines()[0]
    if "not in" in message or name in ("ConfigKeyError", "ConfigAttributeError"):
        return ConfigError(key, value, f"unknown key (from {source})")
    return ConfigError(key, value, f"wrong type (from {source}): {message}")


def config_to_dict(cfg: EasyR1Config, *, redact: bool = True) -> dict[str, Any]:
    """A plain dict of the config for trackers and checkpoints, with secret-looking values masked."""
    data = asdict(cfg)
    return _redact(data) if redact else data


def _redact_url(value: str) -> str:
    """``https://user:token@host/path?api-key=x`` → ``https://***@host/path?***``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(value)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", parts.fragment))


def _redact(node: Any, key: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _redact(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_redact(v, key) for v in node]
    lowered = key.lower()
    if isinstance(node, str) and node.startswith(("http://", "https://")):
        return _redact_url(node)
    if (
        node not in (None, "")
        and any(m in lowered for m in SECRET_MARKERS)
        and not lowered.endswith(("_env", "_file"))
    ):
        return "***"
    return node


def dump_yaml(cfg: EasyR1Config, *, redact: bool = True) -> str:
    """The resolved config as YAML (what ``validate-config --print`` and checkpoints store)."""
    return yaml.safe_dump(config_to_dict(cfg, redact=redact), sort_keys=False)


def summary_lines(cfg: EasyR1Config) -> Iterable[str]:
    """A short human summary of a resolved config."""
    w = cfg.worker
    yield f"data: {cfg.data.format} {cfg.data.train_files} (rollout batch {cfg.data.rollout_batch_size} prompts)"
    yield (
        f"policy: {w.actor.model.model_path} on {w.actor.num_workers} actor worker(s); "
        f"rollout {w.rollout.name} n={w.rollout.n} × {w.rollout.num_engines} engine(s)"
    )
    yield f"editor: {w.image_edit.backend} × {w.image_edit.num_replicas} replica(s), {w.image_edit.num_inference_steps} steps, true CFG {w.image_edit.true_cfg_scale}"
    yield f"judge: {cfg.judge.backend} {cfg.judge.model if cfg.judge.backend == 'openai' else ''} mode={cfg.judge.mode}".rstrip()
    yield f"reward: strategy={w.reward.strategy} format={w.reward.format_mode} missing_re_edit={w.reward.missing_re_edit}"
    yield (
        f"algorithm: {cfg.algorithm.adv_estimator}, loss {w.actor.loss_type}/{w.actor.loss_agg_mode}, "
        f"kl {'off' if cfg.algorithm.disable_kl else cfg.algorithm.kl_penalty + ' ' + str(cfg.algorithm.kl_coef)}"
    )
    yield f"trainer: epochs={cfg.trainer.total_epochs} max_steps={cfg.trainer.max_steps} output={cfg.trainer.output_dir}"
