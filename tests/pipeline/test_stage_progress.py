"""Every stage step reports its batches to the live progress (the hook in StageFn)."""

import apache_beam as beam

from tests.pipeline.batches import create_batches
from winnow.filters.base import KEEP, RecordFilter, drop
from winnow.monitoring import progress
from winnow.pipeline.stages.base import RecordStage


class _Odd(RecordFilter):
    name = "odd"
    reasons = ("odd_even",)

    def verdict(self, record):
        return KEEP if int(record["id"]) % 2 else drop("odd_even")


def test_stage_batches_reach_the_progress_totals(tmp_path, monkeypatch):
    monkeypatch.setenv(progress.ENV, str(tmp_path))
    recs = [{"id": str(i), "source": "s", "text": "x" * 10} for i in range(30)]
    with beam.Pipeline(runner="FnApiRunner") as p:
        _ = create_batches(p, recs, size=7) | RecordStage("odd", _Odd)
    progress.flush()
    totals = progress.read_totals(str(tmp_path))
    records_in, kept, rejected, dead = totals["odd"][:4]
    assert (records_in, kept, rejected, dead) == (30, 15, 15, 0)
