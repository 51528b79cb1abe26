"""Labelled texts for calibrating the ``grammar`` stage, built at run time (no text shipped).

Well-edited English prose: paragraphs of the standard library's own docstrings and of the
``pydoc`` topics (the Python documentation), code examples and indented blocks left out.
Erroneous prose: the same kind of paragraphs with deliberate errors put in, seeded: subject-verb
agreement (``is`` for ``are``, ``has`` for ``have``, ...), articles (``a`` for ``an`` and back)
and word choice (``then`` for ``than``, ``it's`` for ``its``, ``there`` for ``their``,
``effect`` for ``affect``, ``could of``, ...).
"""

from __future__ import annotations

import importlib
import inspect
import random
import re
import warnings

__all__ = ["clean_paragraphs", "inject_errors", "grammar_eval_set", "ERROR_KINDS"]

_MODULES = (
    "abc argparse array ast asyncio base64 bisect calendar cmd codecs collections colorsys configparser "
    "contextlib copy csv dataclasses datetime decimal difflib dis email enum filecmp fileinput fnmatch "
    "fractions ftplib functools getopt gettext glob gzip hashlib heapq hmac html.parser http.client "
    "imaplib inspect io ipaddress itertools json locale logging lzma mailbox mimetypes netrc numbers "
    "operator optparse pathlib pickle pkgutil plistlib poplib pprint queue quopri random re reprlib "
    "sched secrets selectors shelve shlex shutil signal smtplib socket socketserver sqlite3 ssl "
    "statistics string struct subprocess sysconfig tarfile tempfile textwrap threading timeit tokenize "
    "trace traceback types typing unittest urllib.parse urllib.request uuid warnings wave weakref "
    "xml.dom.minidom zipfile zoneinfo").split()

_CODEY = re.compile(r">>>|\.\.\.|::|[{}\[\]=<>`*_|#@\\]|\w\(|\)\w|--|\w\.\w")


def _paragraphs(doc: str) -> list[str]:
    out = []
    for block in re.split(r"\n\s*\n", doc):
        lines = block.split("\n")
        if any(ln.startswith((" ", "\t")) for ln in lines[1:]) or block.startswith((" ", "\t")):
            continue  # indented: code, tables, argument lists
        p = " ".join(block.split())
        if len(p.split()) >= 25 and not _CODEY.search(p) and p[-1:] in ".:" and p[:1].isupper():
            out.append(p)
    return out


def clean_paragraphs(limit: int = 0) -> list[str]:
    """Prose paragraphs (25 words or more, no code) from stdlib docstrings and the pydoc
    topics, in a fixed order, duplicates removed."""
    seen: dict[str, None] = {}
    for name in _MODULES:
        try:
            mod = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module this Python lacks
            continue
        docs = [inspect.getdoc(mod) or ""]
        with warnings.catch_warnings():  # typing.io and friends warn when touched
            warnings.simplefilter("ignore", DeprecationWarning)
            for attr in sorted(vars(mod)):
                obj = getattr(mod, attr, None)
                if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", "") == name:
                    docs.append(inspect.getdoc(obj) or "")
        for d in docs:
            for p in _paragraphs(d):
                seen.setdefault(p, None)
    from pydoc_data.topics import topics

    for key in sorted(topics):
        for p in _paragraphs(topics[key]):
            seen.setdefault(p, None)
    out = list(seen)
    return out[:limit] if limit else out


ERROR_KINDS = ("agreement", "article", "word_choice")
_SWAPS = {
    "agreement": ((r"\bis\b", "are"), (r"\bare\b", "is"), (r"\bhas\b", "have"), (r"\bhave\b", "has"),
                  (r"\bwas\b", "were"), (r"\bwere\b", "was"), (r"\bdoes\b", "do"), (r"\bIt is\b", "It are"),
                  (r"\bThis is\b", "This are"), (r"\bThey are\b", "They is"), (r"\bit has\b", "it have"),
                  (r"\b(?<=[Ii]t )(?!is\b|has\b|was\b)([a-z]{3,}[^s])s\b", r"\1"),
                  (r"\b(?<=[Tt]hey )(are|were|have)\b", "is")),
    "article": ((r"\ba (?=[bcdfgjklmnpqrstvwz])", "an "), (r"\ban (?=[aeio])", "a "),
                (r"\bA (?=[bcdfgjklmnpqrstvwz])", "An "), (r"\bAn (?=[aeio])", "A ")),
    "word_choice": ((r"\bthan\b", "then"), (r"\bits\b", "it's"), (r"\btheir\b", "there"),
                    (r"\baffects?\b", "effect"), (r"\bcould have\b", "could of"), (r"\bwould have\b", "would of"),
                    (r"\bless\b", "fewer"), (r"\bfewer\b", "less"), (r"\bthen\b", "than"), (r"\byour\b", "you're"),
                    (r"\bwhose\b", "who's"), (r"\blose\b", "loose"), (r"\baccept\b", "except")),
}


def inject_errors(text: str, rng: random.Random, per_kind: int = 1) -> tuple[str, list[str]]:
    """``text`` with up to ``per_kind`` errors of each kind put in (at sites that do not
    overlap), and the kinds put in."""
    chosen: list[tuple[int, int, str, str]] = []
    for kind in ERROR_KINDS:
        sites = sorted({(m.start(), m.end(), m.group(0)[:-1] if rep == "\\1" else rep)
                        for pat, rep in _SWAPS[kind] for m in re.finditer(pat, text)})
        rng.shuffle(sites)
        n = 0
        for a, b, rep in sites:
            if n >= per_kind:
                break
            if all(b <= c or a >= d for c, d, _, _ in chosen):
                chosen.append((a, b, rep, kind))
                n += 1
    for a, b, rep, _ in sorted(chosen, reverse=True):
        text = text[:a] + rep + text[b:]
    return text, [k for _, _, _, k in sorted(chosen)]


def grammar_eval_set(n: int = 150, seed: int = 0, per_kind: int = 2) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """``(clean, erroneous)``: ``n`` clean paragraphs (seeded sample), and the other
    paragraphs (at most ``n``) with errors put in (each with at least two), with their kinds."""
    paras = clean_paragraphs()
    rng = random.Random(f"winnow-grammar-{seed}")
    rng.shuffle(paras)
    clean = paras[:n]
    bad: list[tuple[str, list[str]]] = []
    for p in paras[n:]:
        if len(bad) >= n:
            break
        t, kinds = inject_errors(p, rng, per_kind)
        if len(kinds) >= 2:
            bad.append((t, kinds))
    return clean, bad
