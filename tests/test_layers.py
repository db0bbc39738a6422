"""The import graph reads in the order an approval travels: inbound edges, the core, then the
outbound clients and storage. No module imports one above it (a type-only import may, once) and
no import circle exists, lazy imports included."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"

# Top to bottom; a module may import its own layer and the ones below.
LAYERS = [
    ("edges", ["app.__main__", "app.cli", "app.main", "app.sandbox", "app.schema"]),
    ("inbound", ["app.asgi", "app.serving", "app.webhooks", "app.interactions"]),
    ("workers", ["app.workers"]),
    ("core", ["app.decisions", "app.intake", "app.edits"]),
    ("outbound", ["app.slack", "app.rotor", "app.audit", "app.manifest"]),
    ("storage", ["app.db"]),
    (
        "foundation",
        [
            "app.config",
            "app.templates",
            "app.rules",
            "app.storable",
            "app.signing",
            "app.errors",
            "app.metrics",
            "app.payload",
            "app.retry",
            "app.clock",
            "app.logs",
        ],
    ),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    module_name(p): p for p in APP.rglob("*.py") if "migrations" not in p.relative_to(APP).parts
}


def layer_of(module: str) -> int:
    best = max(
        (
            (i, prefix)
            for i, (_, prefixes) in enumerate(LAYERS)
            for prefix in prefixes
            if module == prefix or module.startswith(prefix + ".")
        ),
        key=lambda found: len(found[1]),
        default=None,
    )
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def _type_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports under `if TYPE_CHECKING:`."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def imports(module: str) -> list[tuple[str, bool]]:
    """(imported app module, type-only) for every import in `module`, lazy ones too."""
    tree = ast.parse(MODULES[module].read_text())
    type_only = _type_only(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                target = full if full in MODULES else node.module
                found.append((target, node.lineno in type_only))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("app."):
                    found.append((alias.name, node.lineno in type_only))
    return [(target, typed) for target, typed in found if target in MODULES]


def test_every_import_runs_down_the_layers_but_one_type_only():
    upward = [
        (module, target, typed)
        for module in MODULES
        for target, typed in imports(module)
        if layer_of(target) < layer_of(module)
    ]
    assert [u for u in upward if not u[2]] == [], "runtime imports running up the layers"
    assert len(upward) <= 1, upward


def test_no_import_circle():
    graph = {m: {t for t, _ in imports(m) if t != m} for m in MODULES}  # type-only ones too
    # A package's __init__ importing its own modules is not a circle through them.
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            circle = path[path.index(module) :] + [module]
            raise AssertionError("import circle: " + " -> ".join(circle))
        if module in done:
            return
        for target in graph[module]:
            if not target.startswith(module + "."):
                visit(target, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
