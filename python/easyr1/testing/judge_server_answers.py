"""Answer building of the judge test server (:mod:`easyr1.testing.judge_server`): request texts, score
strings, token log-probabilities, ``max_tokens`` truncation and error bodies."""

from __future__ import annotations

import math
import re
from typing import Any

from aiohttp import web

_TOKEN = re.compile(r"\d|[^\d]{1,4}", re.DOTALL)
"""The server's tokeniser: every digit is a token (as in Qwen and Llama), other text goes four characters a token."""


def truncate_to_tokens(content: str, max_tokens: Any) -> tuple[str, bool, int]:
    """``(text, cut, completion_tokens)``: ``content`` cut to ``max_tokens`` tokens when it is longer."""
    tokens = _TOKEN.findall(content)
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and 0 < max_tokens < len(tokens):
        return "".join(tokens[:max_tokens]), True, max_tokens
    return content, False, max(1, len(tokens))


def texts(messages: list[dict[str, Any]]) -> tuple[str, str, int]:
    system, user, images = [], [], 0
    for message in messages:
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else (content or [])
        for part in parts:
            if part.get("type") == "text":
                (system if message.get("role") == "system" else user).append(part.get("text", ""))
            elif part.get("type") == "image_url":
                images += 1
    return "\n".join(system), "\n".join(user), images


def number_text(score: float) -> str:
    return str(int(score)) if float(score).is_integer() else f"{score:g}"


def score_logprobs(score: int, spread: float) -> dict[str, Any]:
    probs = {score: 1.0 - 2 * spread}
    for neighbour in (score - 1, score + 1):
        target = neighbour if 0 <= neighbour <= 10 else score
        probs[target] = probs.get(target, 0.0) + spread
    top = [
        {"token": str(s), "logprob": math.log(p), "bytes": list(str(s).encode())}
        for s, p in sorted(probs.items(), key=lambda kv: -kv[1])
        if p > 0
    ]
    top.append({"token": "The", "logprob": math.log(1e-4), "bytes": list(b"The")})
    token = str(score)
    return {
        "content": [
            {"token": token, "logprob": math.log(probs[score]), "bytes": list(token.encode()), "top_logprobs": top}
        ]
    }


def error_response(status: int, message: str, code: str | None, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "test_server_error", "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)
