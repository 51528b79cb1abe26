"""``model_quality``: train a quality classifier and an n-gram model inside the pipeline, score
every record with them, and drop by absolute thresholds or by kept fraction.

The graph:

1. A bounded background sample of input texts: ``Top.Of(background_sample)`` by a hash of
   (id, source), so the sample and the trained models are the same on every runner.
2. ``Train``: one DoFn call trains the fastText classifier (reference vs sample) and the bigram
   model (reference), and emits their bytes: one element, the models side input.
3. ``Score``: every record gets ``model_quality_score`` and ``model_quality_perplexity``; the
   models load once per worker on first use (a DoFn cannot read side inputs in ``setup``).
4. Thresholds: absolute ones from the config, or for a kept fraction the matching quantile of
   a global fine-grained histogram (:class:`HistogramFn`, exact and order-independent).
5. ``Judge``: keep or reject with ``model_quality_low_score`` / ``model_quality_high_perplexity``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import apache_beam as beam
import xxhash

from winnow.filters.model_quality import (
    FIELDS,
    ModelQualityConfig,
    ModelQualityScorer,
    BigramLM,
    hist_quantile,
    judge,
    load_reference,
    train_classifier,
)
from winnow.pipeline.stages.base import DEAD, REJECTED, TIMING, Emit, StageFn, StageOutputs, run_step
from winnow.pipeline.stages.stats import HistogramFn, linear_edges
from winnow.filters.model_quality import REASONS
from winnow.pipeline.stages.filter_report import model_quality_section
from winnow.pipeline.stages.spec import BuildContext, StageDecl

__all__ = ["DECLARATION", "ModelQuality", "FIELDS"]

NAME = "model_quality"
_SCORE_EDGES = linear_edges(0.0, 1.0, 2000)
_LOGPPL_EDGES = linear_edges(0.0, 8.0, 2000)  # log10 perplexity


def _coarse(h: dict, factor: int = 50) -> dict:
    """A fine histogram merged into fewer bins for the report."""
    e, c = h["edges"], h["counts"]
    return {**h, "edges": e[::factor] + ([e[-1]] if (len(e) - 1) % factor else []),
            "counts": [sum(c[i:i + factor]) for i in range(0, len(c), factor)]}


class _TrainFn(beam.DoFn):
    def __init__(self, cfg: ModelQualityConfig) -> None:
        self._cfg = cfg

    def process(self, sample: list) -> Iterable[dict]:
        cfg = self._cfg
        texts = [t for _, t in sorted(sample)]
        reference = load_reference(cfg.reference)
        out: dict[str, Any] = {"classifier": None, "lm": None, "reference_docs": len(reference),
                               "background_docs": len(texts)}
        if cfg.classifier == "train" and texts:
            out["classifier"] = train_classifier(reference, texts, cfg)
        if cfg.classifier == "train" and out["classifier"] is None:
            out["untrained"] = (f"no classifier: {len(texts)} background texts left after removing the "
                                "reference's own documents; scores are null and no record was judged by them")
        if cfg.perplexity == "ngram":
            out["lm"] = BigramLM.train(reference).to_bytes()
        out["key"] = xxhash.xxh3_64_hexdigest((out["classifier"] or b"") + (out["lm"] or b""))
        yield out


class _ScoreFn(StageFn):
    def __init__(self, cfg: ModelQualityConfig) -> None:
        super().__init__(NAME, last=False, chunk=128)
        self._cfg = cfg
        self._applies = frozenset(cfg.modalities)

    def start(self) -> None:
        self._scorer: ModelQualityScorer | None = None
        self._key: str | None = None

    def _todo(self, r: dict) -> bool:
        return r.get("text") is not None and r.get("modality", "text") in self._applies

    def compute(self, rows: list[dict], models: dict) -> list[Any]:
        if self._key != models["key"]:
            self._scorer = ModelQualityScorer(self._cfg, models)
            self._key = models["key"]
        todo = [r["text"] for r in rows if self._todo(r)]
        scores = iter(self._scorer.score(todo)) if todo else iter(())
        return [next(scores) if self._todo(r) else (None, None) for r in rows]

    def route(self, row: dict, result: Any, out: Emit) -> None:
        row = dict(row)
        row["model_quality_score"], row["model_quality_perplexity"] = result
        out.keep(row)


class _JudgeFn(StageFn):
    def __init__(self) -> None:
        super().__init__(NAME, first=False, fields=FIELDS)

    def compute(self, rows: list[dict], thresholds: dict) -> list[Any]:
        return [judge(r.get("model_quality_score"), r.get("model_quality_perplexity"),
                      thresholds.get("min_score"), thresholds.get("max_perplexity")) for r in rows]

    def route(self, row: dict, verdict: Any, out: Emit) -> None:
        if verdict.keep:
            out.keep(row)
        else:
            out.reject(row, verdict.reason)


def _values(column: str, positive: bool = False) -> Any:
    def values(batch: Any) -> list:
        vs = (r.get(column) for r in batch.rows)
        return [v for v in vs if v is not None and (not positive or v > 0)]

    return values


def _thresholds(cfg: ModelQualityConfig, score_hist: dict, ppl_hist: dict) -> dict:
    out: dict[str, Any] = {"min_score": cfg.min_score, "max_perplexity": cfg.max_perplexity}
    if cfg.keep_fraction is not None and score_hist["n"]:
        out["min_score"] = hist_quantile(score_hist, 1.0 - cfg.keep_fraction) if cfg.keep_fraction < 1 else None
    if cfg.perplexity_keep_fraction is not None and ppl_hist["n"]:
        q = hist_quantile(ppl_hist, cfg.perplexity_keep_fraction)
        out["max_perplexity"] = 10 ** q if cfg.perplexity_keep_fraction < 1 else None
    return out


class ModelQuality(beam.PTransform):
    """The ``model_quality`` stage (see the module docstring)."""

    def __init__(self, cfg: ModelQualityConfig | None = None) -> None:
        super().__init__(label=NAME)
        self._cfg = cfg or ModelQualityConfig()

    def expand(self, records: beam.PCollection) -> StageOutputs:
        cfg = self._cfg
        p = records.pipeline
        mods = frozenset(cfg.modalities)
        sample = (records
                  | "Texts" >> beam.FlatMap(lambda b: [r for r in b.rows if r.get("text") is not None
                                                        and r.get("modality", "text") in mods])
                  | "Rank" >> beam.Map(lambda r: (xxhash.xxh3_64_intdigest(
                      f"{r['id']}\x00{r['source']}".encode("utf-8", "replace")), r["text"][: cfg.max_chars]))
                  | "Sample" >> beam.combiners.Top.Of(cfg.background_sample, key=lambda e: e[0]))
        models = sample | "Train" >> beam.ParDo(_TrainFn(cfg))
        scored = run_step(records, "Score", _ScoreFn(cfg), beam.pvalue.AsSingleton(models))
        good = scored.kept
        score_hist = (good | "ScoreVal" >> beam.FlatMap(_values("model_quality_score"))
                      | "ScoreHist" >> beam.CombineGlobally(HistogramFn(_SCORE_EDGES)))
        ppl_hist = (good | "PplVal" >> beam.FlatMap(_values("model_quality_perplexity", positive=True))
                    | "PplLog" >> beam.Map(lambda v: math.log10(v))
                    | "PplHist" >> beam.CombineGlobally(HistogramFn(_LOGPPL_EDGES)))
        thresholds = (p | "Seed" >> beam.Create([None])
                      | "Thresholds" >> beam.Map(lambda _, s, q: _thresholds(cfg, s, q),
                                                 beam.pvalue.AsSingleton(score_hist), beam.pvalue.AsSingleton(ppl_hist)))
        judged = run_step(good, "Judge", _JudgeFn(), beam.pvalue.AsSingleton(thresholds))
        info = models | "Info" >> beam.Map(lambda m: {"training": {
            "reference_docs": m["reference_docs"], "background_docs": m["background_docs"],
            "classifier_bytes": len(m["classifier"] or b""), "lm_bytes": len(m["lm"] or b""),
            **({"untrained": m["untrained"]} if m.get("untrained") else {})}})
        stats = (
            (p | "StatSeed" >> beam.Create([None])
             | "Stats" >> beam.Map(lambda _, s, q, t: {
                 "score_hist": _coarse(s), "log10_perplexity_hist": _coarse(q), "thresholds": t,
                 "config": {"keep_fraction": cfg.keep_fraction, "perplexity_keep_fraction": cfg.perplexity_keep_fraction,
                            "classifier": cfg.classifier, "perplexity": cfg.perplexity, "reference": cfg.reference}},
                 beam.pvalue.AsSingleton(score_hist), beam.pvalue.AsSingleton(ppl_hist),
                 beam.pvalue.AsSingleton(thresholds)),
             info)
            | "StatsFlatten" >> beam.Flatten())
        return StageOutputs(kept=judged.kept, rejected=judged[REJECTED],
                            dead=(scored[DEAD], judged[DEAD]) | "Dead" >> beam.Flatten(), stats=stats,
                            timing=(scored[TIMING], judged[TIMING]))


def _build(cfg: ModelQualityConfig, ctx: BuildContext) -> beam.PTransform:
    return ModelQuality(cfg)


DECLARATION = StageDecl(NAME, ModelQualityConfig, _build, lambda cfg: FIELDS, REASONS, report=model_quality_section)
