"""The package's shape: imports point only to the same or an earlier stage, no import cycles,
no function longer than MAX_LINES (a CLI command counts its body, not its option declarations).

Imports inside functions count: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "llamadna"

# The pipeline's order: files -> SPLASH -> dataset -> model -> index -> annotation -> training
# (which calibrates through the Annotator) -> evaluation -> command line.
STAGES = ("base", "io", "splash", "data", "model", "retrieve", "annotate", "train", "evaluate", "cli")
BASE = {"llamadna", "llamadna.constants", "llamadna.errors", "llamadna.launch", "llamadna.progress"}
MAX_LINES = 60


def _modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = ["llamadna", *p.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def stage(module: str) -> int:
    if module in BASE:
        return 0
    return STAGES.index(module.split(".")[1])


def _resolve(module: str, node: ast.ImportFrom) -> str | None:
    if not node.level:
        return node.module
    package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str) -> str | None:
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in MODULES else None


def imports(module: str) -> set[str]:
    """The package's modules that `module` imports, anywhere in it."""
    out = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            if base and base.startswith("llamadna"):
                names = [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("llamadna")]
        out.update(k for k in map(_known, names) if k and k != module)
    return out


GRAPH = {m: imports(m) for m in MODULES}


def test_stages_cover_every_module():
    for m in MODULES:
        assert m in BASE or m.split(".")[1] in STAGES, f"{m}: in no stage of {STAGES}"


def test_imports_point_to_the_same_or_an_earlier_stage():
    later = sorted(f"{m} -> {t}" for m, ts in GRAPH.items() for t in ts if stage(t) > stage(m))
    assert not later, "imports pointing to a later stage:\n" + "\n".join(later)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return path[path.index(t):] + [t]
            if t not in state and (found := visit(t, path + [t])):
                return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m, [m])):
            return found
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None


def _long_functions(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        first = node.lineno
        if path.name == "cli.py" and node.decorator_list:  # a command: its body after the options
            body = node.body[1:] if ast.get_docstring(node) else node.body
            first = body[0].lineno if body else node.end_lineno
        if node.end_lineno - first + 1 > MAX_LINES:
            out.append(f"{path.relative_to(SRC.parents[1])}:{node.lineno} {node.name} "
                       f"({node.end_lineno - first + 1} lines)")
    return out


@pytest.mark.parametrize("root", ["src", "bench", "tests"])
def test_no_function_over_max_lines(root):
    base = SRC.parents[1] / root
    long = [f for p in sorted(base.rglob("*.py")) for f in _long_functions(p)]
    assert not long, f"functions over {MAX_LINES} lines:\n" + "\n".join(long)
