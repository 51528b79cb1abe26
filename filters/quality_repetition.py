"""Gopher repetition rules (Rae et al. 2021, appendix A): duplicated lines and paragraphs, the
share of the most frequent 2-, 3- and 4-grams, and the share covered by duplicated 5- ... 10-grams.

Short documents count n-grams with Counters, long ones with numpy over per-process word hashes
(compared only within one call); both give the same verdict, ties broken by first occurrence.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import compress
from operator import mul
from typing import Sequence

import numpy as np

from winnow.filters.quality_config import QualityConfig

__all__ = ["GOPHER_REPETITION_REASONS", "dup_stats", "gopher_lines", "gopher_ngrams"]

_TOP_N = (2, 3, 4)
_SMALL = 400  # below this many words the n-gram rules use Counters, above numpy
_DUP_N = (5, 6, 7, 8, 9, 10)
GOPHER_REPETITION_REASONS: tuple[str, ...] = (
    "quality_gopher_dup_lines", "quality_gopher_dup_paragraphs",
    "quality_gopher_dup_line_chars", "quality_gopher_dup_paragraph_chars",
    *(f"quality_gopher_top_{n}gram" for n in _TOP_N), *(f"quality_gopher_dup_{n}gram" for n in _DUP_N),
)
_PARAS = re.compile(r"\n\s*\n")


def dup_stats(items: Sequence[str]) -> tuple[int, int]:
    """(#items equal to an earlier item, chars in those items)."""
    if len(set(items)) == len(items):
        return 0, 0
    seen: set[str] = set()
    n = chars = 0
    for it in items:
        if it in seen:
            n += 1
            chars += len(it)
        else:
            seen.add(it)
    return n, chars


def _hashes(words: Sequence[str]) -> np.ndarray:
    # Python's str hash is per process; it is only compared within this one call.
    return np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)


def _gram_ids(h: np.ndarray, n: int) -> np.ndarray:
    """One 64-bit value per n-gram (polynomial combination of word hashes)."""
    g = h[: len(h) - n + 1].copy()
    mul = np.uint64(1099511628211)
    for k in range(1, n):
        g = g * mul + h[k: len(h) - n + 1 + k]
    return g


# _TOP_BOUND: an n-gram occurs at most as often as each of its words, so its count times its
# chars is at most n times the largest (count x length) of a single word. When n times that
# share of the chars is within the limit, the most frequent n-gram cannot exceed it either,
# and the rule is skipped without counting n-grams (most prose: "the" holds ~3% of its chars).
def _top_ngram_frac(h: np.ndarray, lens: np.ndarray, n: int, total: int) -> float:
    """Share of word chars in the occurrences of the most frequent n-gram (Gopher)."""
    if len(h) < n or total == 0:
        return 0.0
    g = _gram_ids(h, n)
    _, first, counts = np.unique(g, return_index=True, return_counts=True)
    top = int(counts.max())
    if top < 2:
        return 0.0
    # Of the most frequent n-grams, the one seen first (as Counter.most_common picks): the ids
    # come from per-process string hashes, so their order must not decide.
    start = int(first[counts == top].min())
    return float(lens[start:start + n].sum()) * top / total


def _dup_ngram_frac(h: np.ndarray, lens: np.ndarray, n: int, total: int) -> float:
    """Share of word chars covered by n-grams that occur more than once (Gopher)."""
    if len(h) < n or total == 0:
        return 0.0
    g = _gram_ids(h, n)
    # An n-gram is duplicated when a neighbour in sorted order equals it.
    order = np.argsort(g)
    same = g[order[1:]] == g[order[:-1]]
    if not same.any():
        return 0.0
    dup_sorted = np.zeros(len(g), dtype=bool)
    dup_sorted[1:] = same
    dup_sorted[:-1] |= same
    dup = np.empty(len(g), dtype=bool)
    dup[order] = dup_sorted
    cover = np.zeros(len(h) + 1, dtype=np.int32)
    starts = np.flatnonzero(dup)
    np.add.at(cover, starts, 1)
    np.add.at(cover, starts + n, -1)
    covered = np.cumsum(cover[:-1]) > 0
    return float(lens[covered].sum()) / total


def gopher_lines(c: QualityConfig, text: str, lines: list[str], dup_lines: int, dup_line_chars: int) -> str | None:
    """The first Gopher line and paragraph repetition rule ``text`` fails, or None."""
    total = len(text)
    if lines and dup_lines / len(lines) > c.max_dup_line_ratio:
        return "quality_gopher_dup_lines"
    paras = list(filter(None, map(str.strip, _PARAS.split(text))))
    dup_paras, dup_para_chars = dup_stats(paras)
    if paras and dup_paras / len(paras) > c.max_dup_para_ratio:
        return "quality_gopher_dup_paragraphs"
    if total and dup_line_chars / total > c.max_dup_line_char_ratio:
        return "quality_gopher_dup_line_chars"
    if total and dup_para_chars / total > c.max_dup_para_char_ratio:
        return "quality_gopher_dup_paragraph_chars"
    return None


def gopher_ngrams(c: QualityConfig, words: list[str]) -> str | None:
    """The first Gopher n-gram repetition rule ``words`` fail, or None."""
    if len(words) < 2:
        return None
    word_counts = Counter(words)
    if max(word_counts.values()) < 2:
        return None  # no word repeats, so no n-gram does
    # _TOP_BOUND's (count x length) of the top word, and which words repeat at all.
    top_cl = max(map(mul, word_counts.values(), map(len, word_counts)))
    repeated = bytes(map((1).__lt__, map(word_counts.__getitem__, words)))
    if len(words) < _SMALL:
        return _gopher_ngrams_small(c, words, top_cl, repeated)
    h = _hashes(words)
    lens = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    wtotal = int(lens.sum())
    if wtotal == 0:
        return None
    for n, limit in zip(_TOP_N, c.top_ngram_max):
        if n * top_cl / wtotal <= limit:
            continue  # _TOP_BOUND: this n-gram rule cannot fail
        if _top_ngram_frac(h, lens, n, wtotal) > limit:
            return f"quality_gopher_top_{n}gram"
    # Coverage by duplicated n-grams only shrinks as n grows: when the 5-gram share is under
    # every threshold, no larger n can fail. A repeated n-gram needs n words in a row that
    # each occur more than once.
    for n, limit in zip(_DUP_N, c.dup_ngram_max):
        if repeated.find(b"\x01" * n) < 0:
            break
        frac = _dup_ngram_frac(h, lens, n, wtotal)
        if frac > limit:
            return f"quality_gopher_dup_{n}gram"
        if frac <= min(c.dup_ngram_max):
            break
    return None


def _gopher_ngrams_small(c: QualityConfig, words: list[str], top_cl: int, repeated: bytes) -> str | None:
    """The same n-gram rules with Counters: faster than numpy on short documents."""
    lens = list(map(len, words))
    total = sum(lens)
    if total == 0:
        return None
    for n, limit in zip(_TOP_N, c.top_ngram_max):
        if len(words) < n:
            break
        if n * top_cl / total <= limit:
            continue  # _TOP_BOUND: this n-gram rule cannot fail
        counts = Counter(zip(*(words[k:] for k in range(n))))
        gram, count = counts.most_common(1)[0]
        if count == 1:
            return None  # no n-gram repeats, so no longer one does either
        if sum(map(len, gram)) * count / total > limit:
            return f"quality_gopher_top_{n}gram"
    for n, limit in zip(_DUP_N, c.dup_ngram_max):
        if len(words) < n or repeated.find(b"\x01" * n) < 0:
            break
        grams = list(zip(*(words[k:] for k in range(n))))
        counts = Counter(grams)
        if len(counts) == len(grams):
            break  # no n-gram repeats, so no larger one does either
        # Chars of the words covered by repeated n-grams: merge the covered runs.
        covered = 0
        run_start = run_end = -1
        for i in compress(range(len(grams)), map((1).__lt__, map(counts.__getitem__, grams))):
            if i > run_end:
                if run_end > run_start:
                    covered += sum(lens[run_start:run_end])
                run_start = i
            run_end = i + n
        covered += sum(lens[run_start:run_end])
        frac = covered / total
        if frac > limit:
            return f"quality_gopher_dup_{n}gram"
        if frac <= min(c.dup_ngram_max):
            break
    return None
