"""Time a model stage end to end through Beam (shared by the GPU model benchmarks).

The batches are pickled to one file that the pipeline reads in its first step (a large
``beam.Create`` would be encoded into the pipeline itself); the stage's outputs are collected
as ``{key: column}`` for kept and rejected records, with the dead-letter count, the wall time,
and the model-load and inference time that Beam's RunInference reported.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import time
from typing import Any


def _read_batches(path: str):
    with open(path, "rb") as f:
        yield from pickle.load(f)


def run_model_stage(stage: Any, batches: list, key: str, column: str, namespace: str) -> dict:
    """Run ``stage`` (a PTransform over record batches) on FnApiRunner.

    Returns ``{"wall_s", "load_s", "infer_s", "dead", "values": {record[key]: record[column]}}``;
    ``namespace`` is the stage's RunInference metrics namespace (``winnow:<stage>/run_inference``).
    """
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter

    tmp = tempfile.mkdtemp()
    source, sink = os.path.join(tmp, "batches.pkl"), os.path.join(tmp, "values.json")
    with open(source, "wb") as f:
        pickle.dump(batches, f, protocol=5)

    class Grab(beam.DoFn):
        def process(self, b):
            yield from ((r[key], r[column]) for r in b.rows)

    def write(items, dead):
        with open(sink, "w") as f:
            json.dump({"values": dict(items), "dead": sum(dead)}, f)

    t = time.perf_counter()
    p = beam.Pipeline(runner="FnApiRunner")
    out = p | beam.Create([source], reshuffle=False) | "Read" >> beam.FlatMap(_read_batches) | stage
    got = (out.kept, out.rejected) | beam.Flatten() | beam.ParDo(Grab()) | beam.combiners.ToList()
    dead = out.dead | beam.Map(lambda b: len(b.rows))
    got | beam.Map(write, dead=beam.pvalue.AsList(dead))
    result = p.run()
    result.wait_until_finish()
    wall = time.perf_counter() - t
    dist: dict[str, float] = {}
    for d in result.metrics().query(MetricsFilter().with_namespace(namespace))["distributions"]:
        v = d.committed or d.attempted
        dist[d.key.metric.name] = dist.get(d.key.metric.name, 0) + (v.sum if v else 0)
    with open(sink) as f:
        res = json.load(f)
    return {"wall_s": wall, "load_s": dist.get("load_model_latency_milli_secs", 0.0) / 1000.0,
            "infer_s": dist.get("inference_batch_latency_micro_secs", 0.0) / 1e6, "dead": res["dead"],
            "values": res["values"]}
