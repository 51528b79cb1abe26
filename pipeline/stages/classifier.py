"""``classifier``: score every text with a Hugging Face sequence-classification model through
Beam's RunInference, then keep by threshold or by an exact kept fraction.

Graph:

1. ``Infer``: ``RunInference`` with :class:`BatchesModelHandler`. Its elements are whole
   :class:`~winnow.pipeline.batch.Records` batches; ``batch_elements_kwargs`` groups them up to
   about ``records_per_call`` records (never fewer than ``batch_size`` when the input allows), and
   ``run_inference`` scores the texts of a group (:class:`~winnow.filters.classifier.ClassifierModel`:
   sorted by length, model batches of ``batch_size``, on CUDA when available). RunInference loads
   the model once per worker process and shares it between the threads (Beam's ``Shared``).
   Records never leave their batch and nothing is shuffled.
2. ``Score`` (a :class:`StageFn`): attaches the score column. A text the tokenizer failed on
   carries its error from step 1; ``compute`` raises for it, so the contract dead-letters that
   record alone. The model's CPU time from step 1 joins this stage's timing.
3. For ``keep_fraction``: the exact global cut over ``(-score, hash(id, source))`` keys, by the
   ``domain`` stage's radix select (:class:`winnow.pipeline.stages.domain._ExactCut`).
4. ``Select`` (a :class:`StageFn`): keep, or reject as ``classifier_below_threshold``.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from winnow.filters.classifier import (
    REASON_BELOW,
    ClassifierConfig,
    ClassifierError,
    classifier_fields,
    classifier_verdict,
    selection_key,
)
from winnow.pipeline.batch import Records
from winnow.pipeline.stages.base import DEAD, REJECTED, TIMING, Emit, StageFn, StageOutputs, explode, run_step
from winnow.pipeline.stages.domain import _ExactCut
from winnow.pipeline.stages.spec import BuildContext, StageDecl
from winnow.pipeline.stages.stats import HistogramFn, linear_edges

__all__ = ["DECLARATION", "ClassifierStage", "NAME"]

NAME = "classifier"


class _ScoreFn(StageFn):
    """Attach the score from RunInference to every record; a failed text raises (dead letter)."""

    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__(NAME, last=False)
        self._cfg = cfg

    def process(self, result, *side):  # no annotations: Beam would read them as type hints
        recs: Records = result.example
        values, cpu = result.inference
        self._by_row = {id(r): v for r, v in zip(recs.rows, values)}
        yield from super().process(recs, *side)
        self._by_row = {}
        # the model's time (RunInference's thread) counts toward this stage
        yield beam.pvalue.TaggedOutput(TIMING, (NAME, (cpu, 0, 0, 0, 0)))

    def compute(self, rows: list[dict], *side: Any) -> list[Any]:
        out = []
        for r in rows:
            v = self._by_row.get(id(r))
            if isinstance(v, str):
                raise ClassifierError(v)
            out.append(v)
        return out

    def route(self, row: dict, score: Any, out: Emit) -> None:
        row = dict(row)
        row[self._cfg.column] = score
        if score is None:
            out.count("not_scored")
        out.keep(row)


class _SelectFn(StageFn):
    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__(NAME, first=False, fields=classifier_fields(cfg))
        self._cfg = cfg

    def compute(self, rows: list[dict], cut: list) -> list[Any]:
        return [classifier_verdict(r, self._cfg, cut[0] if cut else None) for r in rows]

    def route(self, row: dict, verdict: Any, out: Emit) -> None:
        if verdict.keep:
            out.keep(row)
        else:
            out.reject(row, verdict.reason)


class ClassifierStage(beam.PTransform):
    """Score records with a local sequence-classification model and keep by threshold or fraction."""

    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__(label=NAME)
        self._cfg = cfg

    def expand(self, records: beam.PCollection) -> StageOutputs:
        cfg = self._cfg
        p = records.pipeline
        from winnow.pipeline.stages.classifier_handler import BatchesModelHandler

        inferred = (records
                    | "NonEmpty" >> beam.Filter(lambda b: len(b.rows) > 0)
                    | "Infer" >> _run_inference()(BatchesModelHandler(cfg)))
        scored = run_step(inferred, "Score", _ScoreFn(cfg))
        keys = scored.kept | "Key" >> beam.FlatMap(
            lambda b: [k for r in b.rows if (k := selection_key(r, cfg)) is not None])
        if cfg.keep_fraction is not None:
            cut = keys | "Cut" >> _ExactCut(cfg.keep_fraction)
        else:
            cut = p | "NoCut" >> beam.Create([])
        selected = run_step(scored.kept, "Select", _SelectFn(cfg), beam.pvalue.AsList(cut))
        stats = _stats(cfg, explode(scored.kept, "ScoredRows"), keys, cut)
        return StageOutputs(kept=selected.kept, rejected=selected[REJECTED],
                            dead=(scored[DEAD], selected[DEAD]) | "Dead" >> beam.Flatten(), stats=stats,
                            timing=(scored[TIMING], selected[TIMING]))


def _stats(cfg: ClassifierConfig, scored: beam.PCollection, keys: beam.PCollection,
           cut: beam.PCollection) -> beam.PCollection:
    column = cfg.column
    hist = (scored
            | "ScoreValue" >> beam.FlatMap(lambda r: [r[column]] if r.get(column) is not None else [])
            | "ScoreHist" >> beam.CombineGlobally(HistogramFn(linear_edges(0.0, 1.0, 50)))
            | "ScoreHistWrap" >> beam.Map(lambda h: {"score_hist": h}))
    n_scored = keys | "CountScored" >> beam.combiners.Count.Globally()

    def summary(n: int, cut: list) -> dict:
        threshold = cfg.cut_threshold
        if threshold is None and cut:
            threshold = -cut[0][0]
        return {"selection": {"model_dir": cfg.model_dir, "label": cfg.label, "column": column,
                              "keep_fraction": cfg.keep_fraction, "threshold": threshold, "scored": n}}

    sel = n_scored | "Summary" >> beam.Map(summary, cut=beam.pvalue.AsList(cut))
    return (hist, sel) | "ClassifierStats" >> beam.Flatten()


def _build(cfg: ClassifierConfig, ctx: BuildContext) -> beam.PTransform:
    return ClassifierStage(cfg)


DECLARATION = StageDecl(NAME, ClassifierConfig, _build, classifier_fields, (REASON_BELOW,))


def _run_inference() -> Any:
    # Beam's inference module imports torch when it is installed (about 200 MB): only model
    # stages that are built pay for it, never a run that does not use one.
    from apache_beam.ml.inference.base import RunInference

    return RunInference


def __getattr__(name: str) -> Any:
    if name == "BatchesModelHandler":
        from winnow.pipeline.stages.classifier_handler import BatchesModelHandler

        return BatchesModelHandler
    raise AttributeError(name)
