"""The project's own modules import each other without cycles (module- and function-level
imports both count: an import moved into a function to dodge a cycle is still a cycle), and no
file needs ``noqa: E402`` (an import after code)."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    text = (ROOT / "pyproject.toml").read_text()
    table = re.search(r"package-dir\s*=\s*\{([^}]*)\}", text)
    assert table, "pyproject.toml maps the winnow packages with package-dir"
    mods = {}
    for pkg, d in re.findall(r'"([\w.]+)"\s*=\s*"([\w./]*)"', table.group(1)):
        base = ROOT / d
        for f in base.rglob("*.py"):
            if ".venv" in f.parts or (pkg == "winnow" and f.parent != base):
                continue  # "winnow" = "winnow" maps that folder only; sub-packages have their own entry
            parts = [p for p in f.relative_to(base).with_suffix("").parts if p != "__init__"]
            mods[".".join([pkg, *parts])] = f
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        deps.update(t for t in targets if t in mods and t != name)
    return deps


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        state[v] = 2
        stack.pop()
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def test_the_project_has_no_import_cycle():
    mods = _modules()
    assert "winnow.pipeline.stages.registry" in mods and "winnow.cache" in mods
    graph = {name: _imports(name, path, mods) for name, path in mods.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_a_cycle_is_found_when_there_is_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_file_needs_noqa_e402():
    marked = [str(f.relative_to(ROOT)) for f in ROOT.rglob("*.py")
              if not any(p.startswith(".") for p in f.relative_to(ROOT).parts)  # .venv, scratch trees
              and "noqa: E402" in f.read_text(errors="replace") and f != Path(__file__)]
    assert marked == []
