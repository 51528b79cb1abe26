"""Model-based quality: a fastText classifier of "reference-like" text and an n-gram perplexity.

As in DCLM, the classifier is trained by the pipeline itself: reference documents (known good
text) are labelled ``__label__hq`` and a bounded background sample of the input is labelled
``__label__bg``; a record's ``model_quality_score`` is the probability of ``hq``. A model file
can be given instead (``classifier: path``). Perplexity comes from a KenLM model when one is
configured (``perplexity: kenlm``), else from a small interpolated bigram model (absolute
discounting) trained on the same reference text; lower means more reference-like.

Thresholds are absolute (``min_score``, ``max_perplexity``) or a kept fraction
(``keep_fraction``, ``perplexity_keep_fraction``); the pipeline turns a fraction into a
threshold with a global histogram quantile (:func:`hist_quantile`).

Everything here is plain Python (no Beam): the training functions return bytes, which the
pipeline hands to the scorers as a side input.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import pyarrow as pa
import xxhash

from winnow.errors import ConfigError
from winnow.filters.base import KEEP, Verdict, drop
from winnow.filters.fasttext_util import ft_predict, import_fasttext

__all__ = [
    "ModelQualityConfig", "load_reference", "train_classifier", "BigramLM", "ModelQualityScorer",
    "hist_quantile", "judge", "FIELDS", "REASONS",
]

FIELDS: tuple[pa.Field, ...] = (
    pa.field("model_quality_score", pa.float64(), nullable=True),
    pa.field("model_quality_perplexity", pa.float64(), nullable=True),
)
REASONS = ("model_quality_low_score", "model_quality_high_perplexity")
_WORD = re.compile(r"\w+")


def _fraction(name: str, v: float | None) -> None:
    if v is not None and not 0.0 < v <= 1.0:
        raise ConfigError(f"model_quality.{name}", v, "a fraction in (0, 1]")


@dataclass(frozen=True)
class ModelQualityConfig:
    """Options of the ``model_quality`` stage.

    Attributes:
        classifier: ``train`` (on ``reference`` vs a background sample of the input), ``path``
            (load ``classifier_path``) or ``off``.
        classifier_path: a fastText supervised model with labels ``__label__hq``/``__label__bg``.
        reference: the good documents: ``pydoc`` (Python's bundled documentation topics) or a
            path to a ``.txt`` (blank-line separated documents) or ``.jsonl`` (``text`` field) file.
        background_sample: input texts sampled (deterministically, by id hash) as background.
        epochs, dim, buckets, word_ngrams, seed: fastText training settings (one thread:
            reproducible; the model is about ``(words + buckets) * dim * 4`` bytes).
        perplexity: ``ngram`` (trained on ``reference``), ``kenlm`` (``kenlm_path``) or ``off``.
        kenlm_path: a KenLM ``.arpa`` or ``.bin`` model.
        min_score / keep_fraction: drop below an absolute classifier score, or keep the top
            fraction of records by score (at most one of the two; neither: annotate only).
        max_perplexity / perplexity_keep_fraction: likewise for perplexity (keep the lowest).
        max_chars: characters of each text scored.
        modalities: record modalities scored; others pass with null columns.
    """

    classifier: Literal["train", "path", "off"] = "train"
    classifier_path: str = ""
    reference: str = "pydoc"
    background_sample: int = 2000
    epochs: int = 5
    dim: int = 16
    buckets: int = 50_000
    word_ngrams: int = 2
    seed: int = 0
    perplexity: Literal["ngram", "kenlm", "off"] = "ngram"
    kenlm_path: str = ""
    min_score: float | None = None
    keep_fraction: float | None = None
    max_perplexity: float | None = None
    perplexity_keep_fraction: float | None = None
    max_chars: int = 20000
    modalities: tuple[str, ...] = ("text",)

    def __post_init__(self) -> None:
        if self.classifier not in ("train", "path", "off"):
            raise ConfigError("model_quality.classifier", self.classifier, "train, path or off")
        if self.perplexity not in ("ngram", "kenlm", "off"):
            raise ConfigError("model_quality.perplexity", self.perplexity, "ngram, kenlm or off")
        if self.classifier == "path" and not self.classifier_path:
            raise ConfigError("model_quality.classifier_path", self.classifier_path, "a fastText model file",
                              "set classifier_path, or classifier: train")
        if self.perplexity == "kenlm" and not self.kenlm_path:
            raise ConfigError("model_quality.kenlm_path", self.kenlm_path, "a KenLM model file",
                              "set kenlm_path, or perplexity: ngram")
        if self.reference != "pydoc" and not self.reference.endswith((".txt", ".jsonl")):
            raise ConfigError("model_quality.reference", self.reference, "pydoc, or a .txt or .jsonl file")
        if self.min_score is not None and self.keep_fraction is not None:
            raise ConfigError("model_quality.min_score", self.min_score, "either min_score or keep_fraction, not both")
        if self.max_perplexity is not None and self.perplexity_keep_fraction is not None:
            raise ConfigError("model_quality.max_perplexity", self.max_perplexity,
                              "either max_perplexity or perplexity_keep_fraction, not both")
        _fraction("keep_fraction", self.keep_fraction)
        _fraction("perplexity_keep_fraction", self.perplexity_keep_fraction)
        if self.min_score is not None and not 0.0 <= self.min_score <= 1.0:
            raise ConfigError("model_quality.min_score", self.min_score, "a probability between 0 and 1")
        if self.background_sample < 10 or self.epochs < 1 or self.dim < 2 or self.max_chars < 100:
            raise ConfigError("model_quality.background_sample/epochs/dim/max_chars",
                              (self.background_sample, self.epochs, self.dim, self.max_chars),
                              "background_sample >= 10, epochs >= 1, dim >= 2, max_chars >= 100")


def load_reference(ref: str) -> list[str]:
    """The reference ("good") documents."""
    if ref == "pydoc":
        from pydoc_data.topics import topics

        return [topics[k].strip() for k in sorted(topics) if topics[k].strip()]
    if not os.path.isfile(ref):
        raise ConfigError("model_quality.reference", ref, "an existing .txt or .jsonl file, or pydoc")
    with open(ref, encoding="utf-8") as fh:
        if ref.endswith(".jsonl"):
            return [d["text"] for d in map(json.loads, filter(str.strip, fh)) if d.get("text")]
        return [p.strip() for p in re.split(r"\n\s*\n", fh.read()) if p.strip()]


def _ft_line(text: str, max_chars: int) -> str:
    return " ".join(_WORD.findall(text[:max_chars].lower()))


def _doc_key(text: str) -> int:
    return xxhash.xxh3_64_intdigest(" ".join(text.split()).encode("utf-8", "replace"))


def train_classifier(reference: Sequence[str], background: Iterable[str], cfg: ModelQualityConfig) -> bytes | None:
    """Train the fastText classifier; returns the saved model's bytes.

    Reference documents are split into paragraphs (more, shorter examples); background texts
    equal to a reference document are left out. Returns None when one side is left empty
    (a tiny input, or one made of the reference itself): there is nothing to tell apart, and
    records are then annotated with a null score instead of failing the run.
    """
    fasttext = import_fasttext("model_quality.classifier")
    ref_keys = {_doc_key(t) for t in reference}
    good = [p for t in reference for p in re.split(r"\n\s*\n", t) if len(p.split()) >= 5]
    bg = [t for t in background if _doc_key(t) not in ref_keys]
    if not good or not bg:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "train.txt")
        with open(path, "w", encoding="utf-8") as fh:
            for label, texts in (("__label__hq ", good), ("__label__bg ", bg)):
                for t in texts:
                    line = _ft_line(t, cfg.max_chars)
                    if line:  # fastText diverges (NaN) on examples without words
                        fh.write(label + line + "\n")
        lr = 0.1
        for attempt in range(4):
            try:
                model = fasttext.train_supervised(input=path, epoch=cfg.epochs, dim=cfg.dim, lr=lr,
                                                  wordNgrams=cfg.word_ngrams, minCount=1, bucket=cfg.buckets,
                                                  thread=1, seed=cfg.seed, verbose=0)
                break
            except RuntimeError as exc:  # "Encountered NaN": diverged; retry with a smaller step
                if "NaN" not in str(exc) or attempt == 3:
                    raise
                lr /= 2
        out = os.path.join(tmp, "model.bin")
        model.save_model(out)
        with open(out, "rb") as fh:
            return fh.read()


def _load_fasttext(data: bytes | None, path: str) -> Any:
    fasttext = import_fasttext("model_quality.classifier")
    if data is None:
        if not os.path.isfile(path):
            raise ConfigError("model_quality.classifier_path", path, "an existing fastText model file")
        return fasttext.load_model(path)
    with tempfile.NamedTemporaryFile(suffix=".bin") as fh:
        fh.write(data)
        fh.flush()
        return fasttext.load_model(fh.name)


class BigramLM:
    """Word bigram model with absolute discounting, interpolated with an add-one unigram.

    Words are lowercased ``\\w+`` tokens; unknown words share one id. ``perplexity`` is
    vectorised with numpy (searchsorted over the sorted bigram keys).
    """

    DISCOUNT = 0.75

    def __init__(self, vocab: list[str], uni: np.ndarray, keys: np.ndarray, counts: np.ndarray,
                 followers: np.ndarray) -> None:
        self.vocab = vocab
        self._ids = {w: i for i, w in enumerate(vocab)}
        self._unk = len(vocab)
        self._uni = uni.astype(np.float64)
        self._keys, self._counts, self._followers = keys, counts.astype(np.float64), followers.astype(np.float64)
        v1 = len(vocab) + 1
        # How often each word is a bigram context (the unigram count less document ends).
        self._ctx = np.bincount(keys // v1, weights=self._counts, minlength=v1) if len(keys) else np.zeros(v1)
        total = self._uni.sum()
        self._p_uni = (self._uni + 1.0) / (total + len(vocab) + 1.0)

    @classmethod
    def train(cls, texts: Iterable[str]) -> "BigramLM":
        ids: dict[str, int] = {}
        seqs = []
        for t in texts:
            seqs.append(np.array([ids.setdefault(w, len(ids)) for w in _WORD.findall(t.lower())], dtype=np.int64))
        vocab = list(ids)
        v1 = len(vocab) + 1
        allw = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
        uni = np.bincount(allw, minlength=v1)
        pairs = np.concatenate([s[:-1] * v1 + s[1:] for s in seqs if len(s) > 1] or [np.zeros(0, np.int64)])
        keys, counts = np.unique(pairs, return_counts=True)
        followers = np.bincount(keys // v1, minlength=v1)
        return cls(vocab, uni, keys, counts, followers)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, vocab=np.array(self.vocab, dtype=object), uni=self._uni, keys=self._keys,
                 counts=self._counts, followers=self._followers)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "BigramLM":
        z = np.load(io.BytesIO(data), allow_pickle=True)
        return cls(list(z["vocab"]), z["uni"], z["keys"], z["counts"], z["followers"])

    def perplexity(self, text: str) -> float | None:
        """exp of the mean negative log-probability per word; ``None`` for fewer than 2 words."""
        return self.perplexities([_WORD.findall(text.lower())])[0]

    def perplexities(self, docs: Sequence[Sequence[str]]) -> list[float | None]:
        """Perplexity of each tokenised document, in one vectorised pass over the batch."""
        get, unk = self._ids.get, self._unk
        lens = [len(d) for d in docs]
        flat = [t for d in docs for t in d]
        w = np.array(list(map(get, flat, itertools.repeat(unk, len(flat)))), dtype=np.int64)
        out: list[float | None] = [None] * len(docs)
        if len(w) < 2:
            return out
        v1 = unk + 1
        prev, cur = w[:-1], w[1:]
        q = prev * v1 + cur
        if len(self._keys):
            pos = np.minimum(np.searchsorted(self._keys, q), len(self._keys) - 1)
            c_big = np.where(self._keys[pos] == q, self._counts[pos], 0.0)
        else:
            c_big = np.zeros(len(q))
        c_ctx = self._ctx[prev]
        p_uni = self._p_uni[cur]
        safe = np.maximum(c_ctx, 1.0)
        p = np.where(c_ctx > 0, np.maximum(c_big - self.DISCOUNT, 0.0) / safe
                     + self.DISCOUNT * self._followers[prev] / safe * p_uni, p_uni)
        # Position i of lp scores word i+1 given word i; the first word of each document is
        # scored by the unigram instead (its predecessor belongs to the previous document).
        lp = np.log(p)
        starts = np.cumsum([0] + lens[:-1])
        first = [s for s, n in zip(starts, lens) if n]
        lp[np.array(first[1:], dtype=np.int64) - 1] = np.log(self._p_uni[w[np.array(first[1:], dtype=np.int64)]])
        full = np.concatenate([[math.log(self._p_uni[w[0]])], lp])
        sums = np.add.reduceat(full, np.array(first, dtype=np.int64)) if first else np.zeros(0)
        k = 0
        for i, n in enumerate(lens):
            if n:
                if n >= 2:
                    out[i] = float(math.exp(-sums[k] / n))
                k += 1
        return out


class ModelQualityScorer:
    """Scores texts with the trained (or loaded) models.

    Args:
        cfg: the stage config.
        models: ``{"classifier": bytes | None, "lm": bytes | None}`` from training.
    """

    def __init__(self, cfg: ModelQualityConfig, models: Mapping[str, Any] | None = None) -> None:
        models = models or {}
        self.cfg = cfg
        self._ft = None
        # A trained model is missing only when there was nothing to train on (no text input).
        if cfg.classifier == "path" or (cfg.classifier == "train" and models.get("classifier") is not None):
            self._ft = _load_fasttext(models.get("classifier"), cfg.classifier_path)
        self._lm: Any = None
        self._kenlm = None
        if cfg.perplexity == "ngram" and models.get("lm") is not None:
            self._lm = BigramLM.from_bytes(models["lm"])
        elif cfg.perplexity == "kenlm":
            try:
                import kenlm
            except ImportError as exc:
                raise ConfigError("model_quality.perplexity", "kenlm", "the kenlm package installed",
                                  "pip install kenlm, or perplexity: ngram") from exc
            if not os.path.isfile(cfg.kenlm_path):
                raise ConfigError("model_quality.kenlm_path", cfg.kenlm_path, "an existing KenLM model file")
            self._kenlm = kenlm.Model(cfg.kenlm_path)

    def score(self, texts: Sequence[str]) -> list[tuple[float | None, float | None]]:
        """(classifier score, perplexity) per text."""
        toks = [_WORD.findall(t[: self.cfg.max_chars].lower()) for t in texts]
        scores: list[float | None] = [None] * len(toks)
        if self._ft is not None:
            labels, probs = ft_predict(self._ft, [" ".join(t) for t in toks], k=2)
            scores = [float(min(1.0, dict(zip(ls, ps)).get("__label__hq", 0.0))) for ls, ps in zip(labels, probs)]
        ppl: list[float | None]
        if self._lm is not None:
            ppl = self._lm.perplexities(toks)
        elif self._kenlm is not None:
            ppl = [float(self._kenlm.perplexity(" ".join(t))) if t else None for t in toks]
        else:
            ppl = [None] * len(toks)
        return list(zip(scores, ppl))


def hist_quantile(hist: Mapping[str, Any], q: float) -> float:
    """The bin edge below which about ``q`` of a :class:`HistogramFn` result's values lie."""
    n = hist.get("n") or 0
    edges, counts = hist["edges"], hist["counts"]
    if n == 0:
        return edges[0]
    target = q * n
    cum = 0
    for i, c in enumerate(counts):
        if cum + c >= target:
            return edges[i + 1] if (cum + c - target) <= (target - cum) else edges[i]
        cum += c
    return edges[-1]


def judge(score: float | None, ppl: float | None, min_score: float | None, max_ppl: float | None) -> Verdict:
    """Drop below the score threshold or above the perplexity threshold (``None``: no rule)."""
    if min_score is not None and score is not None and score < min_score:
        return drop("model_quality_low_score")
    if max_ppl is not None and ppl is not None and ppl > max_ppl:
        return drop("model_quality_high_perplexity")
    return KEEP
