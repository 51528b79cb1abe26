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
_SMALL = 600  # below this many words the n-gram rules use Counters, above numpy
_DUP_N = (5, 6, 7, 8, 9, 10)
GOPHER_REPETITION_REASONS: tuple[str, ...] = (
    "quality_gopher_dup_lines", "quality_gopher_dup_paragraphs",
    "quality_gopher_dup_line_chars", "quality_gopher_dup_paragraph_chars",
    *(f"quality_gopher_top_{n}gram" for n in _TOP_N), *(f"quality_gopher_dup_{n}gram" for n in _DUP_N),
)
_PARAS = re.compile(r"\n\s*\n")


def dup_stats(items: Sequence[str]) -> tuple[int, int]:
    """(#items equal to an earlier item, chars in those items)."""
    first = set(items)  # (the first of each: the others are the items and chars beyond these)
    if len(first) == len(items):
        return 0, 0
    return len(items) - len(first), sum(map(len, items)) - sum(map(len, first))


def _gram_ids(h: np.ndarray, n: int) -> np.ndarray:
    """One 64-bit value per n-gram (polynomial combination of word hashes)."""
    g = h[: len(h) - n + 1].copy()
    mul = np.uint64(1099511628211)
    for k in range(1, n):
        g = g * mul + h[k: len(h) - n + 1 + k]
    return g


# _TOP_BOUND: an n-gram that occurs twice holds only words that occur twice, and occurs at most
# as often as each of them, so its count times its chars is at most n times the largest
# (count x length) of a repeated word. When n times that share of the chars is within the
# limit, the most frequent n-gram cannot exceed it either, and the rule is skipped without
# counting n-grams (most prose: "the" holds ~3% of its chars).
#
# Both paths count only the n-grams inside runs of n or more repeated words (the rest hold a
# word seen once, so each occurs once and equals no other n-gram), in text order: the first
# seen of the most frequent n-grams and the covered words are those of all n-grams.
def _runs(repeated: np.ndarray, n: int) -> np.ndarray:
    """Start positions of the n-grams made of repeated words (``repeated``: one flag a word)."""
    ok = repeated[: len(repeated) - n + 1].copy()
    for k in range(1, n):
        ok &= repeated[k: len(repeated) - n + 1 + k]
    return np.flatnonzero(ok)


def _top_ngram_frac(h: np.ndarray, lens: np.ndarray, at: np.ndarray, n: int, total: int) -> float:
    """Share of word chars in the occurrences of the most frequent n-gram (Gopher), of the
    n-grams starting at ``at``."""
    if len(at) < 2 or total == 0:
        return 0.0
    g = _gram_ids(h, n)[at]
    _, first, counts = np.unique(g, return_index=True, return_counts=True)
    top = int(counts.max())
    if top < 2:
        return 0.0
    # Of the most frequent n-grams, the one seen first (as Counter.most_common picks): the ids
    # come from per-process string hashes, so their order must not decide.
    start = int(at[first[counts == top].min()])
    return float(lens[start:start + n].sum()) * top / total


def _dup_ngram_frac(h: np.ndarray, lens: np.ndarray, at: np.ndarray, n: int, total: int) -> float:
    """Share of word chars covered by n-grams that occur more than once (Gopher), of the
    n-grams starting at ``at``."""
    if len(at) < 2 or total == 0:
        return 0.0
    g = _gram_ids(h, n)[at]
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
    starts = at[dup]  # distinct, so fancy-index arithmetic adds each once
    cover = np.zeros(len(h) + 1, dtype=np.int32)
    cover[starts] += 1
    cover[starts + n] -= 1
    covered = np.cumsum(cover[:-1]) > 0
    return float(lens[covered].sum()) / total


def gopher_lines(c: QualityConfig, text: str, lines: list[str], dup_lines: int, dup_line_chars: int) -> str | None:
    """The first Gopher line and paragraph repetition rule ``text`` fails, or None
    (``lines``: the text's stripped non-empty lines, ``dup_lines`` and ``dup_line_chars``
    their :func:`dup_stats`)."""
    if not dup_lines:
        # Paragraphs are whole lines (split at newlines with only whitespace between), so
        # two equal paragraphs hold equal lines: no line repeats, no paragraph does.
        return None
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


def gopher_ngrams(c: QualityConfig, words: list[str], total: int | None = None) -> str | None:
    """The first Gopher n-gram repetition rule ``words`` fail, or None (``total``: their
    chars, when the caller has counted them)."""
    if len(words) < 2:
        return None
    if len(words) < _SMALL:
        return _gopher_ngrams_small(c, words, sum(map(len, words)) if total is None else total)
    # Each word's id is the position of its first occurrence.
    first: dict[str, int] = {}
    ids = np.fromiter(map(first.setdefault, words, range(len(words))), dtype=np.intp, count=len(words))
    counts = np.bincount(ids, minlength=len(words))
    if int(counts.max()) < 2:
        return None  # no word repeats, so no n-gram does
    starts = np.fromiter(first.values(), dtype=np.intp, count=len(first))
    # Per word (by first position): its length and its hash, spread to every occurrence.
    # Python's str hash is per process; it is only compared within this one call.
    by_first = np.zeros(len(words), dtype=np.int64)
    by_first[starts] = np.fromiter(map(len, first), dtype=np.int64, count=len(first))
    lens = by_first[ids]
    wtotal = int(lens.sum())
    if wtotal == 0:
        return None
    # _TOP_BOUND's (count x length) of the top repeated word.
    cl = counts[starts] * by_first[starts]
    top_cl = int(cl[counts[starts] > 1].max())
    by_first[starts] = np.fromiter(map(hash, first), dtype=np.int64, count=len(first))
    h = by_first[ids].view(np.uint64)
    repeated = counts[ids] > 1
    for n, limit in zip(_TOP_N, c.top_ngram_max):
        if n * top_cl / wtotal <= limit:
            continue  # _TOP_BOUND: this n-gram rule cannot fail
        if _top_ngram_frac(h, lens, _runs(repeated, n), n, wtotal) > limit:
            return f"quality_gopher_top_{n}gram"
    # Coverage by duplicated n-grams only shrinks as n grows: when the 5-gram share is under
    # every threshold, no larger n can fail.
    for n, limit in zip(_DUP_N, c.dup_ngram_max):
        at = _runs(repeated, n)
        if len(at) < 2:
            break
        frac = _dup_ngram_frac(h, lens, at, n, wtotal)
        if frac > limit:
            return f"quality_gopher_dup_{n}gram"
        if frac <= min(c.dup_ngram_max):
            break
    return None


_TWICE = bytes.maketrans(bytes(range(256)), bytes([0, 0] + [1] * 254))  # a word count -> "repeats"


def _grams_in_runs(words: list[str], repeated: int, n: int) -> tuple[list[int], list[tuple[str, ...]]]:
    """Start positions and n-grams of every n-gram made of repeated words, in text order
    (``repeated``: byte i of this little-endian integer is 1 when word i repeats)."""
    ok = repeated
    for k in range(1, n):
        ok &= repeated >> (8 * k)
    if not ok:
        return [], []
    at = list(compress(range(len(words)), ok.to_bytes(len(words), "little")))
    return at, [tuple(words[i:i + n]) for i in at]


def _gopher_ngrams_small(c: QualityConfig, words: list[str], total: int) -> str | None:
    """The same n-gram rules with Counters: faster than numpy on short documents."""
    word_counts = Counter(words)
    most = max(word_counts.values())
    if most < 2:
        return None  # no word repeats, so no n-gram does
    if total == 0:
        return None
    # Which words repeat, and _TOP_BOUND's (count x length) of the top one of them.
    twice = list(compress(word_counts, map((1).__lt__, word_counts.values())))
    top_cl = max(map(mul, map(word_counts.__getitem__, twice), map(len, twice)))
    if most < 256:
        flags = bytes(map(word_counts.__getitem__, words)).translate(_TWICE)
    else:
        flags = bytes(map(set(twice).__contains__, words))
    repeated = int.from_bytes(flags, "little")
    for n, limit in zip(_TOP_N, c.top_ngram_max):
        if len(words) < n:
            break
        if n * top_cl / total <= limit:
            continue  # _TOP_BOUND: this n-gram rule cannot fail
        counts = Counter(_grams_in_runs(words, repeated, n)[1])
        count = max(counts.values(), default=1)
        if count == 1:
            return None  # no n-gram repeats, so no longer one does either
        gram = next(compress(counts, map(count.__eq__, counts.values())))  # the first seen (as most_common)
        if sum(map(len, gram)) * count / total > limit:
            return f"quality_gopher_top_{n}gram"
    for n, limit in zip(_DUP_N, c.dup_ngram_max):
        if len(words) < n:
            break
        at, grams = _grams_in_runs(words, repeated, n)
        counts = Counter(grams)
        if len(counts) == len(grams):
            break  # no n-gram repeats, so no larger one does either
        # Chars of the words covered by repeated n-grams: merge the covered runs.
        covered = 0
        run_start = run_end = -1
        for i in compress(at, map((1).__lt__, map(counts.__getitem__, grams))):
            if i > run_end:
                if run_end > run_start:
                    covered += sum(map(len, words[run_start:run_end]))
                run_start = i
            run_end = i + n
        covered += sum(map(len, words[run_start:run_end]))
        frac = covered / total
        if frac > limit:
            return f"quality_gopher_dup_{n}gram"
        if frac <= min(c.dup_ngram_max):
            break
    return None
