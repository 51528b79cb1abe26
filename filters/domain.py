"""KL-divergence domain scoring over hashed word unigrams and bigrams.

A domain is a distribution over ``buckets`` hashed features (lower-cased words and adjacent
word pairs), estimated from reference text with additive smoothing. A record is scored by

* ``KL(record || domain)``: the record's empirical feature distribution ``p`` against the
  domain ``q``: ``sum_f p(f) * (log p(f) - log q(f))`` (0 for a record that looks exactly
  like the domain; larger is further away);
* a DSIR-style importance weight: the mean log-ratio ``sum_f p(f) * (log q(f) - log b(f))`` of
  the domain against a background distribution ``b`` (by default the corpus being curated),
  so records that look more like the target than like the raw data score high.

Several named domains give a score each; the record's ``domain`` label is the closest one
(smallest KL). Everything here is plain Python and NumPy: no Beam.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Iterator, Literal, Mapping, Sequence

import numpy as np
import pyarrow as pa
import xxhash

from winnow.errors import ConfigError, InputError
from winnow.filters.base import KEEP, RecordFilter, Verdict, drop

__all__ = [
    "DomainReference",
    "DomainConfig",
    "featurize",
    "count_features",
    "log_distribution",
    "DomainScorer",
    "read_reference_texts",
    "domain_fields",
    "is_scored",
    "selection_key",
    "domain_verdict",
    "score_prefix",
    "locate_rank",
    "keep_count",
    "REASON_BELOW",
    "REASON_NO_WORDS",
]

REASON_BELOW = "domain_below_threshold"
REASON_NO_WORDS = "domain_no_words"

_WORD = re.compile(r"\w+", re.UNICODE)
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True)
class DomainReference:
    """One named target domain and the reference text that defines it.

    Attributes:
        name: a short snake_case name (``[a-z][a-z0-9_]*``); the record's ``domain`` label.
        paths: files or globs (any fsspec URL) of reference text: ``.jsonl`` (optionally
            ``.gz``/``.zst``; the ``text_field`` of each line) or plain text (whole file).
        text_field: the JSON field holding the text in ``.jsonl`` references.
    """

    name: str = ""
    paths: tuple[str, ...] = ()
    text_field: str = "text"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name or ""):
            raise ConfigError("domain.references[].name", self.name, "a snake_case name such as python_docs",
                              "it becomes the domain label and a column suffix")
        if not self.paths:
            raise ConfigError(f"domain.references[{self.name}].paths", list(self.paths),
                              "at least one file or glob of reference text")


@dataclass(frozen=True)
class DomainConfig:
    """Options of the ``domain`` stage.

    Attributes:
        references: the target domains (at least one), each ``{name, paths}``.
        score: what selection ranks by: ``kl`` (lower is better) or ``dsir`` (higher is better).
        select_domain: the domain whose score selection uses; empty: the record's closest domain.
        keep_fraction: keep this best fraction of the scored records (global quantile).
        threshold: an absolute cut instead of ``keep_fraction`` (keep ``kl <= threshold`` or
            ``dsir >= threshold``).
        background: ``corpus`` (DSIR's choice: the records reaching this stage) or ``uniform``.
        buckets: hashed feature dimension.
        bigrams: add adjacent word pairs to the unigram features.
        smoothing: additive (Laplace) pseudo-count per bucket of every distribution.
        max_chars: only the first this many characters of a text are featurized.
        modalities: records of these modalities are scored; others pass through unscored.
        hist_bins: bins of the KL histogram in the report.
    """

    references: tuple[DomainReference, ...] = ()
    score: Literal["kl", "dsir"] = "kl"
    select_domain: str = ""
    keep_fraction: float = 0.8
    threshold: float | None = None
    background: Literal["corpus", "uniform"] = "corpus"
    buckets: int = 1 << 18
    bigrams: bool = True
    smoothing: float = 0.001
    max_chars: int = 100_000
    modalities: tuple[str, ...] = ("text",)
    hist_bins: int = 96

    def __post_init__(self) -> None:
        if not self.references:
            raise ConfigError(
                "domain.references", list(self.references), "at least one reference domain {name, paths}",
                "e.g. --set 'domain.references=[{name: python, paths: [ref/*.txt]}]', or leave `domain` "
                "out of `stages`",
            )
        names = [r.name for r in self.references]
        if len(set(names)) != len(names):
            raise ConfigError("domain.references", names, "distinct domain names")
        if self.select_domain and self.select_domain not in names:
            raise ConfigError("domain.select_domain", self.select_domain, f"empty or one of {', '.join(names)}")
        if self.score not in ("kl", "dsir"):
            raise ConfigError("domain.score", self.score, "kl or dsir")
        if self.background not in ("corpus", "uniform"):
            raise ConfigError("domain.background", self.background, "corpus or uniform")
        if not 0.0 < self.keep_fraction <= 1.0:
            raise ConfigError("domain.keep_fraction", self.keep_fraction, "a number in (0, 1]")
        if self.threshold is not None and not np.isfinite(self.threshold):
            raise ConfigError("domain.threshold", self.threshold, "a finite number or null")
        if not 256 <= self.buckets <= 1 << 24:
            raise ConfigError("domain.buckets", self.buckets, "an integer in 256..16777216")
        if not self.smoothing > 0:
            raise ConfigError("domain.smoothing", self.smoothing, "a positive pseudo-count such as 0.001")
        if self.max_chars < 1:
            raise ConfigError("domain.max_chars", self.max_chars, "a positive integer")
        if not 2 <= self.hist_bins <= 1000:
            raise ConfigError("domain.hist_bins", self.hist_bins, "2..1000")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.references)


def domain_fields(cfg: DomainConfig) -> tuple[pa.Field, ...]:
    """``domain`` (closest), ``domain_kl``, ``domain_dsir`` and, for 2+ domains, ``domain_kl_<name>``."""
    fields = [
        pa.field("domain", pa.string(), nullable=True),
        pa.field("domain_kl", pa.float64(), nullable=True),
        pa.field("domain_dsir", pa.float64(), nullable=True),
    ]
    if len(cfg.references) > 1:
        fields += [pa.field(f"domain_kl_{n}", pa.float64(), nullable=True) for n in cfg.names]
    return tuple(fields)


def featurize(text: str, buckets: int, bigrams: bool = True, max_chars: int = 100_000) -> np.ndarray:
    """Hashed feature ids (int64) of one text: each lower-cased word, then each word pair."""
    words = _WORD.findall(text[:max_chars].lower())
    h = xxhash.xxh3_64_intdigest
    enc = [w.encode("utf-8", "surrogatepass") for w in words]
    ids = [h(w) for w in enc]
    if bigrams and len(enc) > 1:
        ids += [h(a + b" " + b) for a, b in zip(enc, enc[1:])]
    if not ids:
        return np.empty(0, dtype=np.int64)
    return (np.array(ids, dtype=np.uint64) % np.uint64(buckets)).astype(np.int64)


def count_features(texts: Iterable[str], buckets: int, bigrams: bool = True, max_chars: int = 100_000) -> np.ndarray:
    """Summed feature counts (float64, length ``buckets``) of many texts."""
    counts = np.zeros(buckets, dtype=np.float64)
    for t in texts:
        f = featurize(t, buckets, bigrams, max_chars)
        if len(f):
            counts += np.bincount(f, minlength=buckets)
    return counts


def log_distribution(counts: np.ndarray, smoothing: float) -> np.ndarray:
    """``log q`` of the additively smoothed distribution of ``counts``."""
    c = np.asarray(counts, dtype=np.float64) + smoothing
    return np.log(c) - np.log(c.sum())


def _open_text(path: str) -> str:
    import fsspec

    with fsspec.open(path, "rb", compression="infer") as fh:
        raw = fh.read()
    return raw.decode("utf-8", "replace")


def read_reference_texts(ref: DomainReference) -> Iterator[str]:
    """The texts of one reference domain, in a fixed order (paths, then sorted glob matches).

    Raises:
        InputError: a path or glob matches nothing.
    """
    import fsspec

    for pattern in ref.paths:
        fs, _ = fsspec.core.url_to_fs(pattern)
        matches = sorted(fsspec.core.get_fs_token_paths(pattern)[2])
        if not matches:
            raise InputError(f"domain reference {ref.name!r}: {pattern} matches no file; check domain.references")
        proto = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
        for m in matches:
            uri = m if proto in ("file", "local") else f"{proto}://{m}"
            data = _open_text(uri)
            name = m[:-3] if m.endswith(".gz") else m[:-4] if m.endswith(".zst") else m
            if name.endswith(".jsonl") or name.endswith(".json"):
                for line in data.splitlines():
                    if line.strip():
                        obj = json.loads(line)
                        text = obj.get(ref.text_field) if isinstance(obj, dict) else None
                        if isinstance(text, str):
                            yield text
            else:
                yield data


class DomainScorer(RecordFilter):
    """Score records against the target domains; drop those beyond the cut.

    Args:
        config: the stage options.
        domain_counts: per domain name, its reference feature counts (length ``buckets``).
        background_counts: feature counts of the background (``None``: uniform).
        cut: records whose selection key is worse than this are dropped
            (``(score, tie)`` compared as a tuple; see :meth:`selection_key`); ``None``
            keeps everything (annotate only).

    Reasons:
        ``domain_below_threshold``: the record is outside the kept fraction (or threshold).
        ``domain_no_words``: the record has text but not a single word to score.
    """

    name: ClassVar[str] = "domain"
    reasons: ClassVar[tuple[str, ...]] = (REASON_BELOW, REASON_NO_WORDS)

    def __init__(
        self,
        config: DomainConfig,
        domain_counts: Mapping[str, np.ndarray],
        background_counts: np.ndarray | None = None,
        cut: Sequence[Any] | None = None,
    ) -> None:
        self.config = config
        self._names = config.names
        self._logq = np.stack([log_distribution(domain_counts[n], config.smoothing) for n in self._names])
        if background_counts is None:
            self._logb = np.full(config.buckets, -np.log(config.buckets))
        else:
            self._logb = log_distribution(background_counts, config.smoothing)
        self._select = self._names.index(config.select_domain) if config.select_domain else -1
        self._cut = tuple(cut) if cut is not None else None
        self._fields = domain_fields(config)
        self._per_domain = len(self._names) > 1

    def fields(self) -> tuple[pa.Field, ...]:
        return self._fields

    def scores(self, text: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(KL per domain, DSIR weight per domain) of a text; ``None`` if it has no words."""
        f = featurize(text, self.config.buckets, self.config.bigrams, self.config.max_chars)
        if not len(f):
            return None
        ids, counts = np.unique(f, return_counts=True)
        p = counts / counts.sum()
        plogp = float(np.dot(p, np.log(p)))
        cross = self._logq[:, ids] @ p  # sum_f p(f) log q_d(f), per domain
        kl = plogp - cross
        dsir = cross - float(np.dot(p, self._logb[ids]))
        return kl, dsir

    def annotate(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        if record.get("modality") not in self.config.modalities or record.get("text") is None:
            return {}
        s = self.scores(record["text"])
        if s is None:
            return {"domain": None, "domain_kl": None, "domain_dsir": None}
        kl, dsir = s
        best = int(np.argmin(kl))
        i = self._select if self._select >= 0 else best
        out: dict[str, Any] = {"domain": self._names[best], "domain_kl": float(kl[i]), "domain_dsir": float(dsir[i])}
        if self._per_domain:
            for n, v in zip(self._names, kl):
                out[f"domain_kl_{n}"] = float(v)
        return out

    def verdict(self, record: Mapping[str, Any]) -> Verdict:
        return domain_verdict(record, self.config, self._cut)


def is_scored(record: Mapping[str, Any], cfg: DomainConfig) -> bool:
    """Whether selection applies to this record (its modality is scored and it has text)."""
    return record.get("modality") in cfg.modalities and record.get("text") is not None


def selection_key(record: Mapping[str, Any], cfg: DomainConfig) -> tuple[float, int] | None:
    """Smaller is better: ``(kl, tie)`` or ``(-dsir, tie)``; ``tie`` is a hash of (id, source), so
    equal scores are ordered the same on every runner. ``None`` for unscored records; records
    without words rank last (``inf``)."""
    if not is_scored(record, cfg):
        return None
    v = record.get("domain_kl") if cfg.score == "kl" else record.get("domain_dsir")
    # 63 bits: Beam's integer coder holds signed 64-bit values
    tie = xxhash.xxh3_64_intdigest(f"{record['id']}\x00{record['source']}".encode("utf-8", "surrogatepass")) >> 1
    if v is None:
        return (float("inf"), tie)
    return (float(v) if cfg.score == "kl" else -float(v), tie)


def domain_verdict(record: Mapping[str, Any], cfg: DomainConfig, cut: Sequence[Any] | None) -> Verdict:
    """Keep or drop an annotated record: absolute ``threshold`` if set, else the quantile ``cut``
    (a selection key; ``None`` keeps every scored record that has words)."""
    if not is_scored(record, cfg):
        return KEEP
    if record.get("domain_kl") is None:
        return drop(REASON_NO_WORDS)
    if cfg.threshold is not None:
        if cfg.score == "kl":
            return KEEP if record["domain_kl"] <= cfg.threshold else drop(REASON_BELOW)
        return KEEP if record["domain_dsir"] >= cfg.threshold else drop(REASON_BELOW)
    if cut is None:
        return KEEP
    key = selection_key(record, cfg)
    return KEEP if key is not None and key <= tuple(cut) else drop(REASON_BELOW)


# ---------------------------------------------------------------------------------------------
# The exact global cut: a radix select over the selection keys, in two combiner passes.
#
# Pass 1 counts keys per ``score_prefix`` (the top bits of an order-preserving integer image of
# the score); :func:`locate_rank` finds the prefix holding the k-th smallest key and its rank
# inside that prefix; pass 2 gathers only the keys of that prefix and picks that rank. Counts
# add up the same whatever the partitioning, so the cut is exact and identical on every runner
# and worker count.

#: Bits of the order-preserving score image kept as the bin id (sign, exponent, 16 mantissa bits).
PREFIX_BITS = 28


def score_prefix(score: float, bits: int = PREFIX_BITS) -> int:
    """The top ``bits`` of an order-preserving unsigned 64-bit image of ``score``: a < b implies
    ``score_prefix(a) <= score_prefix(b)``."""
    (u,) = struct.unpack(">Q", struct.pack(">d", score + 0.0))  # -0.0 and 0.0 alike
    u = (~u & 0xFFFFFFFFFFFFFFFF) if u >> 63 else (u | 1 << 63)
    return u >> (64 - bits)


def keep_count(n: int, fraction: float) -> int:
    """How many of ``n`` scored records the best ``fraction`` keeps (rounded; at least one)."""
    return 0 if n <= 0 else min(n, max(1, math.floor(fraction * n + 0.5)))


def locate_rank(prefix_counts: Iterable[tuple[int, int]], k: int) -> tuple[int, int] | None:
    """(prefix holding the k-th smallest key, 1-based rank of that key inside the prefix), or
    ``None`` when there are fewer than ``k`` keys or ``k < 1``."""
    if k < 1:
        return None
    seen = 0
    for prefix, count in sorted(prefix_counts):
        if seen + count >= k:
            return prefix, k - seen
        seen += count
    return None
