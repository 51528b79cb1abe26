"""Dependency direction and packaging, as DESIGN.md states them."""

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
#: folder -> package name, as pyproject's package-dir maps them
FOLDERS = {folder: pkg for pkg, folder in SETUPTOOLS["package-dir"].items()}
PRODUCT = ("winnow", "pipeline", "filters", "tokenizer", "cache")

BEAM_FREE = [
    "winnow", "winnow.format", "winnow.shardio", "winnow.errors", "winnow.units", "winnow.cache",
    "winnow.filters.normalize", "winnow.filters.exact", "winnow.filters.base", "winnow.tokenizer",
    "winnow.pipeline.console",
]


@pytest.mark.parametrize("module", BEAM_FREE)
def test_pure_packages_import_without_beam(module):
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'apache_beam' or name.startswith('apache_beam.'):\n"
        "            raise ImportError('apache_beam is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"import {module}\n"
        "assert not any(m.startswith('apache_beam') for m in sys.modules), 'apache_beam got imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_cache_never_imports_the_pipeline():
    code = (
        "import sys\n"
        "import winnow.cache\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('winnow.pipeline', 'winnow.demo')))\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(SETUPTOOLS["packages"])
    found = set()
    for pkg, folder in SETUPTOOLS["package-dir"].items():
        for dirpath, dirnames, filenames in os.walk(ROOT / folder):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            if "__init__.py" in filenames:
                rel = Path(dirpath).relative_to(ROOT / folder)
                found.add(".".join([pkg, *rel.parts]) if rel.parts else pkg)
    assert found <= listed, f"add to pyproject [tool.setuptools] packages: {sorted(found - listed)}"


def _product_files():
    for folder in PRODUCT:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_demo_material_lives_in_its_own_package():
    assert FOLDERS["demo"] == "winnow.demo"
    misplaced = [rel for rel, path in _product_files()
                 if path.stem.startswith("demo") or "evalset" in path.stem]
    assert not misplaced, f"demo corpora and labelled evaluation sets belong in demo/: {misplaced}"
    for stem in ("corpus", "text", "images", "domain", "pii_evalset", "dedup_evalset", "langid_evalset", "grammar_evalset"):
        assert (ROOT / "demo" / f"{stem}.py").is_file(), stem


def test_product_code_never_imports_the_demo_package():
    # The CLI's `winnow demo` command is the one door from the product into the demo.
    allowed = {"pipeline/cli.py"}
    bad = {rel: sorted(n for n in _imports(path) if n == "winnow.demo" or n.startswith("winnow.demo."))
           for rel, path in _product_files() if rel not in allowed}
    bad = {rel: names for rel, names in bad.items() if names}
    assert not bad, bad
