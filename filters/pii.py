"""PII redaction: detect personal data and secrets, then per type redact, hash, drop or count.

Types: ``email``, ``phone``, ``ipv4``, ``ipv6``, ``credit_card``, ``iban``, ``us_ssn`` and
``secret`` (private key blocks, AWS and GCP access keys, bearer tokens, GitHub and Slack
tokens); see :mod:`winnow.filters.pii_detectors`. With ``presidio: true`` (and Presidio plus a
local spaCy model installed) names and places are found too (``person``, ``location``).

Actions per type:
    ``redact``: replace with a typed placeholder (``<EMAIL>``, ``<PHONE>`` ...).
    ``hash``: replace with ``<EMAIL:1a2b3c4d5e6f>``, a salted SHA-256 prefix, so equal values
        stay equal across the corpus without being readable.
    ``drop``: reject the record (reason ``pii_<type>``).
    ``annotate``: leave the text, only count.
    ``off``: do not look for this type.
Counts per type land in ``pii_<type>`` columns whatever the action.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping, MutableMapping

import pyarrow as pa

from winnow.errors import ConfigError
from winnow.filters.base import KEEP, RecordFilter, Verdict, drop
from winnow.filters.pii_detectors import PII_TYPES, Span, find_pii

__all__ = ["PIIConfig", "PIIFilter", "PLACEHOLDERS", "ACTIONS"]

Action = Literal["redact", "hash", "drop", "annotate", "off"]
ACTIONS = ("redact", "hash", "drop", "annotate", "off")
PRESIDIO_TYPES = ("person", "location")
PLACEHOLDERS = {
    "email": "<EMAIL>", "phone": "<PHONE>", "ipv4": "<IP_ADDRESS>", "ipv6": "<IP_ADDRESS>",
    "credit_card": "<CREDIT_CARD>", "iban": "<IBAN>", "us_ssn": "<US_SSN>", "secret": "<SECRET>",
    "person": "<PERSON>", "location": "<LOCATION>",
}
_PRESIDIO_ENTITIES = {"PERSON": "person", "LOCATION": "location", "GPE": "location"}


@dataclass(frozen=True)
class PIIConfig:
    """Options of the ``pii`` stage: one action per type (see the module docstring).

    Attributes:
        email, phone, ipv4, ipv6, credit_card, iban, us_ssn, secret: the action per type.
        phone_region: region (ISO 3166 alpha-2) for phone numbers written without ``+country``.
        hash_salt: salt of the ``hash`` action; change it per corpus to stop dictionary lookups.
        presidio: also find names and places with Presidio (needs presidio-analyzer and the
            local spaCy model ``presidio_model``; nothing is downloaded).
        presidio_model: the installed spaCy model Presidio uses.
        person, location: the actions for Presidio's findings.
        modalities: record modalities scanned.
    """

    email: Action = "redact"
    phone: Action = "redact"
    ipv4: Action = "redact"
    ipv6: Action = "redact"
    credit_card: Action = "redact"
    iban: Action = "redact"
    us_ssn: Action = "redact"
    secret: Action = "drop"
    phone_region: str = "US"
    hash_salt: str = "winnow"
    presidio: bool = False
    presidio_model: str = "en_core_web_sm"
    person: Action = "redact"
    location: Action = "redact"
    modalities: tuple[str, ...] = ("text", "image_text", "audio_text")

    def __post_init__(self) -> None:
        for t in (*PII_TYPES, *PRESIDIO_TYPES):
            if getattr(self, t) not in ACTIONS:
                raise ConfigError(f"pii.{t}", getattr(self, t), "one of " + ", ".join(ACTIONS))
        if not (len(self.phone_region) == 2 and self.phone_region.isupper()):
            raise ConfigError("pii.phone_region", self.phone_region, "an ISO 3166 alpha-2 region such as US or DE")

    def types(self) -> tuple[str, ...]:
        """The types looked for, built-in first, then Presidio's when enabled."""
        own = tuple(t for t in PII_TYPES if getattr(self, t) != "off")
        extra = tuple(t for t in PRESIDIO_TYPES if getattr(self, t) != "off") if self.presidio else ()
        return own + extra


class _Presidio:
    def __init__(self, model: str) -> None:
        try:
            import spacy
            from presidio_analyzer import AnalyzerEngine
            from presidio_analyzer.nlp_engine import NlpEngineProvider
        except ImportError as exc:
            raise ConfigError("pii.presidio", True, "presidio-analyzer and spaCy installed",
                              "pip install presidio-analyzer plus a spaCy model, or set pii.presidio: false") from exc
        if not spacy.util.is_package(model):
            raise ConfigError("pii.presidio_model", model, "an installed spaCy model package (nothing is downloaded)",
                              f"pip install the {model} wheel, or set pii.presidio: false")
        provider = NlpEngineProvider(nlp_configuration={
            "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]})
        self._engine = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])

    def find(self, text: str, types: tuple[str, ...]) -> list[Span]:
        out = []
        for r in self._engine.analyze(text=text, language="en", entities=list(_PRESIDIO_ENTITIES)):
            t = _PRESIDIO_ENTITIES.get(r.entity_type)
            if t in types:
                out.append(Span(r.start, r.end, t))
        return out


class PIIFilter(RecordFilter):
    """Find PII, rewrite the text per type's action, count per type, drop where configured.

    Reasons: ``pii_<type>`` for each type whose action is ``drop``.
    """

    name: ClassVar[str] = "pii"
    reasons: ClassVar[tuple[str, ...]] = tuple(f"pii_{t}" for t in (*PII_TYPES, *PRESIDIO_TYPES))

    def __init__(self, config: PIIConfig | None = None) -> None:
        self.config = c = config or PIIConfig()
        self._types = c.types()
        self._own = tuple(t for t in self._types if t in PII_TYPES)
        self._actions = {t: getattr(c, t) for t in self._types}
        self._drop = tuple(t for t in self._types if self._actions[t] == "drop")
        self._modalities = frozenset(c.modalities)
        self._presidio = _Presidio(c.presidio_model) if c.presidio else None
        self._columns = tuple(f"pii_{t}" for t in self.all_types(c))

    @staticmethod
    def all_types(config: PIIConfig) -> tuple[str, ...]:
        """Types with a count column: every built-in type, plus Presidio's when enabled."""
        return PII_TYPES + (PRESIDIO_TYPES if config.presidio else ())

    @staticmethod
    def fields_for(config: PIIConfig) -> tuple[pa.Field, ...]:
        return tuple(pa.field(f"pii_{t}", pa.int32(), nullable=True) for t in PIIFilter.all_types(config))

    def fields(self) -> tuple[pa.Field, ...]:
        return self.fields_for(self.config)

    def spans(self, text: str) -> list[Span]:
        """Every finding in ``text`` (non-overlapping, sorted)."""
        found = find_pii(text, self._own, self.config.phone_region)
        if self._presidio is not None:
            extra = self._presidio.find(text, self._types)
            found += [s for s in extra if not any(s.start < f.end and f.start < s.end for f in found)]
            found.sort()
        return found

    def _replacement(self, t: str, value: str) -> str | None:
        action = self._actions[t]
        if action == "redact":
            return PLACEHOLDERS[t]
        if action == "hash":
            digest = hashlib.sha256(f"{self.config.hash_salt}\x00{t}\x00{value}".encode("utf-8", "replace"))
            return f"{PLACEHOLDERS[t][:-1]}:{digest.hexdigest()[:12]}>"
        return None

    def process(self, record: MutableMapping[str, Any]) -> tuple[MutableMapping[str, Any], Verdict]:
        text = record.get("text")
        if text is None or record.get("modality", "text") not in self._modalities:
            record.update(dict.fromkeys(self._columns))
            return record, KEEP
        spans = self.spans(text)
        counts = dict.fromkeys(self._columns, 0)
        for sp in spans:
            counts[f"pii_{sp.type}"] += 1
        record.update(counts)
        for t in self._drop:
            if counts[f"pii_{t}"]:
                return record, drop(f"pii_{t}")
        if spans:
            parts, pos = [], 0
            for sp in spans:
                rep = self._replacement(sp.type, text[sp.start:sp.end])
                if rep is not None:
                    parts.append(text[pos:sp.start])
                    parts.append(rep)
                    pos = sp.end
            parts.append(text[pos:])
            record["text"] = "".join(parts)
        return record, KEEP

    def annotate(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        r, _ = self.process(dict(record))
        return {k: r[k] for k in self._columns}

    def verdict(self, record: Mapping[str, Any]) -> Verdict:
        for t in self._drop:
            if record.get(f"pii_{t}"):
                return drop(f"pii_{t}")
        return KEEP
