"""RunInference's model handler of the ``classifier`` stage.

Kept apart from the stage module: Beam's inference module imports torch when it is installed,
so only a pipeline that builds this stage imports it.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from winnow.filters.classifier import ClassifierConfig, ClassifierError, ClassifierModel, is_scored

NAME = "classifier"


def _scored_count(batch: Any) -> int:
    """BatchElements' weight of a Records batch: its record count (at least 1)."""
    return max(1, len(batch.rows))

__all__ = ["BatchesModelHandler"]

class BatchesModelHandler(ModelHandler):
    """RunInference's handler over whole Records batches.

    ``run_inference`` gets a list of Records and yields, per Records, a ``PredictionResult``
    whose inference is ``(results, cpu_seconds)``: one score, ``None`` (not scored) or error
    text per record, and the thread CPU time of scoring that batch.
    """

    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__(min_batch_size=min(cfg.batch_size, cfg.records_per_call),
                         max_batch_size=max(cfg.batch_size, cfg.records_per_call),
                         element_size_fn=_scored_count)
        self._cfg = cfg

    def load_model(self) -> ClassifierModel:
        return ClassifierModel(self._cfg)

    def run_inference(self, batch: Sequence[Any], model: ClassifierModel,
                      inference_args: dict | None = None) -> Iterable[PredictionResult]:
        cfg = self._cfg
        t0 = time.thread_time()
        todo = [(b, i) for b, recs in enumerate(batch) for i, r in enumerate(recs.rows) if is_scored(r, cfg)]
        scores = model.score([batch[b].rows[i]["text"] for b, i in todo]) if todo else []
        results: list[list[Any]] = [[None] * len(recs.rows) for recs in batch]
        for (b, i), s in zip(todo, scores):
            results[b][i] = str(s) if isinstance(s, ClassifierError) else s
        cpu = (time.thread_time() - t0) / max(1, len(batch))
        return [PredictionResult(recs, (res, cpu)) for recs, res in zip(batch, results)]

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        return sum(len((r.get("text") or "").encode("utf-8", "surrogatepass"))
                   for recs in batch for r in recs.rows if isinstance(r.get("text"), str))

    def get_metrics_namespace(self) -> str:
        return f"winnow:{NAME}/run_inference"
