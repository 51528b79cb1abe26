"""Reference domains and a domain dictionary for the demo, built at run time from machine text.

The demo curates for two target domains:

* ``python``: docstrings of standard-library modules that are *not* in the demo corpus
  (:data:`REFERENCE_MODULES`, disjoint from :data:`~winnow.demo.text.STDLIB_MODULES`),
  collected in a fresh interpreter like the corpus's own docstrings;
* ``manpages``: English man pages (section text, roff stripped), sampled with an offset from
  the corpus's own even sampling, so most pages differ from the corpus's.

Nothing is shipped: everything is written under ``dest/reference/`` when the demo runs.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from winnow.filters.domain import DomainReference
from winnow.demo.text import STDLIB_MODULES, _module_docs, fresh_interpreter_json, read_man_page

__all__ = ["REFERENCE_MODULES", "DICTIONARY_TERMS", "write_demo_references", "demo_domain_overrides", "demo_stages"]

#: Standard-library modules whose docstrings define the ``python`` reference domain.
REFERENCE_MODULES: tuple[str, ...] = tuple(m for m in sorted("""
    collections.abc concurrent.futures configparser contextvars doctest email.message fnmatch
    ftplib getopt glob imaplib ipaddress mailbox mimetypes optparse pdb pkgutil plistlib poplib
    pydoc runpy shlex smtplib stat timeit trace traceback types unittest.mock uuid warnings wave
    weakref xml.dom.minidom http.server http.cookies urllib.request logging.handlers
""".split()) if m not in STDLIB_MODULES)

#: The demo's domain dictionary: terms the tokenizer must keep as single pieces.
DICTIONARY_TERMS: tuple[str, ...] = (
    "asyncio", "__init__", "__name__", "PYTHONPATH", "dataclass", "kwargs", "isinstance", "TypeError",
    "ValueError", "KeyError", "coroutine", "iterable", "subprocess", "stdout", "stderr", "stdin",
    "sys.argv", "os.path", "self", "None", "--help", "--version", "/etc", "/usr/share", "systemd",
    "sudo", "chmod", "grep", "UTF-8", "sentencepiece",
)


def _reference_docs_here() -> list[dict]:
    """Docstrings of :data:`REFERENCE_MODULES` in this interpreter (run in a fresh one)."""
    import inspect
    import warnings

    out: list[dict] = []

    def add(title: str, obj: object) -> None:
        doc = getattr(obj, "__doc__", None)
        if isinstance(doc, str) and doc.strip():
            out.append({"title": title, "text": inspect.cleandoc(doc)})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in REFERENCE_MODULES:
            _module_docs(m, add)
    return out


def _python_reference() -> list[dict]:
    return fresh_interpreter_json("winnow.demo.domain", "_reference_docs_here", "reference docstrings")


def _man_reference(root: Path, pages: int = 150) -> list[dict]:
    base = root / "man1"
    files = sorted(p for p in base.glob("*.gz") if p.is_file() and not p.is_symlink()) if base.is_dir() else []
    if len(files) > pages:
        step = len(files) / pages
        files = [files[min(len(files) - 1, int(i * step + step / 2))] for i in range(pages)]
    out = []
    for path in files:
        parsed = read_man_page(path)
        if parsed is None:
            continue
        page, sections = parsed
        out += [{"title": f"{page} {h}", "text": t} for h, t in sections]
    return out


def write_demo_references(dest: str, man_root: str = "/usr/share/man") -> tuple[tuple[DomainReference, ...], str]:
    """Write the reference domains and the dictionary under ``dest/reference/``.

    Returns:
        (the reference domains, the dictionary file path). The ``manpages`` domain is left out
        when the machine has no English man pages.
    """
    root = Path(dest) / "reference"
    root.mkdir(parents=True, exist_ok=True)
    refs = []
    for name, docs in (("python", _python_reference()), ("manpages", _man_reference(Path(man_root)))):
        if not docs:
            continue
        path = root / f"{name}.jsonl.gz"
        data = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")
        path.write_bytes(gzip.compress(data, compresslevel=6, mtime=0))
        refs.append(DomainReference(name=name, paths=(str(path),)))
    dictionary = root / "dictionary.txt"
    dictionary.write_text("# demo domain dictionary: one term per line\n" + "\n".join(DICTIONARY_TERMS) + "\n")
    return tuple(refs), str(dictionary)


def demo_domain_overrides(dest: str, man_root: str = "/usr/share/man") -> list[str]:
    """``--set`` overrides that configure the demo's domain stage and dictionary."""
    refs, dictionary = write_demo_references(dest, man_root)
    spec = [{"name": r.name, "paths": list(r.paths)} for r in refs]
    return [f"domain.references={json.dumps(spec)}", f"tokenizer.dictionary={dictionary}"]


def demo_stages() -> list[str]:
    """The default stages with ``domain`` in its place (before toxicity, PII and the tokenizer)
    and ``image_quality`` before ``image_dedup``."""
    from winnow.pipeline.config import DEFAULT_STAGES

    stages = [s for s in DEFAULT_STAGES if s != "domain"]
    if "image_quality" not in stages and "image_dedup" in stages:  # the demo's planted image defects
        stages.insert(stages.index("image_dedup"), "image_quality")
    later = ("toxicity", "pii", "tokenizer", "augment", "encode")
    i = next((k for k, s in enumerate(stages) if s in later), len(stages))
    return stages[:i] + ["domain"] + stages[i:]
