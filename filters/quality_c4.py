"""C4's rules (Raffel et al. 2020, sec. 2.2, with the line rules of the public C4 cleaner):
lorem ipsum, curly brackets, and at least a few sentences in the lines C4 keeps (lines ending
in terminal punctuation, long enough, without "javascript" or a policy phrase).
"""

from __future__ import annotations

import re

from winnow.filters.quality_config import QualityConfig

__all__ = ["C4_REASONS", "c4"]

C4_REASONS: tuple[str, ...] = ("quality_c4_lorem_ipsum", "quality_c4_curly_bracket", "quality_c4_too_few_sentences")

_TERMINAL = (".", "!", "?", '"', "\u201d", "'", "\u3002", "\uff01", "\uff1f")
_TERMINAL_LAST = frozenset(_TERMINAL)  # (each one character)
_SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f]+[\"'\u201d\u2019)\]]*(?=\s|$)")
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_CITATION = re.compile(r"\[\d+\]|\[edit\]|\[citation needed\]")


def _has_policy(lw: str) -> bool:
    """Whether the lower-cased line ``lw`` holds one of C4's policy phrases."""
    if "cookie" not in lw and " of use" not in lw and "privacy" not in lw:
        return False  # (one scan each for what every phrase contains)
    return any(p in lw for p in _POLICY)


def _has_lorem_ipsum(text: str) -> bool:
    """Whether ``text.lower()`` holds "lorem ipsum", without lowering all of a non-ASCII text.

    ``str.lower`` turns a non-ASCII character into ASCII only for U+0130 (to "i" and a
    combining dot, so never an "i" before "p") and U+212A (to "k", which the phrase lacks), so
    the phrase is in the lowered text exactly when the text holds it in ASCII letters of any
    case: ``bytes.lower`` of the UTF-8 finds that (it lowers A-Z only)."""
    if text.isascii():
        return "lorem ipsum" in text.lower()
    return b"lorem ipsum" in text.encode("utf-8", "surrogatepass").lower()


def c4(c: QualityConfig, text: str, lines: list[str]) -> tuple[str | None, str | None]:
    """The first C4 rule ``text`` fails (or None) and, when it passes, the lines C4 keeps."""
    if c.c4_lorem_ipsum and _has_lorem_ipsum(text):
        return "quality_c4_lorem_ipsum", None
    if c.c4_curly_bracket and "{" in text:
        return "quality_c4_curly_bracket", None
    kept = []
    sentences = 0
    min_words, max_len = c.c4_min_words_per_line, c.c4_max_word_length
    for ln in lines:
        if "[" in ln:
            ln = _CITATION.sub("", ln).rstrip()
        if not ln or ln[-1] not in _TERMINAL_LAST or ln.endswith("..."):
            continue
        if len(ln) > max_len:
            ws = ln.split()
            if len(ws) < min_words or max(map(len, ws)) > max_len:
                continue
        elif min_words and len(ln.split(None, min_words - 1)) < min_words:
            continue  # (at most min_words - 1 splits: min_words parts when it has that many words)
        lw = ln.lower()
        if "javascript" in lw or _has_policy(lw):
            continue
        kept.append(ln)
        sentences += len(_SENTENCE_END.findall(ln))
        if sentences >= c.c4_min_sentences and not c.c4_rewrite:
            return None, None  # enough already; the kept text is only needed to rewrite
    if sentences < c.c4_min_sentences:
        return "quality_c4_too_few_sentences", None
    return None, "\n".join(kept)
