"""Options of the ``quality`` stage: one frozen dataclass for the four rule families.

The families (:mod:`~winnow.filters.quality_gopher`, :mod:`~winnow.filters.quality_repetition`,
:mod:`~winnow.filters.quality_c4`, :mod:`~winnow.filters.quality_fineweb`) read their thresholds
from it; :class:`~winnow.filters.quality.QualityFilter` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from winnow.errors import ConfigError

__all__ = ["QualityConfig"]


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
