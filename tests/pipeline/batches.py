"""Test helpers: records in and out of the batch PCollections stages take and give."""

from __future__ import annotations

import apache_beam as beam

from winnow.pipeline.batch import Records


def create_batches(p, recs, size: int = 64, label: str = "CreateBatches"):
    """``recs`` as a PCollection of :class:`Records` of at most ``size`` records."""
    recs = list(recs)
    return p | label >> beam.Create([Records(recs[i:i + size]) for i in range(0, len(recs), size)], reshuffle=False)


def rows(pcoll, label: str = "Rows"):
    """The records of a batch PCollection, one by one."""
    return pcoll | label >> beam.FlatMap(lambda b: b.rows)
