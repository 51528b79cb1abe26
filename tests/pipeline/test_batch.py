"""Records batches: exact round trips through their encodings (pickled rows, Arrow), compactness, counts."""

import pickle

import numpy as np
import pyarrow as pa

from winnow.pipeline.batch import Records, batch_rows, record_weight, rows_to_arrow, rows_weight
from winnow.pipeline.records import make_record, record_bytes


def round_trip(rows):
    return pickle.loads(pickle.dumps(Records(rows))).rows


def test_values_come_back_unchanged():
    rows = [
        {"id": "a", "text": "h\u00e9llo \U0001f600", "n": 1, "f": 0.1, "b": True, "img": b"\x00\xff", "x": None},
        {"id": "b", "text": None, "n": None, "f": 2.5, "b": False, "img": None, "extra": "only here"},
    ]
    back = round_trip(rows)
    assert back == rows  # a key some rows lack stays absent; nothing is added
    for orig, got in zip(rows, back):
        assert [type(v) for v in got.values()] == [type(v) for v in orig.values()]


def test_token_arrays_come_back_as_the_same_integers():
    rows = [{"id": "a", "tokens": np.array([1, 2, 300], dtype=np.int16)}, {"id": "b", "tokens": None}]
    back = round_trip(rows)
    assert list(back[0]["tokens"]) == [1, 2, 300] and back[1]["tokens"] is None


def test_values_arrow_cannot_hold_exactly_fall_back_to_pickle():
    for rows in (
        [{"t": "lone \udcff surrogate"}],          # not encodable as UTF-8
        [{"v": 1}, {"v": 2.5}],                    # an int among floats would come back a float
        [{"v": 2**70}],                            # beyond int64
        [{"v": {"nested": [1, 2]}}],               # a dict value
        [{"v": np.float32(0.5)}],                  # a numpy scalar keeps its type
    ):
        back = round_trip(rows)
        assert back == rows and [type(r[k]) for r in back for k in r] == [type(r[k]) for r in rows for k in r]
    assert rows_to_arrow([{"v": 1}, {"v": 2.5}]) is None  # Arrow would change these values
    assert rows_to_arrow([{"v": {"nested": [1, 2]}}]) is None
    assert rows_to_arrow([{"v": 1}, {"v": None}]) is not None


def test_a_batch_is_compact_across_a_boundary_and_counted_without_decoding():
    recs = [make_record(source=f"f.jsonl:{i}", text="word " * 200, meta={"i": i}) for i in range(500)]
    raw = sum(record_weight(r) + len(r["id"]) + len(r["source"]) + len(r["meta"]) for r in recs)
    data = pickle.dumps(Records(recs))
    assert len(data) < 0.5 * raw  # compressed; no per-value Python overhead
    back = pickle.loads(data)
    assert len(back) == 500 and back._rows is None  # the count is in the header
    assert back.rows == recs


def test_batch_rows_cuts_by_count_and_bytes():
    small = [{"text": "x" * 10} for _ in range(10)]
    assert [len(b) for b in batch_rows(small, max_records=4)] == [4, 4, 2]
    big = [{"text": "x" * 100}, {"text": "x" * 100}, {"image": b"\0" * 1000}, {"text": "y"}]
    assert [len(b) for b in batch_rows(big, max_records=100, max_bytes=150)] == [2, 1, 1]
    assert record_weight({"text": "ab", "image": b"123", "audio": None}) == 5


def test_nbytes_over_arrow_columns_agrees_with_the_row_path():
    recs = [make_record(source=f"f.jsonl:{i}", text=("caf\u00e9 " if i % 2 else "word ") * (i + 1), meta={"i": i})
            for i in range(300)]
    held = pickle.loads(pickle.dumps(Records.from_arrow(rows_to_arrow(recs))))
    assert len(held) == 300 and held.arrow() is not None  # counted without making dicts
    assert held.nbytes() == sum(record_bytes(r) for r in recs) == Records(recs).nbytes()
    assert held.arrow() is not None  # nbytes made no dicts either


def test_a_batch_made_from_arrow_round_trips_and_pickles_as_arrow():
    recs = [{"id": f"r{i}", "source": "s", "text": "t" * i} for i in range(50)]
    arrow = rows_to_arrow(recs)
    assert Records(recs).arrow() is None  # rows stay rows until someone converts them
    part = Records.from_arrow(arrow.take(pa.array([3, 1, 4])))
    assert len(part) == 3 and part.arrow() is not None
    again = pickle.loads(pickle.dumps(part))
    assert again.arrow() is not None and again.rows == [recs[3], recs[1], recs[4]]


def test_text_is_compressed_across_a_boundary():
    recs = [{"id": f"r{i}", "text": "the same words again and again " * 50} for i in range(200)]
    raw = sum(len(r["text"]) for r in recs)
    assert len(pickle.dumps(Records(recs))) < raw / 5


def test_beam_measures_a_batch_without_encoding_it(monkeypatch):
    """Beam samples element sizes by encoding them; a batch reports its size itself instead, so a
    fused chain of steps never pickles and compresses a batch that does not leave the process."""
    import apache_beam as beam
    from apache_beam.coders import coders
    from apache_beam.testing.util import assert_that, equal_to

    import winnow.pipeline.batch as batch_mod

    encoded = []
    real = batch_mod._encode_rows
    monkeypatch.setattr(batch_mod, "_encode_rows", lambda rows: encoded.append(len(rows)) or real(rows))

    recs = [{"id": f"r{i}", "text": "words " * 20} for i in range(50)]
    impl = coders.FastPrimitivesCoder().get_impl()
    size, observables = impl.get_estimated_size_and_observables(Records(recs))
    assert not encoded and observables  # measured through the observer, not by encoding
    seen = []
    held = pickle.loads(pickle.dumps(Records(recs)))
    encoded.clear()
    held.register_observer(lambda value, is_encoded=False: seen.append((len(value), is_encoded)))
    assert seen == [(len(held._data), True)] and not encoded  # a decoded batch reports its encoding

    with beam.Pipeline(runner="FnApiRunner") as p:
        counts = (p | beam.Create([list(range(i, i + 30)) for i in range(0, 300, 30)])
                  | "Make" >> beam.Map(lambda ns: Records({"id": str(n), "text": "x" * n} for n in ns))
                  | "A" >> beam.Map(lambda b: Records(b.rows[::-1]))
                  | "B" >> beam.Map(lambda b: Records(r for r in b.rows if r["id"] != "7"))
                  | "Len" >> beam.Map(len))
        assert_that(counts, equal_to([30] * 9 + [29]))
    assert encoded == []  # the batches stayed inside one fused stage: never encoded


def test_rows_weight_is_the_sum_of_record_weights_and_a_batch_carries_it():
    full = [{"text": "caf\u00e9", "image": b"12", "audio": None}, {"text": None, "image": None, "audio": b"xyz"},
            {"text": "", "image": None, "audio": None}]
    partial = [{"id": "a"}, {"text": "xy", "lang": "en"}, {"image": b"1234"}]  # slim records lack the columns
    for rows in (full, partial, full + partial, []):
        assert rows_weight(rows) == sum(record_weight(r) for r in rows)
        assert rows_weight(iter(rows)) == rows_weight(rows)
    assert Records(full).weight() == 9
    assert Records(full, weight=123).weight() == 123  # what its maker summed
    assert pickle.loads(pickle.dumps(Records(full, weight=123))).weight() == 9  # summed again after a boundary
    assert [b.weight() for b in batch_rows([{"text": "x" * 10}] * 5, max_records=2)] == [20, 20, 10]
