"""RunInference's model handler of the ``image_text_score`` stage.

Kept apart from the stage module: Beam's inference module imports torch when it is installed,
so only a pipeline that builds this stage imports it.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from winnow.filters.clip import ClipConfig, ClipError, ClipScorer, is_scored

__all__ = ["PairsModelHandler"]

NAME = "image_text_score"


def _record_count(batch: Any) -> int:
    return max(1, len(batch.rows))


class PairsModelHandler(ModelHandler):
    """RunInference's handler over whole Records batches of image-text pairs.

    ``run_inference`` gets a list of Records and returns, per Records, a ``PredictionResult``
    whose inference is ``(results, cpu_seconds)``: per record ``(score, cosine)``, ``None``
    (not scored) or an error text.
    """

    def __init__(self, cfg: ClipConfig) -> None:
        super().__init__(min_batch_size=min(cfg.batch_size, cfg.records_per_call),
                         max_batch_size=max(cfg.batch_size, cfg.records_per_call),
                         element_size_fn=_record_count)
        self._cfg = cfg

    def load_model(self) -> ClipScorer:
        return ClipScorer(self._cfg)

    def run_inference(self, batch: Sequence[Any], model: ClipScorer,
                      inference_args: dict | None = None) -> Iterable[PredictionResult]:
        cfg = self._cfg
        t0 = time.thread_time()
        todo = [(b, i) for b, recs in enumerate(batch) for i, r in enumerate(recs.rows) if is_scored(r, cfg)]
        scores = model.score([(bytes(batch[b].rows[i]["image"]), batch[b].rows[i]["text"]) for b, i in todo]) if todo else []
        results: list[list[Any]] = [[None] * len(recs.rows) for recs in batch]
        for (b, i), s in zip(todo, scores):
            results[b][i] = str(s) if isinstance(s, ClipError) else s
        cpu = (time.thread_time() - t0) / max(1, len(batch))
        return [PredictionResult(recs, (res, cpu)) for recs, res in zip(batch, results)]

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        return sum(len(r["image"]) for recs in batch for r in recs.rows if r.get("image") is not None)

    def get_metrics_namespace(self) -> str:
        return f"winnow:{NAME}/run_inference"
