"""Structural conformance: does a class provide every member of a ``typing.Protocol``, with compatible parameters?

``isinstance(obj, SomeRuntimeCheckableProtocol)`` only checks that the names exist. :func:`conformance_problems`
also compares each method's parameters (names, kinds, required-ness), so a test can say "every registered engine
class satisfies ``RolloutEngine``" without building one (engines load models; pools start Ray).
"""

from __future__ import annotations

import inspect
from typing import Any

_PROTOCOL_INTERNALS = {"__init__", "__subclasshook__", "__class_getitem__", "__init_subclass__"}


def protocol_members(protocol: type) -> list[str]:
    """Names the protocol declares (methods and properties, inherited protocol members included)."""
    names: set[str] = set()
    for base in protocol.__mro__:
        if base is object or not getattr(base, "_is_protocol", False):
            continue
        for name, value in vars(base).items():
            if name in _PROTOCOL_INTERNALS or (name.startswith("_") and not name.startswith("__")):
                continue
            if name.startswith("__") and name.endswith("__"):
                continue
            if callable(value) or isinstance(value, (property, staticmethod, classmethod)):
                names.add(name)
        names.update(n for n in getattr(base, "__annotations__", {}) if not n.startswith("_"))
    return sorted(names)


def _parameters(fn: Any) -> list[inspect.Parameter] | None:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    return [p for p in params if p.name not in ("self", "cls")]


def _compatible(declared: list[inspect.Parameter], actual: list[inspect.Parameter]) -> str | None:
    """Why ``actual`` cannot be called the way ``declared`` is, or ``None``."""
    by_name = {p.name: p for p in actual}
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in actual)
    positional = [p for p in actual if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for i, want in enumerate(declared):
        if want.kind in (want.VAR_POSITIONAL, want.VAR_KEYWORD):
            continue
        have = by_name.get(want.name)
        if want.kind in (want.POSITIONAL_ONLY, want.POSITIONAL_OR_KEYWORD):
            if i >= len(positional) or positional[i].name != want.name:
                return f"parameter {i} must be {want.name!r}"
        elif have is None and not has_var_kw:
            return f"missing keyword parameter {want.name!r}"
        if have is not None and want.default is not inspect.Parameter.empty and have.default is inspect.Parameter.empty:
            return f"parameter {want.name!r} is optional in the protocol but required here"
    declared_names = {p.name for p in declared}
    for have in actual:
        required = have.default is inspect.Parameter.empty and have.kind not in (have.VAR_POSITIONAL, have.VAR_KEYWORD)
        if required and have.name not in declared_names:
            return f"extra required parameter {have.name!r}"
    return None


def conformance_problems(impl: Any, protocol: type) -> list[str]:
    """What ``impl`` (a class or an instance) lacks to satisfy ``protocol``; empty when it conforms."""
    problems: list[str] = []
    for name in protocol_members(protocol):
        if not hasattr(impl, name):
            problems.append(f"{name}: missing")
            continue
        declared = inspect.getattr_static(protocol, name, None)
        if declared is None or not callable(getattr(protocol, name, None)):
            continue  # an attribute or property: presence is the contract
        want, have = _parameters(getattr(protocol, name)), _parameters(getattr(impl, name))
        if want is None or have is None:
            continue
        reason = _compatible(want, have)
        if reason:
            problems.append(f"{name}: {reason}")
    return problems
