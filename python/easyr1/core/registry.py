"""A name → implementation registry whose entries carry plain facts and load their implementation lazily.

The config tree validates names against these registries and reads their facts (does an estimator need groups,
does an engine run in an interpreter of its own …) without importing torch, Ray or the implementation: an entry
names its target as ``"package.module:attribute"`` and :meth:`Registry.load` imports it on first use. Code that
already holds the object (a plugin, a test) registers the object itself.

Nothing here imports another ``easyr1`` package, so every layer may use it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

F = TypeVar("F")


@dataclass(frozen=True)
class Entry(Generic[F]):
    """One registered implementation."""

    name: str
    """The value users write in the config."""
    facts: F
    """What callers may know about it without loading it (a frozen dataclass of the registry's kind)."""
    target: Any
    """``"module:attribute"`` (imported by :meth:`Registry.load`) or the object itself."""


def resolve_target(target: Any) -> Any:
    """The object named by ``"module:attribute"`` (dotted attributes allowed), or ``target`` when not a string."""
    if not isinstance(target, str):
        return target
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"registry target {target!r} must look like 'package.module:attribute'")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[F]):
    """Ordered name → :class:`Entry` table.

    Args:
        kind: what the entries are, for messages (``"rollout engine"``).
        config_key: the config key whose values are the names (``"worker.rollout.name"``).
    """

    def __init__(self, kind: str, config_key: str):
        self.kind = kind
        self.config_key = config_key
        self._entries: dict[str, Entry[F]] = {}
        self._loaded: dict[str, Any] = {}

    def register(self, name: str, facts: F, target: Any, *, replace: bool = False) -> Entry[F]:
        """Add ``name``; a second registration of the same name is refused unless ``replace``."""
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        entry = Entry(name, facts, target)
        self._entries[name] = entry
        self._loaded.pop(name, None)
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a temporary entry)."""
        self._entries.pop(name, None)
        self._loaded.pop(name, None)

    def names(self) -> list[str]:
        """Registered names, in registration order (what ``check_choice`` offers)."""
        return list(self._entries)

    def entry(self, name: str) -> Entry[F]:
        """The entry of ``name``; an unknown name raises ``ValueError`` naming the config key and the known ones."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(repr(n) for n in self._entries)
            raise ValueError(f"{self.config_key}={name!r}: unknown {self.kind}; known: {known}") from None

    def facts(self, name: str) -> F:
        """The facts of ``name`` (no import)."""
        return self.entry(name).facts

    def load(self, name: str) -> Any:
        """The implementation of ``name``, imported on first use and cached."""
        if name not in self._loaded:
            self._loaded[name] = resolve_target(self.entry(name).target)
        return self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
