"""The shape every model-scoring stage shares: RunInference, attach the scores, keep by a
threshold or by an exact kept fraction (a global cut), and the stats of what was scored.

Used by ``classifier`` and ``image_text_score``; a stage supplies its model handler, the step
that attaches a result to each record (an :class:`InferenceResultFn`, which the audio model
stages use too), a selection key and a verdict.
"""

from __future__ import annotations

from typing import Any, Callable

import apache_beam as beam
import pyarrow as pa

from winnow.pipeline.stages.base import DEAD, REJECTED, TIMING, Emit, StageFn, StageOutputs, explode, run_step
from winnow.pipeline.stages.domain import _ExactCut

__all__ = ["InferenceResultFn", "VerdictFn", "score_and_select"]


class InferenceResultFn(StageFn):
    """A guarded step over RunInference's results.

    Each element is a ``PredictionResult`` whose example is a Records batch and whose
    inference is ``(values, cpu_seconds)``, one value per record. ``compute`` hands each
    record its value; :meth:`failure` turns a value that reports an error into the exception
    that dead-letters that record alone. The model's time counts toward the stage.
    """

    def failure(self, value: Any) -> Exception | None:
        return None

    def process(self, result, *side):  # no annotations: Beam would read them as type hints
        recs = result.example
        values, cpu = result.inference
        self._by_row = {id(r): v for r, v in zip(recs.rows, values)}
        yield from super().process(recs, *side)
        self._by_row = {}
        yield beam.pvalue.TaggedOutput(TIMING, (self.stage, (cpu, 0, 0, 0, 0)))

    def compute(self, rows: list[dict], *side: Any) -> list[Any]:
        out = []
        for r in rows:
            v = self._by_row.get(id(r))
            err = self.failure(v)
            if err is not None:
                raise err
            out.append(v)
        return out


class VerdictFn(StageFn):
    """Keep or reject each scored record by ``verdict(record, cfg, cut)`` (``cut``: the global
    cut when the stage keeps a fraction, else None)."""

    def __init__(self, stage: str, fields: tuple[pa.Field, ...], verdict: Callable[[dict, Any, Any], Any],
                 cfg: Any) -> None:
        super().__init__(stage, first=False, fields=fields)
        self._verdict, self._cfg = verdict, cfg

    def compute(self, rows: list[dict], cut: list) -> list[Any]:
        return [self._verdict(r, self._cfg, cut[0] if cut else None) for r in rows]

    def route(self, row: dict, verdict: Any, out: Emit) -> None:
        if verdict.keep:
            out.keep(row)
        else:
            out.reject(row, verdict.reason)


def score_and_select(records: beam.PCollection, handler: Any, score: StageFn, select: StageFn,
                     key: Callable[[dict], Any], keep_fraction: float | None,
                     stats: Callable[[beam.PCollection, beam.PCollection, beam.PCollection], beam.PCollection]
                     ) -> StageOutputs:
    """``records`` through RunInference(``handler``), ``score`` (attaches the results) and
    ``select`` (a :class:`VerdictFn`); ``key(record)`` ranks a scored record for the exact
    ``keep_fraction`` cut; ``stats(scored rows, keys, cut)`` gives the stage's stats."""
    # Beam's inference module imports torch when it is installed (about 200 MB): imported here,
    # only by pipelines that build a model stage
    from apache_beam.ml.inference.base import RunInference

    inferred = (records
                | "NonEmpty" >> beam.Filter(lambda b: len(b.rows) > 0)
                | "Infer" >> RunInference(handler))
    scored = run_step(inferred, "Score", score)
    keys = scored.kept | "Key" >> beam.FlatMap(lambda b: [k for r in b.rows if (k := key(r)) is not None])
    if keep_fraction is not None:
        cut = keys | "Cut" >> _ExactCut(keep_fraction)
    else:
        cut = records.pipeline | "NoCut" >> beam.Create([])
    selected = run_step(scored.kept, "Select", select, beam.pvalue.AsList(cut))
    return StageOutputs(kept=selected.kept, rejected=selected[REJECTED],
                        dead=(scored[DEAD], selected[DEAD]) | "Dead" >> beam.Flatten(),
                        stats=stats(explode(scored.kept, "ScoredRows"), keys, cut),
                        timing=(scored[TIMING], selected[TIMING]))
