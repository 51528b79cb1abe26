"""Heuristic quality rules: Gopher quality and repetition, C4 and FineWeb, at published defaults.

Each rule family can be switched off and each threshold tuned; every rule has its own reason
code (``quality_gopher_word_count``, ``quality_c4_curly_bracket``, ``quality_fineweb_line_punct``
...). Rules run cheapest first and the first failing rule names the drop. Word rules read the
record's ``lang`` (from the ``lang`` stage, when it ran before): words of Chinese and Japanese
are single characters, and the stop-word rule uses that language's list (English: the eight
Gopher words); a language without a list skips the stop-word rule, a language written without
spaces skips the mean-word-length rule.

The rule families live one per module (:mod:`~winnow.filters.quality_gopher`,
:mod:`~winnow.filters.quality_repetition`, :mod:`~winnow.filters.quality_c4`,
:mod:`~winnow.filters.quality_fineweb`), their options in :class:`QualityConfig`
(:mod:`~winnow.filters.quality_config`); :class:`QualityFilter` runs them in that order of cost.

Defaults, as published: Gopher (Rae et al. 2021, appendix A), C4 (Raffel et al. 2020, sec. 2.2,
with the line rules of the public C4 cleaner) and FineWeb's extra rules (Penedo et al. 2024).
Words are whitespace tokens; the original implementations tokenise slightly differently, so
figures near a threshold can differ.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, MutableMapping

import pyarrow as pa

from winnow.filters.base import KEEP, RecordFilter, Verdict, drop
from winnow.filters.quality_c4 import C4_REASONS, c4
from winnow.filters.quality_config import QualityConfig
from winnow.filters.quality_fineweb import FINEWEB_REASONS, fineweb, punct_lines
from winnow.filters.quality_gopher import GOPHER_QUALITY_REASONS, alpha_words, gopher_quality
from winnow.filters.quality_repetition import GOPHER_REPETITION_REASONS, dup_stats, gopher_lines, gopher_ngrams
from winnow.filters.stopwords import NO_SPACE_LANGS, split_words

__all__ = ["QualityConfig", "QualityFilter", "QUALITY_REASONS", "text_stats"]

QUALITY_REASONS: tuple[str, ...] = (*GOPHER_QUALITY_REASONS, *GOPHER_REPETITION_REASONS, *C4_REASONS, *FINEWEB_REASONS)


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
        self._verdicts = {None: KEEP, **{r: drop(r) for r in QUALITY_REASONS}}  # (verdicts are frozen)

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
        return record, self._verdicts[reason]

    def annotate(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        text = record.get("text")
        if record.get("modality", "text") not in self._modalities or text is None:
            return dict.fromkeys(f.name for f in self.FIELDS)
        return self._judge(text, record.get("lang"))[0]

    def verdict(self, record: Mapping[str, Any]) -> Verdict:
        text = record.get("text")
        if record.get("modality", "text") not in self._modalities or text is None:
            return KEEP
        return self._verdicts[self._judge(text, record.get("lang"))[1]]

    def _judge(self, text: str, lang: str | None) -> tuple[dict[str, Any], str | None, str | None]:
        c = self.config
        # (text_stats, inline)
        words = split_words(text, lang)
        n = len(words)
        word_chars = len("".join(words))
        lines = list(filter(None, map(str.strip, text.split("\n"))))
        total_chars = len(text)
        mean_len = word_chars / n if n else 0.0
        alpha = 1.0 - (n - alpha_words(words, text)) / n if n and lang not in NO_SPACE_LANGS else 1.0
        punct_ratio = punct_lines(lines) / len(lines) if lines else 0.0
        dup_lines, dup_line_chars = dup_stats(lines)
        dup_line_char_ratio = dup_line_chars / total_chars if total_chars else 0.0
        ann = {"quality_words": n, "quality_mean_word_length": mean_len, "quality_alpha_ratio": alpha,
               "quality_line_punct_ratio": punct_ratio, "quality_dup_line_char_ratio": dup_line_char_ratio}
        reason = None
        kept_text = None
        # Cheap rules first; the n-gram repetition rules (the costly ones) run last.
        if c.gopher_quality:
            reason = gopher_quality(c, text, lang, words, n, mean_len, alpha, lines)
        if reason is None and c.gopher_repetition:
            reason = gopher_lines(c, text, lines, dup_lines, dup_line_chars)
        if reason is None and c.c4:
            reason, kept_text = c4(c, text, lines)
        if reason is None and c.fineweb:
            reason = fineweb(c, text, n, lines, punct_ratio, dup_line_chars)
        if reason is None and c.gopher_repetition:
            reason = gopher_ngrams(c, words, word_chars)
        return ann, reason, kept_text
