"""Real text for the demo corpus, collected from what every Python machine has.

Three sources, in this order: the ``pydoc`` topics, docstrings of :data:`STDLIB_MODULES` (and
of their public classes, functions and class attributes) and, where installed, man pages under
``/usr/share/man`` in several languages, with roff crudely stripped to plain text by
:func:`man_sections`. :func:`collect_real_text` deduplicates them the way the exact-dedup stage
would; :func:`clean_records` samples them (and mutated copies, past the real text available)
into distinct records of a requested volume, in a seeded order.
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import json
import os
import random
import re
import subprocess
import sys
import unicodedata
import warnings
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import xxhash

__all__ = [
    "STDLIB_MODULES",
    "collect_real_text",
    "dedup_key",
    "clean_records",
    "man_sections",
]

#: Standard-library modules whose docstrings feed the corpus (missing ones are skipped).
STDLIB_MODULES: tuple[str, ...] = tuple(sorted("""
    abc argparse array ast asyncio base64 binascii bisect calendar cmath codecs collections
    contextlib copy csv dataclasses datetime decimal difflib dis email enum fractions functools
    gettext graphlib gzip hashlib heapq hmac http.client inspect io itertools json locale
    logging math multiprocessing operator os.path pathlib pickle platform pprint queue random re
    sched secrets select selectors shutil signal socket sqlite3 ssl statistics string struct
    subprocess sysconfig tarfile tempfile textwrap threading time tokenize typing unittest
    urllib.parse xml.etree.ElementTree zipfile zoneinfo
""".split()))


class _Doc(NamedTuple):
    origin: str  # "pydoc", "docstring" or "man"
    lang: str
    title: str
    text: str


def _pydoc_docs() -> list[_Doc]:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return []
    return [_Doc("pydoc", "en", name, text.strip()) for name, text in sorted(topics.items())]


def _docstring_docs() -> list[_Doc]:
    """Standard-library docstrings, collected in a fresh interpreter.

    What a module exposes depends on what else the process imported or patched (test tools,
    HTTP mocks, ...), so collecting in-process would make the corpus depend on its caller.
    """
    return [_Doc(*d) for d in fresh_interpreter_json("winnow.demo.text", "_docstring_docs_here",
                                                     "standard-library docstrings")]


def fresh_interpreter_json(module: str, function: str, what: str) -> Any:
    """``module.function()`` run in a fresh interpreter (no PYTHON* variables, fixed hash seed),
    its result returned through JSON: what the standard library exposes must not depend on
    what the calling process imported."""
    code = (
        "import json, sys\n"
        f"from {module} import {function}\n"
        f"json.dump([list(d) if isinstance(d, tuple) else d for d in {function}()], sys.stdout)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"collecting {what} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def _docstring_docs_here() -> list[_Doc]:
    out: list[_Doc] = []

    def add(title: str, obj: Any) -> None:
        doc = getattr(obj, "__doc__", None)
        if isinstance(doc, str) and doc.strip():
            out.append(_Doc("docstring", "en", title, inspect.cleandoc(doc)))

    with warnings.catch_warnings():  # deprecated aliases (typing.io ...) warn when touched
        warnings.simplefilter("ignore")
        for modname in STDLIB_MODULES:
            _module_docs(modname, add)
    return out


def _module_docs(modname: str, add: Any) -> None:
    try:
        mod = importlib.import_module(modname)
    except Exception:  # noqa: BLE001 - a module missing on this build is simply skipped
        return
    add(modname, mod)
    members = vars(mod)
    for name in sorted(members):
        obj = members[name]
        if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
            continue
        add(f"{modname}.{name}", obj)
        if inspect.isclass(obj):
            attrs = vars(obj)
            for attr in sorted(attrs):
                if not attr.startswith("_"):
                    add(f"{modname}.{name}.{attr}", attrs[attr])


_ROFF_CHARS = {
    "em": "\u2014", "en": "\u2013", "bu": "\u2022", "aq": "'", "dq": '"', "lq": "\u201c",
    "rq": "\u201d", "oq": "\u2018", "cq": "\u2019", "co": "\u00a9", "rg": "\u00ae", "hy": "-",
    "mi": "-", "ti": "~", "ha": "^", "de": "\u00b0", ">=": "\u2265", "<=": "\u2264",
    "->": "\u2192", "<-": "\u2190", "mu": "\u00d7", "pl": "+", "eq": "=", "sl": "/",
    "rs": "\\", "ga": "`", "ul": "_", "tm": "\u2122", "R": "\u00ae", "Tm": "\u2122",
}
_ROFF_CHARS.update({"/l": "\u0142", "/L": "\u0141", "/o": "\u00f8", "/O": "\u00d8", "ss": "\u00df",
                    "Fo": "\u00ab", "Fc": "\u00bb", "Bq": "\u201e", "Aq": "'", "C`": '"', "C'": '"',
                    'L"': "\u201c", 'R"': "\u201d", "Em": "\u2014", "Gt": ">", "Lt": "<"})
_ROFF_ACCENTS = {"'": "\u0301", "`": "\u0300", ":": "\u0308", "^": "\u0302", "~": "\u0303",
                 ",": "\u0327", "o": "\u030a", "v": "\u030c"}
_ROFF_SINGLE = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "0": " ", "~": " ", "'": "'",
                "`": "`", "t": "\t", ".": "."}
_ROFF_ESC = re.compile(
    r"\\(f\[[^\]]*\]|f\(..|f.|s[-+]?\d|\*\[[^\]]*\]|\*\(..|\*.|\(..|\[[^\]]*\]"
    r"|[hvwNlLDXbozkHSx]'[^']*'|n\(..|n.|.)", re.S)
_ROFF_ARGS = re.compile(r'"((?:[^"]|"")*)"?|(\S+)')
_JOINED = {"BR", "BI", "IB", "IR", "RB", "RI"}
_BREAKS = {"PP", "LP", "P", "Pp", "sp", "br", "TP", "TQ", "HP", "RS", "RE", "Bl", "El", "Bd",
           "Ed", "Dl", "Sy"}
_MDOC_CALLS = {"Fl", "Ar", "Op", "Oo", "Oc", "Nm", "Xr", "Pa", "Ev", "Cm", "Dv", "Ic", "Li",
               "Em", "Sy", "Ql", "Dq", "Sq", "Pq", "Ns", "Va", "Fn", "Fa", "Ft", "Er", "Aq"}


def _roff_inline(s: str) -> str:
    def sub(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0] == "(" or e[0] == "[":
            name = e[1:-1] if e[0] == "[" else e[1:]
            if name.startswith("u") and len(name) in (5, 6):
                try:
                    return chr(int(name[1:], 16))
                except ValueError:
                    return ""
            if len(name) == 2 and name[0] in _ROFF_ACCENTS and name[1].isalpha():
                return unicodedata.normalize("NFC", name[1] + _ROFF_ACCENTS[name[0]])
            return _ROFF_CHARS.get(name, "")
        if e[0] == "*" and len(e) > 1:
            name = e[2:].strip("[]()") if e[1] in "[(" else e[1:]
            return _ROFF_CHARS.get(name, "")
        if len(e) > 1 or e in "fsn":
            return ""
        return _ROFF_SINGLE.get(e, "" if e in "&|^%:c),/!{}" else e)

    return _ROFF_ESC.sub(sub, s)


def read_man_page(path: Path) -> tuple[str, list[tuple[str, str]]] | None:
    """``man_sections`` of a gzipped man page, or None when it cannot be read or decoded."""
    try:
        raw = gzip.decompress(path.read_bytes()).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError, zlib.error):
        return None
    return man_sections(raw)


def man_sections(raw: str) -> tuple[str, list[tuple[str, str]]]:
    """Crudely turn one roff page into (page name, [(section heading, plain text)])."""
    page, heading = "", ""
    sections: list[tuple[str, str]] = []
    paras: list[str] = []
    cur: list[str] = []
    nofill = skip_def = tag_next = False

    def brk() -> None:
        if cur:
            paras.append(("\n" if nofill else " ").join(cur).strip())
            cur.clear()

    def end_section() -> None:
        brk()
        text = "\n\n".join(p for p in paras if p)
        if heading and text:
            sections.append((heading, text))
        paras.clear()

    def text(s: str) -> None:
        nonlocal tag_next
        s = _roff_inline(s)
        if s.strip() or nofill:
            cur.append(s.rstrip() if nofill else s.strip())
            if tag_next:  # the line after .TP is the tag: a paragraph of its own
                brk()
                tag_next = False

    for line in raw.splitlines():
        if skip_def:
            skip_def = not line.startswith("..")
            continue
        line = re.sub(r'(?<!\\)\\".*$', "", line)
        if line.startswith("\\#") or line.startswith('.\\"'):
            continue
        while line[:1] in (".", "'") and re.match(r"^[.'](ie|if|el)\b", line):
            m = re.match(r"^[.'](?:i[ef]\s+\S+|el)\s*(.*)$", line)
            line = m.group(1).lstrip("\\{") if m else ""
        if line[:1] not in (".", "'"):
            if not line.strip() and not nofill:
                brk()
            else:
                text(line)
            continue
        parts = line[1:].strip().split(None, 1)
        if not parts:
            continue
        macro, rest = parts[0], parts[1] if len(parts) > 1 else ""
        args = [m.group(2) if m.group(1) is None else m.group(1).replace('""', '"')
                for m in _ROFF_ARGS.finditer(rest)]
        if macro == "so":
            return page, []
        if macro in ("TH", "Dt") and args:
            name = _roff_inline(args[0]).lower()
            page = f"{name}({_roff_inline(args[1])})" if len(args) > 1 else name
        elif macro in ("SH", "Sh"):
            end_section()
            heading = _roff_inline(" ".join(args)).strip()
        elif macro in ("SS", "Ss"):
            brk()
            text(" ".join(args))
            brk()
        elif macro in ("nf", "EX"):
            brk()
            nofill = True
        elif macro in ("fi", "EE"):
            brk()
            nofill = False
        elif macro in ("de", "am", "ig"):
            skip_def = True
        elif macro == "IP":  # .IP tag indent
            brk()
            text(args[0] if args else "")
            brk()
        elif macro == "TP":
            brk()
            tag_next = True
        elif macro == "It":
            brk()
            text(" ".join(a for a in args if a not in _MDOC_CALLS))
        elif macro in _BREAKS:
            brk()
        elif macro in ("B", "I", "SM", "SB"):
            text(" ".join(args))
        elif macro in _JOINED:
            text("".join(args))
        elif macro[:1].isupper() and macro in _MDOC_CALLS | {"Nd"}:
            words = ["-" + a if p == "Fl" else a for p, a in zip([macro] + args, args)]
            text(" ".join(w for w in words if w not in _MDOC_CALLS))
    end_section()
    return page, sections


def _man_docs(root: Path, pages_per_lang: int = 80, english_pages: int = 500) -> list[_Doc]:
    if not root.is_dir():
        return []
    langs = sorted(d.name for d in root.iterdir()
                   if d.is_dir() and not d.name.startswith("man") and "." not in d.name)
    out: list[_Doc] = []
    for locale in ["en", *langs]:
        base = root if locale == "en" else root / locale
        files = sorted(p for sec in sorted(base.glob("man[1-9]"))
                       for p in sec.glob("*.gz") if p.is_file() and not p.is_symlink())
        families: dict[str, int] = {}
        for p in files:  # at most 3 pages of one family (gcloud alone has thousands)
            families[re.split(r"[._-]", p.name, maxsplit=1)[0]] = 0
        kept = []
        for p in files:
            fam = re.split(r"[._-]", p.name, maxsplit=1)[0]
            families[fam] += 1
            if families[fam] <= 3:
                kept.append(p)
        files = kept
        cap = english_pages if locale == "en" else pages_per_lang
        if len(files) > cap:  # evenly spaced, so every letter of the alphabet shows up
            files = [files[i * len(files) // cap] for i in range(cap)]
        for path in files:
            parsed = read_man_page(path)
            if parsed is None:
                continue
            page, sections = parsed
            for heading, text in sections:
                title = f"{page or path.name} {heading}"
                out.append(_Doc("man", locale.split("_")[0], title, text))
    return out


def dedup_key(text: str) -> bytes:
    """Equal for texts the exact-dedup stage (default options) would call duplicates."""
    return xxhash.xxh3_128_digest(unicodedata.normalize("NFC", " ".join(text.split())).encode())


@lru_cache(maxsize=2)
def collect_real_text(man_root: str = "/usr/share/man") -> tuple[_Doc, ...]:
    """Every usable real document on this machine, deduplicated, in a fixed order.

    Returns:
        ``(origin, lang, title, text)`` tuples: pydoc topics, then docstrings, then man-page
        sections; texts that are empty or duplicate an earlier one are left out.
    """
    seen: set[bytes] = set()
    out: list[_Doc] = []
    for doc in [*_pydoc_docs(), *_docstring_docs(), *_man_docs(Path(man_root))]:
        key = dedup_key(doc.text)
        if doc.text.strip() and key not in seen:
            seen.add(key)
            out.append(doc)
    return tuple(out)


def _mutate(text: str, rng: random.Random) -> str:
    """A light, deterministic edit: paragraph swap/drop and ~2.5% word edits."""
    paras = text.split("\n\n")
    if len(paras) > 2 and rng.random() < 0.4:
        del paras[rng.randrange(len(paras))]
    if len(paras) > 1 and rng.random() < 0.5:
        i, j = rng.randrange(len(paras)), rng.randrange(len(paras))
        paras[i], paras[j] = paras[j], paras[i]
    words = "\n\n".join(paras).split(" ")
    for _ in range(max(1, len(words) // 40)):
        i, op = rng.randrange(len(words)), rng.random()
        if op < 0.3 and len(words) > 1:
            del words[i]
        elif op < 0.6:
            words.insert(i, words[rng.randrange(len(words))])
        elif op < 0.8:
            j = min(i + 1, len(words) - 1)
            words[i], words[j] = words[j], words[i]
        else:
            words[i] = words[i].upper() if words[i] != words[i].upper() else words[i].lower() + "s"
    return " ".join(words)


def clean_records(target_bytes: int, seed: int, man_root: str) -> Iterator[dict[str, Any]]:
    """Distinct records totalling about ``target_bytes`` of UTF-8 text, in a seeded order.

    Real documents come first (sampled when there are more than needed); past that, mutated
    copies keep the volume growing without creating exact duplicates.
    """
    pool = collect_real_text(man_root)
    rng = random.Random(f"winnow-demo-text-{seed}")
    order = list(range(len(pool)))
    rng.shuffle(order)
    seen = {dedup_key(d.text) for d in pool}
    total, rounds = 0, 0
    while total < target_bytes and pool:
        for i in order:
            doc = pool[i]
            text, rid = doc.text, f"{doc.origin}-{i:06d}"
            if rounds:
                for _ in range(4):
                    text = _mutate(text, rng)
                    key = dedup_key(text)
                    if key not in seen:
                        break
                else:
                    continue
                seen.add(key)
                rid = f"{rid}-v{rounds}"
            rec = {"id": rid, "text": text, "origin": doc.origin, "lang": doc.lang, "title": doc.title}
            total += len(text.encode("utf-8"))
            yield rec
            if total >= target_bytes:
                return
        rounds += 1
