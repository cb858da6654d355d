"""The import graph of ``python/easyr1`` from the source (``ast``; imports inside functions included, imports under
``if TYPE_CHECKING:`` left out), its package-level cycles, and the Mermaid diagram in docs/architecture.md.

    python scripts/package_graph.py            # print the package edges and any cycles
    python scripts/package_graph.py --write    # regenerate the diagram block in docs/architecture.md
    python scripts/package_graph.py --check    # exit 1 when that block is out of date

``tests/test_import_graph.py`` loads this file to check the graph (no cycles between packages beyond a named
allow-list, nothing below the driver imports ``easyr1.trainer``) and that the diagram is current.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "python" / "easyr1"
DOC = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- package-graph:begin (scripts/package_graph.py --write) -->", "<!-- package-graph:end -->"


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, skipping the bodies of ``if TYPE_CHECKING:`` (their ``else`` branches count)."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def module_imports(path: Path, modules: set[str], package_dir: Path = PACKAGE_DIR) -> set[str]:
    """The ``easyr1`` modules ``path`` imports (``from pkg import name`` counts as ``pkg.name`` when that is a
    module, else as ``pkg``)."""
    name = module_name(path, package_dir)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    targets: set[str] = set()
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            bases = [alias.name for alias in node.names]
            names: list[str] = []
        else:
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            bases, names = [base], [alias.name for alias in node.names]
        for base in bases:
            if base != "easyr1" and not base.startswith("easyr1."):
                continue
            subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
            targets.update(subs)
            if len(subs) < len(names) or not names:
                while base not in modules and "." in base:
                    base = base.rsplit(".", 1)[0]
                targets.add(base)
    targets.discard(name)
    return targets


_TARGET = re.compile(r"^(easyr1(?:\.\w+)+):[\w.]+$")


def named_targets(package_dir: Path = PACKAGE_DIR) -> dict[tuple[str, str], list[str]]:
    """Package pairs linked by an import string (``"easyr1.pkg.module:attr"``: registry entries, CLI commands) —
    loaded on use, so not import edges; the diagram shows them apart."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts):
        src = package_of(module_name(path, package_dir))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = _TARGET.match(node.value)
                if match and package_of(match.group(1)) != src:
                    found[(src, package_of(match.group(1)))].append(node.value)
    return {k: sorted(v) for k, v in sorted(found.items())}


def module_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    files = sorted(p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts)
    modules = {module_name(p, package_dir) for p in files}
    return {module_name(p, package_dir): module_imports(p, modules, package_dir) for p in files}


def package_of(module: str) -> str:
    """``easyr1.rollout.pool`` → ``rollout``; top-level modules (``easyr1.cli``) are units of their own."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_edges(graph: dict[str, set[str]], skip: set[tuple[str, str]] = frozenset()) -> dict[tuple[str, str], list]:
    """(importer package, imported package) → the module edges behind it, leaving out ``skip`` module edges."""
    edges: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for src, targets in graph.items():
        for dst in targets:
            a, b = package_of(src), package_of(dst)
            if a != b and a != "easyr1" and b != "easyr1" and (src, dst) not in skip:
                edges[(a, b)].append((src, dst))
    return {k: sorted(v) for k, v in sorted(edges.items())}


def cycles(edges: dict[tuple[str, str], list]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan), each sorted."""
    succ: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        succ[a].append(b)
    nodes = sorted({n for e in edges for n in e})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in nodes:
        if node not in index:
            visit(node)
    return sorted(found)


def mermaid(
    edges: dict[tuple[str, str], list],
    marked: set[tuple[str, str]] = frozenset(),
    named: dict[tuple[str, str], list] | None = None,
) -> str:
    """A Mermaid flowchart of the package edges; ``marked`` edges (the allow-listed cycle edges) are dashed, and
    links by import string (``named``) are dotted and labelled ``by name``."""
    lines = ["```mermaid", "flowchart BT"]
    for a, b in edges:
        arrow = "-.->" if (a, b) in marked else "-->"
        lines.append(f"    {a.strip('_')} {arrow} {b.strip('_')}")
    for a, b in named or {}:
        lines.append(f"    {a.strip('_')} -. by name .-> {b.strip('_')}")
    lines.append("```")
    return "\n".join(lines)


def diagram_block(graph: dict[str, set[str]], allowed: set[tuple[str, str]]) -> str:
    edges = package_edges(graph)
    marked = {pair for pair, mods in edges.items() if all(m in allowed for m in mods)}
    note = (
        "Arrows point from the importing package to the imported one (imports inside functions included, "
        "`TYPE_CHECKING` imports left out). Dashed: edges that exist only through the allow-listed imports of "
        "`tests/test_import_graph.py` (cycles that phase B of issue 17 removes). Labelled *by name*: links by "
        "import string (registry entries in `core/registries.py`, CLI commands), loaded on use — not imports."
    )
    return f"{BEGIN}\n{note}\n\n{mermaid(edges, marked, named_targets())}\n{END}"


def replace_block(text: str, block: str) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f"{DOC} has no {BEGIN} … {END} block")
    head, rest = text.split(BEGIN, 1)
    return head + block + rest.split(END, 1)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="regenerate the diagram in docs/architecture.md")
    parser.add_argument("--check", action="store_true", help="exit 1 when the diagram is out of date")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    from test_import_graph import allowed_edges  # the named allow-list lives with its test

    graph = module_graph()
    block = diagram_block(graph, allowed_edges())
    text = DOC.read_text(encoding="utf-8")
    if args.write:
        DOC.write_text(replace_block(text, block), encoding="utf-8")
        return 0
    if args.check:
        current = replace_block(text, block) == text
        print("diagram up to date" if current else "diagram out of date: python scripts/package_graph.py --write")
        return 0 if current else 1
    for (a, b), mods in package_edges(graph).items():
        print(f"{a} -> {b}: {', '.join(f'{s}->{d}' for s, d in mods)}")
    print("cycles:", cycles(package_edges(graph)) or "none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
