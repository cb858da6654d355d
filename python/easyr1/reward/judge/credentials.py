"""Where the judge's API key comes from: a mounted secret file or an environment variable, never the config."""

from __future__ import annotations

import os
from pathlib import Path

from easyr1.config import JudgeConfig


class JudgeCredentialError(RuntimeError):
    """No usable API key; the message names where it was looked for, never a value."""


def resolve_api_key(cfg: JudgeConfig) -> str:
    """``cfg.api_key_file`` when set (takes precedence), else the variable named by ``cfg.api_key_env``.

    A self-hosted server without authentication still needs a non-empty value (vLLM's convention is ``EMPTY``).
    """
    if cfg.api_key_file:
        path = Path(cfg.api_key_file).expanduser()
        try:
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise JudgeCredentialError(
                f"judge.api_key_file={cfg.api_key_file!r} cannot be read ({type(exc).__name__})"
            ) from None
        if not key:
            raise JudgeCredentialError(f"judge.api_key_file={cfg.api_key_file!r} is empty")
        return key
    key = os.environ.get(cfg.api_key_env, "").strip()
    if not key:
        raise JudgeCredentialError(
            f"no judge API key: set the environment variable {cfg.api_key_env} (judge.api_key_env) or "
            "judge.api_key_file; for an unauthenticated self-hosted server set it to EMPTY"
        )
    return key
