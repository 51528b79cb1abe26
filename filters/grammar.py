"""Grammar: Harper (``harper-py``: Automattic's offline English grammar checker, in Rust; no
Java, no server, nothing downloaded) lints each English text; the lints of the counted rule
kinds, per 100 words, decide.

Harper sorts its lints into kinds (``Agreement``, ``Grammar``, ``WordChoice``, ``Spelling``,
``Style`` ...). By default only kinds that mark errors in well-edited text count: spelling and
typo kinds are off (on real text they flag code words, names and terms far more often than
misspellings), and so are style, readability, capitalization and formatting hints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping, MutableMapping, Sequence

import pyarrow as pa

from winnow.errors import ConfigError
from winnow.filters.base import KEEP, RecordFilter, Verdict, drop, text_applies

__all__ = ["GrammarConfig", "GrammarFilter", "DEFAULT_KINDS", "ALL_KINDS"]

#: Every lint kind Harper 2.13 reports.
ALL_KINDS: tuple[str, ...] = (
    "Agreement", "BoundaryError", "Capitalization", "Eggcorn", "Enhancement", "Formatting", "Grammar",
    "Malapropism", "Miscellaneous", "Nonstandard", "Punctuation", "Readability", "Redundancy", "Regionalism",
    "Repetition", "Spelling", "Style", "Typo", "Usage", "WordChoice",
)
#: Kinds counted by default: errors, not style, and not the spelling of code words and names.
DEFAULT_KINDS: tuple[str, ...] = (
    "Agreement", "Eggcorn", "Grammar", "Malapropism", "Miscellaneous", "Nonstandard", "Repetition", "Usage",
    "WordChoice",
)


@dataclass(frozen=True)
class GrammarConfig:
    """Options of the ``grammar`` stage.

    Attributes:
        max_errors_per_100_words: records with more counted lints than this per 100 words are
            dropped (``grammar_too_many_errors``); 0 annotates only.
        kinds: Harper lint kinds that count (see ``ALL_KINDS``); add ``Spelling`` and ``Typo``
            to count misspellings (code words and names included).
        rules_off: Harper rules switched off, whatever their kind (e.g. ``LongSentences``).
        dialect: ``american``, ``british``, ``australian``, ``canadian`` or ``indian``.
        languages: check only records whose ``lang`` is one of these (Harper is English-only);
            records of other languages keep null columns and pass. Records without ``lang``
            (no lang stage) are checked.
        min_words: texts with fewer words are annotated but never dropped (a rate over a few
            words means little).
        max_chars: only this many characters from the start are linted (bounds the cost of a
            huge record; the rate is over the words linted).
        modalities: record modalities checked.
    """

    max_errors_per_100_words: float = 1.0
    kinds: tuple[str, ...] = DEFAULT_KINDS
    rules_off: tuple[str, ...] = ()
    dialect: Literal["american", "british", "australian", "canadian", "indian"] = "american"
    languages: tuple[str, ...] = ("en",)
    min_words: int = 20
    max_chars: int = 20_000
    modalities: tuple[str, ...] = ("text", "image_text", "audio_text")

    def __post_init__(self) -> None:
        if self.max_errors_per_100_words < 0:
            raise ConfigError("grammar.max_errors_per_100_words", self.max_errors_per_100_words,
                              "a number >= 0 (0 annotates only)")
        bad = [k for k in self.kinds if k not in ALL_KINDS]
        if bad or not self.kinds:
            raise ConfigError("grammar.kinds", list(self.kinds), f"a non-empty list from {', '.join(ALL_KINDS)}")
        if self.dialect not in ("american", "british", "australian", "canadian", "indian"):
            raise ConfigError("grammar.dialect", self.dialect, "american, british, australian, canadian or indian")
        if self.languages and any(lang != "en" for lang in self.languages):
            raise ConfigError("grammar.languages", list(self.languages), "[en] (Harper checks English only) or []")
        if self.min_words < 0:
            raise ConfigError("grammar.min_words", self.min_words, "an integer >= 0")
        if self.max_chars < 100:
            raise ConfigError("grammar.max_chars", self.max_chars, "at least 100")


class GrammarFilter(RecordFilter):
    """Annotate ``grammar_errors`` (counted lints), ``grammar_errors_per_100_words`` and
    ``grammar_kinds`` (JSON: counted lints per kind); drop text above the threshold.

    Reasons:
        ``grammar_too_many_errors``: more counted lints per 100 words than allowed.
    """

    name: ClassVar[str] = "grammar"
    reasons: ClassVar[tuple[str, ...]] = ("grammar_too_many_errors",)
    FIELDS: ClassVar[tuple[pa.Field, ...]] = (
        pa.field("grammar_errors", pa.int64(), nullable=True),
        pa.field("grammar_errors_per_100_words", pa.float64(), nullable=True),
        pa.field("grammar_kinds", pa.string(), nullable=True),
    )

    def __init__(self, config: GrammarConfig | None = None) -> None:
        self.config = c = config or GrammarConfig()
        try:
            import harper
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise ConfigError("grammar", "harper-py", "harper-py installed", "pip install harper-py==0.2.0") from exc
        self._linter = harper.Linter(getattr(harper.Dialect, c.dialect.upper()))
        if c.rules_off:
            conf = self._linter.get_lint_config()
            unknown = [r for r in c.rules_off if r not in conf]
            if unknown:
                raise ConfigError("grammar.rules_off", unknown, "Harper rule names (see Linter.get_default_lint_config)")
            conf.update(dict.fromkeys(c.rules_off, False))
            self._linter.set_lint_config(conf)
        self._kinds = frozenset(c.kinds)
        self._modalities = frozenset(c.modalities)
        self._languages = frozenset(c.languages)

    def fields(self) -> tuple[pa.Field, ...]:
        return self.FIELDS

    def _applies(self, record: Mapping[str, Any]) -> bool:
        return text_applies(record, self._modalities, self._languages)

    def check(self, text: str) -> tuple[int, float, dict[str, int], int]:
        """``(counted lints, per 100 words, counts per kind, words)`` of ``text``'s prefix."""
        t = text[: self.config.max_chars]
        words = len(t.split())
        kinds: dict[str, int] = {}
        if words:
            for lint in self._linter.lint(t, language="plaintext"):
                k = lint.lint_kind
                if k in self._kinds:
                    kinds[k] = kinds.get(k, 0) + 1
        n = sum(kinds.values())
        return n, (round(100.0 * n / words, 6) if words else 0.0), dict(sorted(kinds.items())), words

    def annotate(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        if not self._applies(record):
            return {"grammar_errors": None, "grammar_errors_per_100_words": None, "grammar_kinds": None}
        n, rate, kinds, words = self.check(record["text"])
        return {"grammar_errors": n, "grammar_errors_per_100_words": rate,
                "grammar_kinds": json.dumps(kinds, separators=(",", ":")), "_grammar_words": words}

    def process(self, record: MutableMapping[str, Any]) -> tuple[MutableMapping[str, Any], Verdict]:
        ann = dict(self.annotate(record))
        words = ann.pop("_grammar_words", None)
        record.update(ann)
        return record, self._judge(record, words)

    def process_batch(self, records: Sequence[MutableMapping[str, Any]]) -> list[tuple[MutableMapping[str, Any], Verdict]]:
        return [self.process(r) for r in records]

    def _judge(self, record: Mapping[str, Any], words: int | None) -> Verdict:
        rate, limit = record.get("grammar_errors_per_100_words"), self.config.max_errors_per_100_words
        if rate is None or limit <= 0 or (words is not None and words < self.config.min_words):
            return KEEP
        return drop("grammar_too_many_errors") if rate > limit else KEEP

    def verdict(self, record: Mapping[str, Any]) -> Verdict:
        text = record.get("text")
        words = len(text[: self.config.max_chars].split()) if isinstance(text, str) else None
        return self._judge(record, words)
