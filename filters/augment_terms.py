"""Protected terms: shielded from translation and replacement by placeholders, restored after.

A term is replaced by a placeholder ``ZZT<n>ZZ`` that rule-based and neural translators pass
through as an unknown word (checked against Apertium's eng-spa, eng-cat and en-eo pairs).
Placeholders are numbered per occurrence, so a translator that reorders words still gets each
term back in its new place; a placeholder it dropped or mangled shows up as a lost term.
Code spans (text between backticks) are shielded the same way.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from winnow.terms import read_term_lines

__all__ = ["read_terms", "TermShield", "PLACEHOLDER"]

#: The placeholder form: letters the translators leave alone, the occurrence number inside.
PLACEHOLDER = "ZZT{}ZZ"
_RESTORE = re.compile(r"(?i)\bzzt(\d+)zz\b")
_CODE = r"`[^`\n]+`"
_AFTER = re.compile(r"(?i:\bzzt(\d+)zz) (\w)")


def read_terms(path: str) -> tuple[str, ...]:
    """The terms of a term list: one term per line (spaces allowed), blank lines and ``#``
    comments skipped, duplicates dropped (first kept).

    Raises:
        InputError: the file cannot be read.
    """
    return tuple(term for _, term in read_term_lines(path, "augment.terms"))


def _pattern(term: str) -> str:
    body = re.escape(term)
    if term[:1].isalnum() or term[:1] == "_":
        body = r"(?<![\w])" + body
    if term[-1:].isalnum() or term[-1:] == "_":
        body = body + r"(?![\w])"
    return body


def _compile(parts: list[str], firsts: set[str]) -> re.Pattern | None:
    """One alternation of ``parts``; a lookahead on the characters a match can start with lets
    the scan skip every other position at once (the same matches, about twice as fast)."""
    if not parts:
        return None
    return re.compile(f"(?=[{re.escape(''.join(sorted(firsts)))}])(?:{'|'.join(parts)})")


class TermShield:
    """Finds protected terms (case-sensitive, whole words) and code spans in a text.

    Args:
        terms: the protected terms; longer terms win where terms overlap.
        code_spans: shield text between backticks too.
    """

    def __init__(self, terms: Iterable[str] = (), code_spans: bool = True) -> None:
        self.terms = tuple(dict.fromkeys(t for t in terms if t))
        parts = [_pattern(t) for t in sorted(self.terms, key=len, reverse=True)]
        firsts = {t[0] for t in self.terms}
        self._term_rx = _compile(parts, firsts)
        self._rx = _compile([_CODE, *parts], firsts | {"`"}) if code_spans else self._term_rx

    def spans(self, text: str) -> list[tuple[int, int]]:
        """``(start, end)`` of every shielded span, left to right, not overlapping."""
        if self._rx is None:
            return []
        return [m.span() for m in self._rx.finditer(text)]

    def protect(self, text: str) -> tuple[str, tuple[str, ...]]:
        """The text with each shielded span replaced by a placeholder, and the spans in order."""
        if self._rx is None:
            return text, ()
        found: list[str] = []

        def sub(m: re.Match) -> str:
            found.append(m.group(0))
            return PLACEHOLDER.format(len(found) - 1)

        return self._rx.sub(sub, text), tuple(found)

    @staticmethod
    def fix_case(masked: str, translated: str) -> str:
        """Undo a translator's capital after a placeholder (it took the unknown placeholder for a
        sentence end): lower the word after ``ZZT<n>ZZ`` when it was lower case in ``masked``."""
        lower = {m.group(1) for m in _AFTER.finditer(masked) if m.group(2).islower()}
        if not lower:
            return translated
        return _AFTER.sub(lambda m: m.group(0)[:-1] + m.group(2).lower() if m.group(1) in lower else m.group(0),
                          translated)

    @staticmethod
    def restore(text: str, found: Sequence[str]) -> str:
        """Put the shielded spans back where the placeholders ended up (any case); a placeholder
        whose number is unknown is left as it is (and will count as a lost term)."""
        if not found:
            return text

        def sub(m: re.Match) -> str:
            i = int(m.group(1))
            return found[i] if i < len(found) else m.group(0)

        return _RESTORE.sub(sub, text)

    def counts(self, text: str) -> dict[str, int]:
        """How often each protected term occurs in ``text``."""
        out: dict[str, int] = {}
        if self._term_rx is not None:
            for m in self._term_rx.finditer(text):
                out[m.group(0)] = out.get(m.group(0), 0) + 1
        return out

    def lost(self, original: str, augmented: str, shielded: Iterable[str] | None = None) -> tuple[str, ...]:
        """Protected terms (and code spans) of ``original`` missing from ``augmented``
        (``shielded``: the spans :meth:`protect` found in ``original``, to skip finding them again)."""
        if self._rx is None:
            return ()
        before = set(shielded) if shielded is not None else {m.group(0) for m in self._rx.finditer(original)}
        if not before:
            return ()
        after = {m.group(0) for m in self._rx.finditer(augmented)}
        return tuple(sorted(before - after))
