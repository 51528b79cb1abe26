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
from winnow.pipeline.stages.base import Emit, StageOutputs
from winnow.pipeline.stages.scored import InferenceResultFn, VerdictFn, score_and_select
from winnow.pipeline.stages.spec import BuildContext, StageDecl
from winnow.pipeline.stages.stats import HistogramFn, linear_edges

__all__ = ["DECLARATION", "ClassifierStage", "NAME"]

NAME = "classifier"


class _ScoreFn(InferenceResultFn):
    """Attach the score from RunInference to every record; a failed text raises (dead letter)."""

    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__(NAME, last=False)
        self._cfg = cfg

    def failure(self, value: Any) -> Exception | None:
        return ClassifierError(value) if isinstance(value, str) else None

    def route(self, row: dict, score: Any, out: Emit) -> None:
        row = dict(row)
        row[self._cfg.column] = score
        if score is None:
            out.count("not_scored")
        out.keep(row)


class ClassifierStage(beam.PTransform):
    """Score records with a local sequence-classification model and keep by threshold or fraction."""

    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__(label=NAME)
        self._cfg = cfg

    def expand(self, records: beam.PCollection) -> StageOutputs:
        from winnow.pipeline.stages.classifier_handler import BatchesModelHandler

        cfg = self._cfg
        select = VerdictFn(NAME, classifier_fields(cfg), classifier_verdict, cfg)
        return score_and_select(records, BatchesModelHandler(cfg), _ScoreFn(cfg), select,
                                lambda r: selection_key(r, cfg), cfg.keep_fraction,
                                lambda rows, keys, cut: _stats(cfg, rows, keys, cut))


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
