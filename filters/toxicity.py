"""Toxicity scoring: alt-profanity-check by default (its model ships in the wheel), a local
fastText classifier or a local transformers classifier as options; drop above a threshold.

The default backend reads alt-profanity-check's own fitted vectorizer and calibrated linear
SVMs, and evaluates the same function as ``profanity_check.predict_prob`` without sklearn's
per-call overhead: tokens by the vectorizer's pattern, tf-idf over the known vocabulary, L2
norm, each fold's SVM decision through its sigmoid calibration, averaged (a test checks the
scores against the library's to 1e-9). Long texts are scored in windows of ``chunk_chars``
and the record takes the highest window score, so one abusive paragraph in a long document
is not averaged away.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping, MutableMapping, Sequence

import numpy as np
import pyarrow as pa

from winnow.errors import ConfigError
from winnow.filters.base import KEEP, RecordFilter, Verdict, drop, text_applies

__all__ = ["ToxicityConfig", "ToxicityFilter", "ProfanityScorer", "chunks"]


@dataclass(frozen=True)
class ToxicityConfig:
    """Options of the ``toxicity`` stage.

    Attributes:
        backend: ``profanity_check`` (default, no download), ``fasttext`` (a supervised model
            file at ``model_path``) or ``transformers`` (a local model directory at
            ``model_path``; needs the transformers package).
        model_path: model file or directory for the fasttext and transformers backends.
        toxic_label: the label whose probability is the score (fasttext: ``__label__toxic``;
            transformers: e.g. ``toxic``).
        threshold: records scoring above this are dropped (``toxicity_score``); 1 keeps all.
        chunk_chars: score windows of about this many characters and keep the highest (0: the
            whole text at once).
        max_windows: at most this many windows are scored per record (spread evenly over a
            longer text; 0: no cap), so one huge record costs bounded time.
        modalities: record modalities scored.
        languages: score only records whose ``lang`` (from the ``lang`` stage) is one of
            these; others keep a null score and pass. alt-profanity-check is English-only, so
            the default is ``[en]``; empty scores every record. Records without ``lang`` (no
            lang stage) are always scored.
    """

    backend: Literal["profanity_check", "fasttext", "transformers"] = "profanity_check"
    model_path: str = ""
    toxic_label: str = "__label__toxic"
    threshold: float = 0.8
    chunk_chars: int = 1000
    max_windows: int = 2000
    modalities: tuple[str, ...] = ("text", "image_text", "audio_text")
    languages: tuple[str, ...] = ("en",)

    def __post_init__(self) -> None:
        if self.backend not in ("profanity_check", "fasttext", "transformers"):
            raise ConfigError("toxicity.backend", self.backend, "profanity_check, fasttext or transformers")
        if self.backend != "profanity_check" and not self.model_path:
            raise ConfigError("toxicity.model_path", self.model_path,
                              f"a local model path for backend {self.backend}",
                              "set toxicity.model_path, or use backend: profanity_check (ships its model)")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError("toxicity.threshold", self.threshold, "a probability between 0 and 1")
        if self.chunk_chars < 0:
            raise ConfigError("toxicity.chunk_chars", self.chunk_chars, "an integer >= 0")
        if self.max_windows < 0:
            raise ConfigError("toxicity.max_windows", self.max_windows, "an integer >= 0 (0: no cap)")


_SENTENCE_GAP = re.compile(r"(?<=[.!?;:\n])\s+")


def _spans(text: str, size: int) -> list[tuple[int, int]]:
    """``(start, end)`` of each window: whole sentences packed up to ``size`` characters; a longer
    sentence is cut at a space in its second half (or hard at ``size``). One pass over the text:
    only offsets move, no text is copied, so the time is linear in the text's length."""
    spans: list[tuple[int, int]] = []
    cur_s = cur_e = -1  # the window being packed
    pos, n = 0, len(text)
    gaps = _SENTENCE_GAP.finditer(text)
    while pos < n:
        g = next(gaps, None)
        s_end, nxt = (g.start(), g.end()) if g else (n, n)
        a = pos
        while s_end - a > size:  # a sentence longer than a window: cut it
            cut = text.rfind(" ", a + size // 2, a + size)
            cut = cut if cut > a else a + size
            if cur_s >= 0:
                spans.append((cur_s, cur_e))
                cur_s = -1
            spans.append((a, cut))
            a = cut
            while a < s_end and text[a].isspace():
                a += 1
        if a < s_end:
            if cur_s >= 0 and s_end - cur_s > size:
                spans.append((cur_s, cur_e))
                cur_s = -1
            if cur_s < 0:
                cur_s = a
            cur_e = s_end
        pos = nxt
    if cur_s >= 0:
        spans.append((cur_s, cur_e))
    return spans


def chunks(text: str, size: int, max_windows: int = 0) -> list[str]:
    """``text`` as windows of whole sentences, each about ``size`` characters at most
    (``[text]`` when ``size`` is 0 or the text is short); a longer sentence is cut at spaces.

    Linear in the length of the text. With ``max_windows`` > 0 and more windows than that,
    ``max_windows`` of them spread evenly over the text (first and last included) are returned.
    """
    if size <= 0 or len(text) <= size:
        return [text]
    spans = _spans(text, size)
    if 0 < max_windows < len(spans):
        if max_windows == 1:
            spans = spans[:1]
        else:
            step = (len(spans) - 1) / (max_windows - 1)
            spans = [spans[round(k * step)] for k in range(max_windows)]
    return [text[a:b] for a, b in spans]


class ProfanityScorer:
    """alt-profanity-check's model, evaluated without sklearn's per-call overhead."""

    def __init__(self) -> None:
        try:
            from profanity_check import profanity_check as pc
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise ConfigError("toxicity.backend", "profanity_check", "alt-profanity-check installed",
                              "pip install alt-profanity-check") from exc
        vec, model = pc.vectorizer, pc.model
        if getattr(model, "method", "sigmoid") != "sigmoid" or vec.ngram_range != (1, 1):
            raise ConfigError("toxicity.backend", "profanity_check", "the sigmoid-calibrated unigram model of "
                              "alt-profanity-check 1.9", "pin alt-profanity-check==1.9.1")
        self._token = re.compile(vec.token_pattern)
        self._lower = bool(vec.lowercase)
        self._vocab: dict[str, int] = dict(vec.vocabulary_)
        self._idf = np.asarray(vec.idf_, dtype=np.float64)
        ws, bs, a, c = [], [], [], []
        for cc in model.calibrated_classifiers_:
            ws.append(np.asarray(cc.estimator.coef_, dtype=np.float64).ravel())
            bs.append(float(np.ravel(cc.estimator.intercept_)[0]))
            cal = cc.calibrators[0]
            a.append(float(cal.a_))
            c.append(float(cal.b_))
        self._w = np.stack(ws)  # (folds, vocab)
        self._b, self._a, self._c = np.array(bs), np.array(a), np.array(c)
        self._empty = float(np.mean(1.0 / (1.0 + np.exp(self._a * self._b + self._c))))

    def score(self, text: str) -> float:
        """The probability that ``text`` is offensive (as ``profanity_check.predict_prob``)."""
        counts = Counter(self._token.findall(text.lower() if self._lower else text))
        vocab = self._vocab
        idx, cnt = [], []
        for tok, n in counts.items():
            j = vocab.get(tok)
            if j is not None:
                idx.append(j)
                cnt.append(n)
        if not idx:
            return self._empty
        ix = np.array(idx)
        x = np.array(cnt, dtype=np.float64) * self._idf[ix]
        x /= np.sqrt(x @ x)
        d = self._w[:, ix] @ x + self._b
        return float(np.mean(1.0 / (1.0 + np.exp(self._a * d + self._c))))

    def score_many(self, texts: Sequence[str]) -> list[float]:
        return [self.score(t) for t in texts]


class _FastTextScorer:
    def __init__(self, path: str, label: str) -> None:
        from winnow.filters.fasttext_util import import_fasttext

        fasttext = import_fasttext("toxicity.backend")
        if not os.path.isfile(path):
            raise ConfigError("toxicity.model_path", path, "an existing fastText model file")
        self._model = fasttext.load_model(path)
        if label not in self._model.get_labels():
            raise ConfigError("toxicity.toxic_label", label, f"one of the model's labels {self._model.get_labels()}")
        self._label = label

    def score_many(self, texts: Sequence[str]) -> list[float]:
        from winnow.filters.fasttext_util import ft_predict

        labels, probs = ft_predict(self._model, [" ".join(t.split()) for t in texts], k=-1)
        return [float(dict(zip(ls, ps)).get(self._label, 0.0)) for ls, ps in zip(labels, probs)]


class _TransformersScorer:
    def __init__(self, path: str, label: str) -> None:
        try:
            from transformers import pipeline
        except ImportError as exc:
            raise ConfigError("toxicity.backend", "transformers", "the transformers package installed",
                              "pip install transformers, or use backend: profanity_check") from exc
        if not os.path.isdir(path):
            raise ConfigError("toxicity.model_path", path, "a local model directory (nothing is downloaded)")
        self._pipe = pipeline("text-classification", model=path, tokenizer=path, top_k=None,
                              truncation=True, model_kwargs={"local_files_only": True})
        self._label = label

    def score_many(self, texts: Sequence[str]) -> list[float]:
        out = []
        for scores in self._pipe(list(texts)):
            out.append(float(next((s["score"] for s in scores if s["label"] == self._label), 0.0)))
        return out


class ToxicityFilter(RecordFilter):
    """Annotate ``toxicity_score`` (0..1); drop records above the threshold.

    Reasons:
        ``toxicity_toxic``: the score is above ``threshold``.
    """

    name: ClassVar[str] = "toxicity"
    reasons: ClassVar[tuple[str, ...]] = ("toxicity_toxic",)
    FIELDS: ClassVar[tuple[pa.Field, ...]] = (pa.field("toxicity_score", pa.float64(), nullable=True),)

    def __init__(self, config: ToxicityConfig | None = None) -> None:
        self.config = c = config or ToxicityConfig()
        self._modalities = frozenset(c.modalities)
        self._languages = frozenset(c.languages)
        if c.backend == "profanity_check":
            self._scorer: Any = ProfanityScorer()
        elif c.backend == "fasttext":
            self._scorer = _FastTextScorer(c.model_path, c.toxic_label)
        else:
            self._scorer = _TransformersScorer(c.model_path, c.toxic_label)

    def fields(self) -> tuple[pa.Field, ...]:
        return self.FIELDS

    def _applies(self, record: Mapping[str, Any]) -> bool:
        return text_applies(record, self._modalities, self._languages)

    def scores(self, texts: Sequence[str]) -> list[float]:
        """The score of each text: the highest over its windows."""
        pieces, owner = [], []
        for i, t in enumerate(texts):
            for ch in chunks(t, self.config.chunk_chars, self.config.max_windows):
                pieces.append(ch)
                owner.append(i)
        out = [0.0] * len(texts)
        for i, s in zip(owner, self._scorer.score_many(pieces)):
            if s > out[i]:
                out[i] = s
        return out

    def process_batch(self, records: Sequence[MutableMapping[str, Any]]) -> list[tuple[MutableMapping[str, Any], Verdict]]:
        todo = [r for r in records if self._applies(r)]
        found = iter(self.scores([r["text"] for r in todo]))
        out = []
        for r in records:
            r["toxicity_score"] = next(found) if self._applies(r) else None
            out.append((r, self.verdict(r)))
        return out

    def process(self, record: MutableMapping[str, Any]) -> tuple[MutableMapping[str, Any], Verdict]:
        return self.process_batch([record])[0]

    def annotate(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        return {"toxicity_score": self.scores([record["text"]])[0] if self._applies(record) else None}

    def verdict(self, record: Mapping[str, Any]) -> Verdict:
        s = record.get("toxicity_score")
        return drop("toxicity_toxic") if s is not None and s > self.config.threshold else KEEP
