"""Load a config: dataclass defaults ← YAML file ← ``key=value`` overrides (OmegaConf), then validate."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, fields
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import compat
from .aliases import ALIASES, SECRET_ALIASES, translate
from .base import ConfigError, ConfigValidationError, join
from .docs import iter_sections
from .root import EasyR1Config, config_warnings, resolve_reference_values

logger = logging.getLogger(__name__)

SECRET_WORDS = ("password", "passwd", "secret", "credential", "credentials")
"""A key holding any of these words (``_``-separated) is a secret."""
SECRET_SUFFIXES = ("api_key", "apikey", "access_key", "private_key")
"""... and so is one ending in these, or whose last word is ``token`` (``hf_token``, not ``max_tokens``)."""


def is_secret_key(key: str) -> bool:
    """True for keys that hold a credential (``api_key``, ``hf_token``, ``password``), false for ``max_tokens``,
    ``max_token_len_per_device`` and for ``*_env``/``*_file``/``*_path`` keys that only name where a secret lives."""
    lowered = key.lower().replace("-", "_")
    if lowered.endswith(("_env", "_file", "_path")):
        return False
    words = lowered.split("_")
    return any(w in SECRET_WORDS for w in words) or words[-1] == "token" or lowered.endswith(SECRET_SUFFIXES)


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> EasyR1Config:
    """Build an :class:`EasyR1Config` from defaults, an optional YAML file and dotted ``key=value`` overrides.

    ``config=FILE`` (EasyR1's spelling) names the YAML file, as an override or in the file position. With
    ``compat: reference`` the reference implementation's behaviour is the base layer (see :mod:`.compat`).
    Every problem of the file and the overrides is collected (unknown keys with a did-you-mean, wrong types, old
    and new spellings of one setting, section and cross-section rules) and raised together as one
    :class:`ConfigValidationError`; warnings (e.g. a judge token budget too small for its mode) are logged.
    """
    if isinstance(path, str) and path.startswith("config="):
        path = path.split("=", 1)[1]
    rest = []
    for item in overrides:
        if item.startswith("config="):
            path = item.split("=", 1)[1]
        else:
            rest.append(item)
    errors: list[ConfigError] = []
    layers: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        layers.append((str(path), _flatten(_read_yaml(Path(path)))))
    cli_flat: dict[str, Any] = {}
    for item in rest:
        if "=" not in item:
            errors.append(ConfigError(item, None, "overrides must look like key=value"))
            continue
        key, raw = item.split("=", 1)
        cli_flat[key.strip().lstrip("+")] = _parse_value(raw)
    if cli_flat:
        layers.append(("command line", cli_flat))

    translated: list[tuple[str, dict[str, Any]]] = []
    for source, flat in layers:
        result = translate(flat, source=source)
        errors.extend(result.errors)
        translated.append((source, result.flat))
    profile = compat.selected_profile(translated)
    merged = OmegaConf.structured(EasyR1Config)
    if profile:
        merged = _merge(merged, compat.PROFILES[profile], source=f"compat: {profile}", errors=errors)
    for source, flat in translated:
        merged = _merge(merged, flat, source=source, errors=errors)
    try:
        cfg: EasyR1Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:  # pragma: no cover - interpolation errors surface here
        errors.append(ConfigError(getattr(exc, "full_key", "?") or "?", None, str(exc)))
        raise ConfigValidationError(errors) from None
    resolve_reference_values(cfg)
    errors.extend(cfg.validate())
    if errors:
        raise ConfigValidationError(errors)
    for line in config_warnings(cfg):
        logger.warning(line)
    compat.report_differences(cfg, [flat for source, flat in layers])
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


def _merge(base: Any, flat: Mapping[str, Any], *, source: str, errors: list[ConfigError]) -> Any:
    """Merge each key on its own; a key that does not fit is recorded in ``errors`` and skipped."""
    for key, value in flat.items():
        try:
            base = OmegaConf.merge(base, _nested(key, value))
        except OmegaConfBaseException as exc:
            errors.append(_explain(key, value, exc, source))
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
        hint = did_you_mean(key)
        return ConfigError(key, value, f"unknown key (from {source})" + (f"; did you mean {hint}?" if hint else ""))
    return ConfigError(key, value, f"wrong type (from {source}): {message}")


@cache
def known_keys() -> tuple[str, ...]:
    """Every dotted key of the tree plus every accepted reference key (the did-you-mean vocabulary)."""
    keys = [join(path, f.name) for path, cls in iter_sections() for f in fields(cls)]
    return tuple(sorted({*keys, *ALIASES, *SECRET_ALIASES}))


def did_you_mean(key: str) -> str | None:
    """The closest known key, preferring one in the same section, or ``None``."""
    keys = known_keys()
    section = key.rpartition(".")[0]
    same_section = [k for k in keys if k.rpartition(".")[0] == section]
    for pool, cutoff in ((same_section, 0.6), (keys, 0.75)):
        match = difflib.get_close_matches(key, pool, n=1, cutoff=cutoff)
        if match:
            return match[0]
    leaf = key.rpartition(".")[2]
    by_leaf = [k for k in keys if k.rpartition(".")[2] == leaf]
    return by_leaf[0] if len(by_leaf) == 1 else None


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
    if isinstance(node, str) and node.startswith(("http://", "https://")):
        return _redact_url(node)
    if node not in (None, "") and is_secret_key(key):
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
