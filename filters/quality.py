"""Heuristic quality rules: Gopher quality and repetition, C4 and FineWeb, at published defaults.

Each rule family can be switched off and each threshold tuned; every rule has its own reason
code (``quality_gopher_word_count``, ``quality_c4_curly_bracket``, ``quality_fineweb_line_punct``
...). Rules run cheapest first and the first failing rule names the drop. Word rules read the
record's ``lang`` (from the ``lang`` stage, when it ran before): words of Chinese and Japanese
are single characters, and the stop-word rule uses that language's list (English: the eight
Gopher words); a language without a list skips the stop-word rule, a language written without
spaces skips the mean-word-length rule.

Defaults, as published: Gopher (Rae et al. 2021, appendix A), C4 (Raffel et al. 2020, sec. 2.2,
with the line rules of the public C4 cleaner) and FineWeb's extra rules (Penedo et al. 2024).
Words are whitespace tokens; the original implementations tokenise slightly differently, so
figures near a threshold can differ.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import compress, filterfalse
from operator import methodcaller, mul
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, MutableMapping, Sequence

import numpy as np
import pyarrow as pa

from winnow.errors import ConfigError
from winnow.filters.base import KEEP, RecordFilter, Verdict, drop
from winnow.filters.stopwords import NO_SPACE_LANGS, split_words, stop_words

__all__ = ["QualityConfig", "QualityFilter", "QUALITY_REASONS", "text_stats"]

_TOP_N = (2, 3, 4)
_SMALL = 400  # below this many words the n-gram rules use Counters, above numpy
_DUP_N = (5, 6, 7, 8, 9, 10)
QUALITY_REASONS: tuple[str, ...] = (
    "quality_gopher_word_count", "quality_gopher_mean_word_length", "quality_gopher_symbol_ratio",
    "quality_gopher_bullet_lines", "quality_gopher_ellipsis_lines", "quality_gopher_alpha_words",
    "quality_gopher_stop_words", "quality_gopher_dup_lines", "quality_gopher_dup_paragraphs",
    "quality_gopher_dup_line_chars", "quality_gopher_dup_paragraph_chars",
    *(f"quality_gopher_top_{n}gram" for n in _TOP_N), *(f"quality_gopher_dup_{n}gram" for n in _DUP_N),
    "quality_c4_lorem_ipsum", "quality_c4_curly_bracket", "quality_c4_too_few_sentences",
    "quality_fineweb_line_punct", "quality_fineweb_short_lines", "quality_fineweb_dup_line_chars",
    "quality_fineweb_list_ratio",
)


def _ratio(name: str, v: float) -> None:
    if not 0.0 <= v <= 1.0:
        raise ConfigError(f"quality.{name}", v, "a fraction between 0 and 1")


@dataclass(frozen=True)
class QualityConfig:
    """Options of the ``quality`` stage (defaults are the published thresholds).

    Attributes:
        gopher_quality: run the Gopher quality rules.
        gopher_repetition: run the Gopher repetition rules.
        c4: run the C4 rules.
        fineweb: run the FineWeb rules.
        modalities: record modalities the rules apply to; others pass untouched.
        min_words: Gopher: fewer words drop (50).
        max_words: Gopher: more words drop (100,000).
        min_mean_word_length: Gopher: mean word length below drops (3).
        max_mean_word_length: Gopher: mean word length above drops (10).
        max_symbol_word_ratio: Gopher: ``#`` and ellipses per word above drops (0.1).
        max_bullet_lines_ratio: Gopher: share of lines starting with a bullet above drops (0.9).
        max_ellipsis_lines_ratio: Gopher: share of lines ending in an ellipsis above drops (0.3).
        min_alpha_words_ratio: Gopher: share of words with a letter below drops (0.8).
        min_stop_words: Gopher: fewer stop words of the record's language drop (2).
        max_dup_line_ratio: Gopher: share of duplicated lines above drops (0.30).
        max_dup_para_ratio: Gopher: share of duplicated paragraphs above drops (0.30).
        max_dup_line_char_ratio: Gopher: chars in duplicated lines above drops (0.20).
        max_dup_para_char_ratio: Gopher: chars in duplicated paragraphs above drops (0.20).
        top_ngram_max: Gopher: max share of chars in the most frequent 2-, 3-, 4-gram.
        dup_ngram_max: Gopher: max share of chars in duplicated 5- ... 10-grams.
        c4_min_sentences: C4: fewer sentences in the kept lines drop (5).
        c4_min_words_per_line: C4: lines with fewer words are not kept (3).
        c4_max_word_length: C4: lines with a longer word are not kept (1000).
        c4_lorem_ipsum: C4: drop pages containing "lorem ipsum".
        c4_curly_bracket: C4: drop pages containing ``{``.
        c4_rewrite: C4: replace the text by the lines C4 keeps (off: the text is unchanged
            and only the sentence count of the kept lines decides).
        fineweb_min_line_punct_ratio: FineWeb: share of lines ending in punctuation below drops (0.12).
        fineweb_short_line_chars: FineWeb: a line this long or shorter is short (30).
        fineweb_max_short_line_ratio: FineWeb: share of short lines above drops (0.67).
        fineweb_max_dup_line_char_ratio: FineWeb: chars in duplicated lines above drops (0.01).
        fineweb_max_newline_word_ratio: FineWeb: newlines per word above drops (0.3).
    """

    gopher_quality: bool = True
    gopher_repetition: bool = True
    c4: bool = True
    fineweb: bool = True
    modalities: tuple[str, ...] = ("text",)
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2
    max_dup_line_ratio: float = 0.30
    max_dup_para_ratio: float = 0.30
    max_dup_line_char_ratio: float = 0.20
    max_dup_para_char_ratio: float = 0.20
    top_ngram_max: tuple[float, ...] = (0.20, 0.18, 0.16)
    dup_ngram_max: tuple[float, ...] = (0.15, 0.14, 0.13, 0.12, 0.11, 0.10)
    c4_min_sentences: int = 5
    c4_min_words_per_line: int = 3
    c4_max_word_length: int = 1000
    c4_lorem_ipsum: bool = True
    c4_curly_bracket: bool = True
    c4_rewrite: bool = False
    fineweb_min_line_punct_ratio: float = 0.12
    fineweb_short_line_chars: int = 30
    fineweb_max_short_line_ratio: float = 0.67
    fineweb_max_dup_line_char_ratio: float = 0.01
    fineweb_max_newline_word_ratio: float = 0.3

    def __post_init__(self) -> None:
        if not 0 <= self.min_words <= self.max_words:
            raise ConfigError("quality.min_words", (self.min_words, self.max_words), "0 <= min_words <= max_words")
        if not 0 <= self.min_mean_word_length <= self.max_mean_word_length:
            raise ConfigError("quality.min_mean_word_length", self.min_mean_word_length,
                              "0 <= min_mean_word_length <= max_mean_word_length")
        for name in ("max_bullet_lines_ratio", "max_ellipsis_lines_ratio", "min_alpha_words_ratio",
                     "max_dup_line_ratio", "max_dup_para_ratio", "max_dup_line_char_ratio",
                     "max_dup_para_char_ratio", "fineweb_min_line_punct_ratio", "fineweb_max_short_line_ratio",
                     "fineweb_max_dup_line_char_ratio"):
            _ratio(name, getattr(self, name))
        if len(self.top_ngram_max) != 3 or len(self.dup_ngram_max) != 6:
            raise ConfigError("quality.top_ngram_max/dup_ngram_max", (self.top_ngram_max, self.dup_ngram_max),
                              "3 fractions (2-, 3-, 4-grams) and 6 fractions (5- ... 10-grams)")
        for v in (*self.top_ngram_max, *self.dup_ngram_max):
            _ratio("top_ngram_max/dup_ngram_max", v)
        for name in ("min_stop_words", "c4_min_sentences", "c4_min_words_per_line", "c4_max_word_length",
                     "fineweb_short_line_chars"):
            if getattr(self, name) < 0:
                raise ConfigError(f"quality.{name}", getattr(self, name), "an integer >= 0")
        if self.max_symbol_word_ratio < 0 or self.fineweb_max_newline_word_ratio < 0:
            raise ConfigError("quality.max_symbol_word_ratio", self.max_symbol_word_ratio, "a number >= 0")


_BULLETS = ("-", "*", "\u2022", "\u25cf", "\u25cb", "\u25aa", "\u25a0", "\u2023", "\u2043", "\u2013", "\u27a2", "\u2192")
_ELLIPSES = ("...", "\u2026")
_TERMINAL = (".", "!", "?", '"', "\u201d", "'", "\u3002", "\uff01", "\uff1f")
_FW_PUNCT = (".", "!", "?", '"', "'", ")", "\u201d", "\u2019", ":", ";", "\u3002", "\uff01", "\uff1f", "\u2026")
_SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f]+[\"'\u201d\u2019)\]]*(?=\s|$)")
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_CITATION = re.compile(r"\[\d+\]|\[edit\]|\[citation needed\]")
_PARAS = re.compile(r"\n\s*\n")
_ENDS_FW_PUNCT = methodcaller("endswith", _FW_PUNCT)
_STARTS_BULLET = methodcaller("startswith", _BULLETS)
_ENDS_ELLIPSIS = methodcaller("endswith", _ELLIPSES)
# A word with a letter of any script: all letters (str.isalpha, most words), or else the
# pattern finds one; a match starts at the word's first letter and runs to its end, so each
# such word is counted once. The pattern's class also holds numbers that are not digits
# (½, ², Ⅻ); text with one of those is counted word by word instead.
_LETTER_WORD = re.compile(r"[^\W\d_]\S*")


def _has_policy(lw: str) -> bool:
    """Whether the lower-cased line ``lw`` holds one of C4's policy phrases."""
    if "cookie" not in lw and " of use" not in lw and "privacy" not in lw:
        return False  # (one scan each for what every phrase contains)
    return any(p in lw for p in _POLICY)


def _alpha_words(words: list[str]) -> int:
    """How many of ``words`` hold a letter (of any script)."""
    whole = sum(map(str.isalpha, words))
    if whole == len(words):
        return whole
    rest = list(filterfalse(str.isalpha, words))
    joined = " ".join(rest)
    if not joined.isascii() and any(ch.isnumeric() and not ch.isalpha() for ch in set(joined) if not ch.isascii()):
        return whole + sum(1 for w in rest if any(map(str.isalpha, w)))
    return whole + _LETTER_WORD.subn("", joined)[1]


def _dup_stats(items: Sequence[str]) -> tuple[int, int]:
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


def text_stats(text: str, lang: str | None) -> dict[str, Any]:
    """The cheap per-document figures the rules and the report use."""
    words = split_words(text, lang)
    n = len(words)
    word_chars = len("".join(words))
    lines = list(filter(None, map(str.strip, text.split("\n"))))
    return {"words": words, "n_words": n, "word_chars": word_chars, "lines": lines}


class QualityFilter(RecordFilter):
    """Gopher, C4 and FineWeb heuristics; the first failing rule gives the reason.

    Columns: ``quality_words`` (word count), ``quality_mean_word_length``,
    ``quality_alpha_ratio`` (share of words with a letter), ``quality_line_punct_ratio`` (share
    of lines ending in punctuation) and ``quality_dup_line_char_ratio`` (chars in duplicated
    lines over all chars); null for records the rules do not apply to.
    """

    name: ClassVar[str] = "quality"
    reasons: ClassVar[tuple[str, ...]] = QUALITY_REASONS
    FIELDS: ClassVar[tuple[pa.Field, ...]] = (
        pa.field("quality_words", pa.int64(), nullable=True),
        pa.field("quality_mean_word_length", pa.float64(), nullable=True),
        pa.field("quality_alpha_ratio", pa.float64(), nullable=True),
        pa.field("quality_line_punct_ratio", pa.float64(), nullable=True),
        pa.field("quality_dup_line_char_ratio", pa.float64(), nullable=True),
    )

    def __init__(self, config: QualityConfig | None = None) -> None:
        self.config = config or QualityConfig()
        self._modalities = frozenset(self.config.modalities)

    def fields(self) -> tuple[pa.Field, ...]:
        return self.FIELDS

    def process(self, record: MutableMapping[str, Any]) -> tuple[MutableMapping[str, Any], Verdict]:
        text = record.get("text")
        if record.get("modality", "text") not in self._modalities or text is None:
            record.update(dict.fromkeys(f.name for f in self.FIELDS))
            return record, KEEP
        lang = record.get("lang")
        ann, reason, kept_text = self._judge(text, lang)
        record.update(ann)
        if kept_text is not None and self.config.c4_rewrite:
            record["text"] = kept_text
        return record, (KEEP if reason is None else drop(reason))

    def annotate(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        text = record.get("text")
        if record.get("modality", "text") not in self._modalities or text is None:
            return dict.fromkeys(f.name for f in self.FIELDS)
        return self._judge(text, record.get("lang"))[0]

    def verdict(self, record: Mapping[str, Any]) -> Verdict:
        text = record.get("text")
        if record.get("modality", "text") not in self._modalities or text is None:
            return KEEP
        reason = self._judge(text, record.get("lang"))[1]
        return KEEP if reason is None else drop(reason)

    # -- the rules -------------------------------------------------------------------------

    def _judge(self, text: str, lang: str | None) -> tuple[dict[str, Any], str | None, str | None]:
        c = self.config
        st = text_stats(text, lang)
        words, n, lines = st["words"], st["n_words"], st["lines"]
        total_chars = len(text)
        mean_len = st["word_chars"] / n if n else 0.0
        alpha = 1.0 - (n - _alpha_words(words)) / n if n and lang not in NO_SPACE_LANGS else 1.0
        punct_lines = sum(map(_ENDS_FW_PUNCT, lines))
        punct_ratio = punct_lines / len(lines) if lines else 0.0
        dup_lines, dup_line_chars = _dup_stats(lines)
        dup_line_char_ratio = dup_line_chars / total_chars if total_chars else 0.0
        ann = {"quality_words": n, "quality_mean_word_length": mean_len, "quality_alpha_ratio": alpha,
               "quality_line_punct_ratio": punct_ratio, "quality_dup_line_char_ratio": dup_line_char_ratio}
        reason = None
        kept_text = None
        # Cheap rules first; the n-gram repetition rules (the costly ones) run last.
        if c.gopher_quality:
            reason = self._gopher_quality(text, lang, words, n, mean_len, alpha, lines)
        if reason is None and c.gopher_repetition:
            reason = self._gopher_lines(text, lines, dup_lines, dup_line_chars)
        if reason is None and c.c4:
            reason, kept_text = self._c4(text, lines)
        if reason is None and c.fineweb:
            reason = self._fineweb(text, n, lines, punct_ratio, dup_line_chars)
        if reason is None and c.gopher_repetition:
            reason = self._gopher_ngrams(words)
        return ann, reason, kept_text

    def _gopher_quality(self, text: str, lang: str | None, words: list[str], n: int, mean_len: float,
                        alpha: float, lines: list[str]) -> str | None:
        c = self.config
        if not c.min_words <= n <= c.max_words:
            return "quality_gopher_word_count"
        if lang not in NO_SPACE_LANGS and not c.min_mean_word_length <= mean_len <= c.max_mean_word_length:
            return "quality_gopher_mean_word_length"
        symbols = text.count("#") + text.count("...") + text.count("\u2026")
        if n and symbols / n > c.max_symbol_word_ratio:
            return "quality_gopher_symbol_ratio"
        if lines:
            if sum(map(_STARTS_BULLET, lines)) / len(lines) > c.max_bullet_lines_ratio:
                return "quality_gopher_bullet_lines"
            if sum(map(_ENDS_ELLIPSIS, lines)) / len(lines) > c.max_ellipsis_lines_ratio:
                return "quality_gopher_ellipsis_lines"
        if alpha < c.min_alpha_words_ratio:
            return "quality_gopher_alpha_words"
        sw = stop_words(lang)
        if sw is not None and c.min_stop_words > 0:
            found = 0
            for w in words:
                if w in sw or w.lower() in sw:
                    found += 1
                    if found >= c.min_stop_words:
                        break
            else:
                return "quality_gopher_stop_words"
        return None

    def _gopher_lines(self, text: str, lines: list[str], dup_lines: int, dup_line_chars: int) -> str | None:
        c = self.config
        total = len(text)
        if lines and dup_lines / len(lines) > c.max_dup_line_ratio:
            return "quality_gopher_dup_lines"
        paras = list(filter(None, map(str.strip, _PARAS.split(text))))
        dup_paras, dup_para_chars = _dup_stats(paras)
        if paras and dup_paras / len(paras) > c.max_dup_para_ratio:
            return "quality_gopher_dup_paragraphs"
        if total and dup_line_chars / total > c.max_dup_line_char_ratio:
            return "quality_gopher_dup_line_chars"
        if total and dup_para_chars / total > c.max_dup_para_char_ratio:
            return "quality_gopher_dup_paragraph_chars"
        return None

    def _gopher_ngrams(self, words: list[str]) -> str | None:
        c = self.config
        if len(words) < 2:
            return None
        word_counts = Counter(words)
        if max(word_counts.values()) < 2:
            return None  # no word repeats, so no n-gram does
        # _TOP_BOUND's (count x length) of the top word, and which words repeat at all.
        top_cl = max(map(mul, word_counts.values(), map(len, word_counts)))
        repeated = bytes(map((1).__lt__, map(word_counts.__getitem__, words)))
        if len(words) < _SMALL:
            return self._gopher_ngrams_small(words, top_cl, repeated)
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

    def _gopher_ngrams_small(self, words: list[str], top_cl: int, repeated: bytes) -> str | None:
        """The same n-gram rules with Counters: faster than numpy on short documents."""
        c = self.config
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

    def _c4(self, text: str, lines: list[str]) -> tuple[str | None, str | None]:
        c = self.config
        low = text.lower()
        if c.c4_lorem_ipsum and "lorem ipsum" in low:
            return "quality_c4_lorem_ipsum", None
        if c.c4_curly_bracket and "{" in text:
            return "quality_c4_curly_bracket", None
        kept = []
        sentences = 0
        for ln in lines:
            if "[" in ln:
                ln = _CITATION.sub("", ln).rstrip()
            if not ln.endswith(_TERMINAL) or ln.endswith("..."):
                continue
            ws = ln.split()
            if len(ws) < c.c4_min_words_per_line or (len(ln) > c.c4_max_word_length
                                                     and max(map(len, ws)) > c.c4_max_word_length):
                continue
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

    def _fineweb(self, text: str, n: int, lines: list[str], punct_ratio: float, dup_line_chars: int) -> str | None:
        c = self.config
        if not lines:
            return "quality_fineweb_line_punct"
        if punct_ratio < c.fineweb_min_line_punct_ratio:
            return "quality_fineweb_line_punct"
        short = sum(1 for ln in lines if len(ln) <= c.fineweb_short_line_chars)
        if short / len(lines) > c.fineweb_max_short_line_ratio:
            return "quality_fineweb_short_lines"
        non_nl = len(text) - text.count("\n")
        if non_nl and dup_line_chars / non_nl > c.fineweb_max_dup_line_char_ratio:
            return "quality_fineweb_dup_line_chars"
        if n and text.count("\n") / n > c.fineweb_max_newline_word_ratio:
            return "quality_fineweb_list_ratio"
        return None
