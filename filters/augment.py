"""Augmentation: new records from kept ones, checked for kept terms, change and drift.

:class:`Augmenter` is the pure part of the ``augment`` stage. For a batch of records it
decides, from ``(seed, id)`` alone, which records are augmented and by which method, runs the
methods in batches (back-translation sends all of a batch's texts through the translator in
one call per direction), and judges each candidate:

* ``augment_lost_term``: a protected term (or code span) of the original is missing;
* ``augment_identical``: the candidate equals the original (whitespace aside);
* ``augment_untranslated``: the back-translation kept words the translator could not
  translate back (Apertium's unknown-word marks on the pivot -> English leg, other than the
  original's own words): pivot-language words such as ``dosieraj`` in an English text;
* ``augment_drift``: its chrF against the original is below ``min_similarity``.

Originals are never changed; a kept candidate becomes a new record (a copy of the original
with the new text, a new id, ``aug_from`` and ``aug_method``).
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import pyarrow as pa
import xxhash

from winnow.errors import ConfigError
from winnow.filters.augment_terms import TermShield

__all__ = ["AugmentConfig", "Augmenter", "Attempt", "chrf", "AUGMENT_FIELDS", "REASONS", "METHODS"]

METHODS = ("backtranslate", "synonym", "entity", "image")
REASONS = ("augment_lost_term", "augment_identical", "augment_drift", "augment_empty", "augment_untranslated")

AUGMENT_FIELDS = (
    pa.field("aug_from", pa.string()),
    pa.field("aug_method", pa.string()),
    pa.field("aug_chrf", pa.float64()),
    pa.field("aug_params", pa.string()),
)


@dataclass(frozen=True)
class AugmentConfig:
    """The ``augment`` section.

    Attributes:
        fraction: share of kept records augmented (chosen from ``(seed, id)``).
        seed: the choice's seed (also seeds each method's random draws).
        methods: methods to choose from, one per chosen record (``backtranslate``, ``synonym``,
            ``entity``, ``image``); a method that does not apply to a record (no text, no
            image) counts it under ``not_applicable``.
        backend: ``apertium`` (default; Debian packages) or ``seq2seq`` (local model directories).
        pivots: Apertium pivot languages (``spa``, ``cat``, ``epo``); one per record, from its hash.
        forward_model: seq2seq: English -> pivot model directory.
        backward_model: seq2seq: pivot -> English model directory.
        forward_lang: seq2seq: the pivot's language token for multilingual models (NLLB).
        backward_lang: seq2seq: English's language token for multilingual models.
        terms: protected term list (one per line); empty: the tokenizer's dictionary when set.
        min_similarity: chrF (0..100) below which an augmentation has drifted.
        synonym_share: synonym method: share of eligible words replaced (at least one).
        wordnet: directory of WordNet's dict files (Debian ``wordnet-base``).
        max_chars: texts longer than this are not augmented (counted ``too_long``).
        examples: side-by-side examples kept for the report, per method and outcome.
    """

    fraction: float = 0.25
    seed: int = 0
    methods: tuple[str, ...] = ("backtranslate",)
    backend: str = "apertium"
    pivots: tuple[str, ...] = ("spa",)
    forward_model: str = ""
    backward_model: str = ""
    forward_lang: str = ""
    backward_lang: str = ""
    terms: str = ""
    min_similarity: float = 40.0
    synonym_share: float = 0.15
    wordnet: str = "/usr/share/wordnet"
    max_chars: int = 20_000
    examples: int = 5
    image_flip: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ConfigError("augment.fraction", self.fraction, "a share between 0 and 1")
        if not self.methods:
            raise ConfigError("augment.methods", self.methods, "at least one method")
        for m in self.methods:
            if m not in METHODS:
                raise ConfigError("augment.methods", m, f"one of {', '.join(METHODS)}")
        if self.backend not in ("apertium", "seq2seq"):
            raise ConfigError("augment.backend", self.backend, "apertium or seq2seq")
        if not self.pivots:
            raise ConfigError("augment.pivots", self.pivots, "at least one pivot language")
        if not 0.0 <= self.min_similarity <= 100.0:
            raise ConfigError("augment.min_similarity", self.min_similarity, "a chrF between 0 and 100")
        if not 0.0 < self.synonym_share <= 1.0:
            raise ConfigError("augment.synonym_share", self.synonym_share, "a share in (0, 1]")
        if self.max_chars < 1:
            raise ConfigError("augment.max_chars", self.max_chars, "a positive number of characters")


def _ngrams(s: str, n: int) -> Counter:
    if n == 1:
        return Counter(s)
    return Counter(map("".join, zip(*[s[k:] for k in range(n)])))  # the n-grams, built in C


def chrf(hypothesis: str, reference: str, order: int = 6, beta: float = 2.0) -> float:
    """chrF (Popović 2015) in 0..100: character n-gram F-beta, n = 1..``order``, whitespace
    removed, precision and recall averaged over the orders that have n-grams."""
    h = "".join(hypothesis.split())
    r = "".join(reference.split())
    if not h or not r:
        return 100.0 if h == r else 0.0
    ps, rs = [], []
    for n in range(1, order + 1):
        th, tr = len(h) - n + 1, len(r) - n + 1
        if th <= 0 or tr <= 0:
            continue
        small, large = _ngrams(h, n), _ngrams(r, n)
        if len(small) > len(large):
            small, large = large, small
        get = large.get
        match = 0
        for gram, c in small.items():  # the clipped matches: sum of min(count in h, count in r)
            d = get(gram)
            if d:
                match += c if c < d else d
        ps.append(match / th)
        rs.append(match / tr)
    p, rc = sum(ps) / len(ps), sum(rs) / len(rs)
    if p == 0 and rc == 0:
        return 0.0
    b2 = beta * beta
    return 100.0 * (1 + b2) * p * rc / (b2 * p + rc)


def _hash(seed: int, *parts: str) -> int:
    return xxhash.xxh3_64_intdigest("\x00".join((str(seed), *parts)).encode("utf-8", "surrogatepass"))


@dataclass
class Attempt:
    """One augmentation of one record: the candidate, and why it was not kept (if it was not).

    Attributes:
        method: ``backtranslate``, ``synonym``, ``entity`` or ``image``.
        text: the candidate text (the original caption for image augmentations).
        reason: ``None`` when kept, else an ``augment_*`` reason or ``not_applicable`` / ``too_long``.
        chrf: the candidate's chrF against the original (None for images).
        params: method details (pivot, replaced words, image factors) as JSON-able data.
        image: the augmented image bytes (image method only).
        lost: the protected terms the candidate lost.
    """

    method: str
    text: str | None
    reason: str | None = None
    chrf: float | None = None
    params: dict = field(default_factory=dict)
    image: bytes | None = None
    lost: tuple[str, ...] = ()


class Augmenter:
    """The pure augmentation step (see the module docstring).

    Args:
        cfg: the stage config.
        terms: the protected terms (already read from ``cfg.terms`` or the tokenizer's dictionary).
        backtranslators: pivot -> object with ``backtranslate(texts) -> texts`` (built by the
            caller, so tests and the pipeline choose the backend); needed for ``backtranslate``.
    """

    def __init__(self, cfg: AugmentConfig, terms: Sequence[str] = (),
                 backtranslators: Mapping[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.shield = TermShield(terms)
        self._bt = dict(backtranslators or {})
        self._pivots = tuple(p for p in cfg.pivots if p in self._bt) or tuple(cfg.pivots)
        self._synonyms = None
        self._entities = None
        self._threshold = int(cfg.fraction * (1 << 64)) if cfg.fraction < 1.0 else 1 << 64

    # -- the deterministic choice -------------------------------------------------------------
    def choose(self, record: Mapping[str, Any]) -> str | None:
        """The method this record is augmented with, or None; a pure function of (seed, id) and
        which methods apply (``image`` to records with an image, the others to records with
        text). A chosen record that no configured method applies to gets ``not_applicable``."""
        rid = str(record.get("id", ""))
        if _hash(self.cfg.seed, "pick", rid) >= self._threshold:
            return None
        has_image = record.get("image") is not None
        has_text = bool((record.get("text") or "").strip())
        methods = [m for m in self.cfg.methods if (has_image if m == "image" else has_text)] or list(self.cfg.methods)
        return methods[_hash(self.cfg.seed, "method", rid) % len(methods)] if len(methods) > 1 else methods[0]

    def pivot(self, record: Mapping[str, Any]) -> str:
        rid = str(record.get("id", ""))
        return self._pivots[_hash(self.cfg.seed, "pivot", rid) % len(self._pivots)]

    # -- judging ------------------------------------------------------------------------------
    def judge(self, original: str, candidate: str | None, shielded: frozenset[str] | None = None,
              untranslated: Sequence[str] = ()) -> tuple[str | None, float | None, tuple[str, ...]]:
        """``(reason or None, chrF, lost terms)`` for a text candidate (``shielded``: the
        original's protected spans when the caller has found them already; ``untranslated``:
        the words the translator reported it could not translate)."""
        if candidate is None or not candidate.strip():
            return "augment_empty", None, ()
        lost = self.shield.lost(original, candidate, shielded)
        score = round(chrf(candidate, original), 3)
        if " ".join(candidate.split()) == " ".join(original.split()):
            return "augment_identical", score, lost
        if lost:
            return "augment_lost_term", score, lost
        if untranslated:
            return "augment_untranslated", score, lost
        if score < self.cfg.min_similarity:
            return "augment_drift", score, lost
        return None, score, lost

    # -- the methods --------------------------------------------------------------------------
    def _backtranslate(self, recs: list[Mapping[str, Any]]) -> list[Attempt]:
        """Judged attempts: each translation is restored and judged as soon as it arrives, while
        the translator works on the rest of the batch."""
        by_pivot: dict[str, list[int]] = {}
        for i, r in enumerate(recs):
            by_pivot.setdefault(self.pivot(r), []).append(i)
        out: list[Attempt | None] = [None] * len(recs)
        jobs = []
        for pivot, idx in by_pivot.items():
            bt = self._bt.get(pivot)
            if bt is None:
                raise ConfigError("augment.pivots", pivot, "a pivot with a back-translator")
            masked, found = [], []
            for i in idx:
                m, f = self.shield.protect(recs[i]["text"])
                masked.append(m)
                found.append(f)
            jobs.append((pivot, bt, idx, masked, found))

        def run(job: tuple) -> None:
            pivot, bt, idx, masked, found = job

            def arrived(start: int, texts: list[str]) -> None:
                for k, text in enumerate(texts, start):
                    # Apertium's results name the words it left untranslated (Translation)
                    untranslated = getattr(text, "untranslated", ())
                    text = TermShield.restore(TermShield.fix_case(masked[k], text), found[k])
                    params: dict = {"pivot": pivot}
                    if untranslated:
                        params["untranslated"] = list(untranslated)
                    a = Attempt("backtranslate", text, params=params)
                    a.reason, a.chrf, a.lost = self.judge(recs[idx[k]]["text"], text, frozenset(found[k]),
                                                          untranslated)
                    out[idx[k]] = a

            streams = getattr(bt, "streams_results", False)  # BackTranslator: results while it translates the rest
            back = bt.backtranslate(masked, arrived) if streams else bt.backtranslate(masked)
            if len(back) != len(masked):
                raise RuntimeError(f"back-translation through {pivot} returned {len(back)} texts for {len(masked)}")
            if not streams:  # any object with backtranslate(texts) -> texts
                arrived(0, list(back))

        if len(jobs) > 1:  # the pivots' translators are separate processes: run them at the same time
            with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
                list(pool.map(run, jobs))
        else:
            for job in jobs:
                run(job)
        if any(a is None for a in out):
            raise RuntimeError("a back-translator did not report every text")
        return out  # type: ignore[return-value]

    def _synonym(self, recs: list[Mapping[str, Any]]) -> list[Attempt]:
        if self._synonyms is None:
            from winnow.filters.augment_replace import SynonymReplacer

            self._synonyms = SynonymReplacer(self.cfg.wordnet, self.cfg.synonym_share)
        out = []
        for r in recs:
            text, changed = self._synonyms.replace(r["text"], self.shield.spans(r["text"]),
                                                   _hash(self.cfg.seed, "synonym", str(r.get("id", ""))))
            out.append(Attempt("synonym", text, params={"replaced": changed}))
        return out

    def _entity(self, recs: list[Mapping[str, Any]]) -> list[Attempt]:
        if self._entities is None:
            from winnow.filters.augment_replace import EntityReplacer

            self._entities = EntityReplacer()
        out = []
        for r in recs:
            text, changed = self._entities.replace(r["text"], self.shield.spans(r["text"]),
                                                   _hash(self.cfg.seed, "entity", str(r.get("id", ""))))
            out.append(Attempt("entity", text, params={"replaced": changed}))
        return out

    def _image(self, recs: list[Mapping[str, Any]]) -> list[Attempt]:
        from winnow.filters.augment_image import perturb_image

        out = []
        for r in recs:
            data, params = perturb_image(r["image"], _hash(self.cfg.seed, "image", str(r.get("id", ""))),
                                         flip=self.cfg.image_flip)
            out.append(Attempt("image", r.get("text"), params=params, image=data))
        return out

    def augment(self, records: Sequence[Mapping[str, Any]]) -> list[list[Attempt]]:
        """The attempts for each record (an empty list for records not chosen), in order."""
        results: list[list[Attempt]] = [[] for _ in records]
        todo: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            method = self.choose(r)
            if method is None:
                continue
            needs_image = method == "image"
            has = r.get("image") is not None if needs_image else bool((r.get("text") or "").strip())
            if not has:
                results[i].append(Attempt(method, None, reason="not_applicable"))
                continue
            if not needs_image and len(r["text"]) > self.cfg.max_chars:
                results[i].append(Attempt(method, None, reason="too_long"))
                continue
            todo.setdefault(method, []).append(i)
        run = {"backtranslate": self._backtranslate, "synonym": self._synonym, "entity": self._entity,
               "image": self._image}
        for method, idx in todo.items():
            attempts = run[method]([records[i] for i in idx])
            for i, a in zip(idx, attempts):
                if method not in ("image", "backtranslate"):  # back-translations come judged
                    a.reason, a.chrf, a.lost = self.judge(records[i]["text"], a.text)
                results[i].append(a)
        return results

    def close(self) -> None:
        """Stop the back-translators' kept processes (Apertium chains); a later call restarts them."""
        for bt in self._bt.values():
            stop = getattr(bt, "close", None)
            if stop is not None:
                stop()

    def new_record(self, record: Mapping[str, Any], a: Attempt) -> dict:
        """The kept augmentation as a record: the original's columns, new id, text (or image),
        ``aug_from``, ``aug_method``, ``aug_chrf`` and ``aug_params``."""
        new = dict(record)
        new["id"] = xxhash.xxh3_128_hexdigest(f"{record['id']}\x00aug\x00{a.method}\x00{self.cfg.seed}".encode(
            "utf-8", "surrogatepass"))
        if a.image is not None:
            new["image"] = a.image
        else:
            new["text"] = a.text
        new["aug_from"] = record["id"]
        new["aug_method"] = a.method
        new["aug_chrf"] = a.chrf
        new["aug_params"] = json.dumps(a.params, sort_keys=True, ensure_ascii=False)
        return new
