"""Field documentation read from the config source: the string literal that follows each dataclass field."""

from __future__ import annotations

import ast
import inspect
import typing
from dataclasses import fields, is_dataclass
from functools import cache

from .root import EasyR1Config


@cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field name: docstring}`` for one config dataclass."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in zip(body, [*body[1:], None], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            )
        ):
            docs[node.target.id] = inspect.cleandoc(following.value.value)
    return docs


def iter_sections(cls: type = EasyR1Config, prefix: str = ""):
    """Yield ``(dotted path, dataclass type)`` for every section of the tree."""
    yield prefix, cls
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        hint = hints[f.name]
        if is_dataclass(hint):
            yield from iter_sections(hint, f"{prefix}.{f.name}" if prefix else f.name)


def explain(key: str) -> str | None:
    """Documentation, type and default of a dotted key (for a reference key: what it became), or ``None`` when
    there is no such key."""
    from .aliases import ALIASES, SECRET_ALIASES

    if key in SECRET_ALIASES:
        return f"{key}: reference key; a value is moved to the judge's API-key environment variable, never kept"
    alias = ALIASES.get(key)
    if alias is not None:
        if alias.target is None:
            return f"{key}: reference key, not applicable: {alias.note}"
        note = f" ({alias.note})" if alias.note else ""
        return f"{key}: reference key, an alias of {alias.target}{note}\n\n{explain(alias.target)}"
    section_path, _, name = key.rpartition(".")
    for path, cls in iter_sections():
        if path != section_path:
            continue
        for f in fields(cls):
            if f.name == name:
                hint = typing.get_type_hints(cls)[name]
                default = f.default_factory() if callable(f.default_factory) else f.default
                type_name = getattr(hint, "__name__", str(hint))
                return f"{key} ({type_name}, default {default!r})\n{field_docs(cls).get(name, '(undocumented)')}"
    return None
