"""Stage transforms: routing to kept / rejected / dead letters, and Beam counters."""

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that, equal_to

from winnow.filters.base import KEEP, RecordFilter, drop
from winnow.filters.normalize import NormalizeConfig, Normalizer
from winnow.pipeline.records import make_record
from winnow.pipeline.stages.base import RecordStage
from winnow.pipeline.stages.exact_dedup import ExactDedup

from tests.pipeline.batches import create_batches, rows


def counters(result):
    out = {}
    for c in result.metrics().query(MetricsFilter().with_namespace("winnow"))["counters"]:
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + c.committed
    return out


class Picky(RecordFilter):
    """Drops 'bad', raises on 'boom', annotates a length column."""

    name = "picky"
    reasons = ("picky_bad",)

    def annotate(self, record):
        if record["text"] == "boom":
            raise ValueError("cannot judge boom")
        return {"picky_len": len(record["text"])}

    def verdict(self, record):
        return drop("picky_bad") if record["text"] == "bad" else KEEP


@pytest.mark.parametrize("batch_size", [1, 4])
def test_record_stage_routes_every_record(batch_size):
    texts = ["good", "bad", "boom", "fine", "bad"]
    recs = [make_record(source=f"t:{i}", text=t) for i, t in enumerate(texts)]
    p = beam.Pipeline(runner="FnApiRunner")
    out = create_batches(p, recs, size=3) | RecordStage("picky", Picky, batch_size=batch_size)
    assert_that(rows(out.kept, "rows1") | "k" >> beam.Map(lambda r: (r["text"], r["picky_len"])), equal_to([("good", 4), ("fine", 4)]), label="kept")
    assert_that(
        rows(out.rejected, "rows2") | "r" >> beam.Map(lambda r: (r["text"], r["reject_stage"], r["reject_reason"])),
        equal_to([("bad", "picky", "picky_bad")] * 2),
        label="rejected",
    )
    assert_that(
        rows(out.dead, "rows3") | "d" >> beam.Map(lambda r: (r["text"], r["reject_stage"], r["reject_reason"], "cannot judge boom" in r["error"])),
        equal_to([("boom", "picky", "dead_letter", True)]),
        label="dead",
    )
    result = p.run()
    result.wait_until_finish()
    c = counters(result)
    assert c["picky/kept"] == 2 and c["picky/picky_bad"] == 2 and c["picky/dead_letter"] == 1


def test_normalize_stage_in_beam():
    recs = [make_record(source="a:1", text="cafe\u0301"), make_record(source="a:2", text="  ")]
    p = beam.Pipeline(runner="FnApiRunner")
    out = create_batches(p, recs) | RecordStage("normalize", lambda: Normalizer(NormalizeConfig()))
    assert_that(rows(out.kept, "rows4") | beam.Map(lambda r: r["text"]), equal_to(["caf\u00e9"]), label="kept")
    assert_that(rows(out.rejected, "rows5") | "r" >> beam.Map(lambda r: r["reject_reason"]), equal_to(["normalize_empty_text"]), label="rej")
    p.run().wait_until_finish()


def test_exact_dedup_keeps_smallest_id_and_points_rejects_at_it():
    recs = [
        make_record(source="f:1", text="same text", id="c"),
        make_record(source="f:2", text="same  text", id="a"),
        make_record(source="f:3", text="same text", id="b"),
        make_record(source="f:4", text="unique", id="z"),
        make_record(source="f:5", text="unique", id="z"),  # same id twice: source breaks the tie
    ]
    p = beam.Pipeline(runner="FnApiRunner")
    out = create_batches(p, recs, size=2) | ExactDedup()
    assert_that(
        rows(out.kept, "rows6") | beam.Map(lambda r: (r["id"], r["source"], r["exact_dup_count"])),
        equal_to([("a", "f:2", 3), ("z", "f:4", 2)]),
        label="kept",
    )
    assert_that(
        rows(out.rejected, "rows7") | "r" >> beam.Map(lambda r: (r["id"], r["duplicate_of"], r["duplicate_of_source"], r["reject_reason"])),
        equal_to([
            ("c", "a", "f:2", "exact_dedup_duplicate"),
            ("b", "a", "f:2", "exact_dedup_duplicate"),
            ("z", "z", "f:4", "exact_dedup_duplicate"),
        ]),
        label="rejected",
    )
    result = p.run()
    result.wait_until_finish()
    c = counters(result)
    assert c["exact_dedup/kept"] == 2 and c["exact_dedup/exact_dedup_duplicate"] == 3


def test_exact_dedup_large_group_is_streamed():
    n = 20_000
    p = beam.Pipeline(runner="FnApiRunner")
    recs = create_batches(p, [make_record(source=f"f:{i}", text="x", id=f"{i:06d}") for i in range(n)], size=1000)
    out = recs | ExactDedup()
    assert_that(rows(out.kept, "rows8") | beam.Map(lambda r: (r["id"], r["exact_dup_count"])), equal_to([("000000", n)]), label="kept")
    assert_that(rows(out.rejected, "rows9") | beam.combiners.Count.Globally(), equal_to([n - 1]), label="count")
    p.run().wait_until_finish()


class WrongType(RecordFilter):
    """Declares a float column but returns a string for one record."""

    name = "wrong"

    def fields(self):
        import pyarrow as pa

        return (pa.field("wrong_score", pa.float64()), pa.field("wrong_n", pa.int8(), nullable=False))

    def annotate(self, record):
        if record["text"] == "odd":
            return {"wrong_score": "not-a-float", "wrong_n": 1}
        if record["text"] == "big":
            return {"wrong_score": 1.0, "wrong_n": 300}  # does not fit int8
        if record["text"] == "none":
            return {"wrong_score": None, "wrong_n": None}  # non-nullable left empty
        return {"wrong_score": 0.5, "wrong_n": 2}


@pytest.mark.parametrize("batch_size", [1, 3])
def test_values_that_do_not_fit_declared_columns_are_dead_lettered(batch_size):
    recs = [make_record(source=f"t:{i}", text=t) for i, t in enumerate(["ok", "odd", "big", "none", "fine"])]
    p = beam.Pipeline(runner="FnApiRunner")
    out = create_batches(p, recs, size=4) | RecordStage("wrong", WrongType, batch_size=batch_size)
    assert_that(rows(out.kept, "rows10") | beam.Map(lambda r: r["text"]), equal_to(["ok", "fine"]), label="kept")
    assert_that(
        rows(out.dead, "rows11") | "d" >> beam.Map(lambda r: (r["text"], r["reject_stage"], r["error"].split(" for column ")[-1].split(",")[0])),
        equal_to([
            ("odd", "wrong", "wrong_score"),
            ("big", "wrong", "wrong_n"),
            ("none", "wrong", "stage wrong left non-nullable column wrong_n (int8) empty"),
        ]),
        label="dead",
    )
    p.run().wait_until_finish()


def test_a_failing_record_dead_letters_alone_inside_a_batch():
    """The batch call raises; only the record that raises one at a time becomes a dead letter."""
    texts = ["a", "boom", "b", "c"]
    recs = [make_record(source=f"t:{i}", text=t) for i, t in enumerate(texts)]
    p = beam.Pipeline(runner="FnApiRunner")
    out = create_batches(p, recs, size=4) | RecordStage("picky", Picky, batch_size=4)
    assert_that(rows(out.kept, "k") | beam.Map(lambda r: r["text"]), equal_to(["a", "b", "c"]), label="kept")
    assert_that(rows(out.dead, "d") | beam.Map(lambda r: r["text"]), equal_to(["boom"]), label="dead")
    assert_that(out.timing[0] | beam.Map(lambda t: (t[0], t[1][1], t[1][3])), equal_to([("picky", 4, 3)]), label="timing")
    p.run().wait_until_finish()
