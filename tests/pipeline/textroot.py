"""A man-page tree unlike this machine's, for tests that must pass on any machine's text.

:func:`other_text_root` keeps a sample of this machine's pages (when it has any) and adds pages
generated at run time from standard-library docstrings the demo does not otherwise use: extra
English pages (which shift the evenly spaced sample the demo takes), a language this machine
has no pages for, and pages whose text differs from another page's only by a control
character or by whitespace (duplicates the normalize stage makes, which the demo's own
collector cannot see). Nothing here is committed text.
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import shutil
from pathlib import Path

#: Modules whose docstrings become the extra pages (none of them is in the demo's own lists).
EXTRA_MODULES = ("calendar", "configparser", "difflib", "fractions", "shlex", "statistics", "textwrap", "zipfile")
NEW_LANGUAGE = "eo"


def _roff(page: str, section: int, paragraphs: list[str]) -> bytes:
    out = [f".TH {page.upper()} {section}", ".SH NAME", f"{page} \\- generated page", ".SH DESCRIPTION"]
    for para in paragraphs:
        for line in para.splitlines():
            line = line.replace("\\", "\\e")
            out.append("\\&" + line if line.startswith((".", "'")) else line)
        out.append(".PP")
    return gzip.compress(("\n".join(out) + "\n").encode("utf-8"), mtime=0)


def _docs() -> list[tuple[str, str]]:
    found = []
    for modname in EXTRA_MODULES:
        mod = importlib.import_module(modname)
        for name, obj in sorted(vars(mod).items()):
            doc = inspect.getdoc(obj) if (inspect.isfunction(obj) or inspect.isclass(obj)) else None
            if doc and len(doc.split()) >= 40 and getattr(obj, "__module__", None) == modname:
                found.append((f"{modname}-{name}".lower().replace("_", "-"), doc))
    return found


def _sample(src: Path, dest: Path, every: int) -> int:
    files = sorted(p for p in src.glob("*.gz") if p.is_file() and not p.is_symlink())[::every]
    dest.mkdir(parents=True, exist_ok=True)
    for p in files:
        shutil.copyfile(p, dest / p.name)
    return len(files)


def other_text_root(dest: Path, machine_root: str = "/usr/share/man") -> str:
    """Build the tree under ``dest`` and return its path (for ``man_root=``)."""
    machine = Path(machine_root)
    for sec in ("man1", "man8"):
        if (machine / sec).is_dir():
            _sample(machine / sec, dest / sec, every=2)
    if (machine / "de" / "man1").is_dir():
        _sample(machine / "de" / "man1", dest / "de" / "man1", every=3)
    docs = _docs()
    assert len(docs) >= 20, "too few docstrings for the extra pages"
    man3 = dest / "man3"
    man3.mkdir(parents=True, exist_ok=True)
    for name, doc in docs:
        (man3 / f"{name}.3.gz").write_bytes(_roff(name, 3, doc.split("\n\n")))
    lang = dest / NEW_LANGUAGE / "man1"
    lang.mkdir(parents=True, exist_ok=True)
    for name, doc in docs[::3]:
        (lang / f"{name}.1.gz").write_bytes(_roff(name, 1, [" ".join(doc.split())]))
    # Texts equal only after normalization: a control character, and a non-breaking space.
    man7 = dest / "man7"
    man7.mkdir(parents=True, exist_ok=True)
    for k, (name, doc) in enumerate(docs[1:7:2]):
        words = doc.split()
        twin = " ".join(words[:10]) + ("\x07" if k % 2 == 0 else "\u00a0") + " " + " ".join(words[10:])
        (man7 / f"{name}-a.7.gz").write_bytes(_roff(f"{name}-a", 7, [" ".join(words)]))
        (man7 / f"{name}-b.7.gz").write_bytes(_roff(f"{name}-b", 7, [twin]))
    return str(dest)
