"""RunInference's model handler of the audio model stages (``audio_mos``, ``audio_asr``).

Kept apart from the stage module: Beam's inference module imports torch when it is installed,
so only a pipeline that builds one of these stages imports it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

__all__ = ["AudioModelHandler"]


def _count(batch: Any) -> int:
    return max(1, len(batch.rows))


def _err(v: Any) -> Any:
    return ("error", f"{type(v).__name__}: {v}") if isinstance(v, Exception) else v


class AudioModelHandler(ModelHandler):
    """RunInference's handler over whole Records batches for an audio model.

    Args:
        stage: the stage name (metrics namespace).
        load: ``load() -> model``, where ``model.infer(rows)`` gives one result per row
            (a value, None for not applicable, or an exception for a failed clip).
        records_per_call: records per inference call (about).

    ``run_inference`` yields, per Records, a ``PredictionResult`` whose inference is
    ``(results, seconds)`` with each failed clip's error as text; ``seconds`` is the wall time
    of the model call (its own threads included), shared out over the batches, and joins the
    stage's timing.
    """

    def __init__(self, stage: str, load: Callable[[], Any], records_per_call: int) -> None:
        super().__init__(min_batch_size=1, max_batch_size=records_per_call, element_size_fn=_count)
        self._stage, self._load = stage, load

    def load_model(self) -> Any:
        return self._load()

    def run_inference(self, batch: Sequence[Any], model: Any,
                      inference_args: dict | None = None) -> Iterable[PredictionResult]:
        # wall time: CTranslate2 and onnxruntime compute on threads of their own, which the
        # calling thread's CPU clock does not see
        t0 = time.perf_counter()
        rows = [r for recs in batch for r in recs.rows]
        flat = model.infer(rows)
        out, i = [], 0
        cpu = (time.perf_counter() - t0) / max(1, len(batch))
        for recs in batch:
            res = [_err(v) for v in flat[i:i + len(recs.rows)]]
            i += len(recs.rows)
            out.append(PredictionResult(recs, (res, cpu)))
        return out

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        return sum(len(r.get("audio") or b"") for recs in batch for r in recs.rows)

    def get_metrics_namespace(self) -> str:
        return f"winnow:{self._stage}/run_inference"
