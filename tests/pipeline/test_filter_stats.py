"""The stats of a FilterStage, computed per batch, against a plain per-record computation:
kept and rejected records, records without text, None and NaN scores, values outside the
edges, a stage that judged nothing, and the real quality and pii stages."""

import json
import math
import random

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.util import assert_that

from winnow.filters.base import KEEP, RecordFilter, drop
from winnow.filters.pii import PIIConfig, PIIFilter
from winnow.filters.quality import QualityConfig, QualityFilter
from winnow.pipeline.stages.stats import HistogramFn, linear_edges, merge_stat_dicts
from winnow.pipeline.stages.text_filters import (ColumnCounts, FilterStage, FilterStatsFn, LangCounts, pii_stage,
                                                 quality_stage)
from tests.pipeline.batches import create_batches

EDGES = linear_edges(0, 1, 8)


class _Toy(RecordFilter):
    """Copies planted values into its columns; drops records marked ``bad``."""

    name = "toy"
    reasons = ("toy_bad",)

    def fields(self):
        return (pa.field("toy_score", pa.float64(), nullable=True), pa.field("toy_n", pa.int64(), nullable=True),
                pa.field("toy_a", pa.int64(), nullable=True), pa.field("toy_b", pa.int64(), nullable=True))

    def annotate(self, record):
        return {k: record["plant"][k] for k in ("toy_score", "toy_n", "toy_a", "toy_b")}

    def verdict(self, record):
        return drop("toy_bad") if record["plant"]["bad"] else KEEP


TOY_HISTS = (("score_hist", "toy_score", EDGES, None),
             ("n_hist", "toy_n", linear_edges(0, 4, 10), lambda v: math.log10(v + 1)))
TOY_CONSTANTS = {"thresholds": {"x": 0.5}}


def _toy_counts():
    return (LangCounts(), ColumnCounts("hits", (("a", "toy_a"), ("b", "toy_b"))))


def _toy_records(n, seed=7):
    rng = random.Random(seed)
    recs = []
    for i in range(n):
        score = rng.choice([None, float("nan"), -0.5, 0.0, -0.0, 1.0, 1.5, 0.125, rng.random(), rng.random()])
        recs.append({
            "id": f"r{i:04d}",
            "text": None if i % 7 == 3 else f"text {i}",
            "lang": rng.choice([None, "", "en", "en", "de", "fr"]),
            "plant": {"toy_score": score, "toy_n": rng.choice([None, 0, 3, 40, 10**6]),
                      "toy_a": rng.choice([None, 0, 1, 2]), "toy_b": rng.choice([0, 0, 5]), "bad": rng.random() < 0.4},
        })
    return recs


def _merged(dicts):
    """Stat dicts merged as Finalize merges them."""
    return merge_stat_dicts(sorted(dicts, key=lambda d: json.dumps(d, sort_keys=True, default=str)))


def _stage_stats(stage, recs, batch=5, tmp_path=None):
    """The stage's stats dicts merged as Finalize merges them, from one pipeline run."""
    out_file = tmp_path / "stats.json"

    def keep(dicts):
        out_file.write_text(json.dumps(_merged(dicts)))

    with beam.Pipeline(runner="FnApiRunner") as p:
        out = create_batches(p, recs, size=batch) | stage
        assert_that(out.stats, keep)
    return json.loads(out_file.read_text())


def _plain_hist(values, edges, transform=None):
    fn = HistogramFn(edges)
    acc = fn.create_accumulator()
    for v in values:
        if v is not None:
            fn.add_input(acc, v if transform is None else transform(v))
    return fn.extract_output(acc)


def _plain_counts(judged, columns):
    found, records = {}, {}
    for r in judged:
        for name, col in columns:
            v = r.get(col) or 0
            if v:
                found[name] = found.get(name, 0) + int(v)
                records[name] = records.get(name, 0) + 1
    return {"found": dict(sorted(found.items())), "records": dict(sorted(records.items()))}


def _plain_langs(judged):
    counts = {}
    for r in judged:
        k = r.get("lang") or ("(none)" if r.get("text") is not None else "(no text)")
        counts[k] = counts.get(k, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _assert_same(got, want):
    """Equal, key order included; a histogram's float sum and mean only to rounding."""
    assert json.dumps(list(got)) == json.dumps(list(want))
    for k in want:
        g, w = got[k], want[k]
        if isinstance(w, dict) and "edges" in w:
            for f in ("sum", "mean"):
                assert (g[f] is None) == (w[f] is None), k
                if w[f] is not None:
                    assert g[f] == pytest.approx(w[f], rel=1e-12, abs=1e-12), (k, f)
            g, w = {**g, "sum": None, "mean": None}, {**w, "sum": None, "mean": None}
        assert json.dumps(g) == json.dumps(w), k


def _toy_want(judged):
    return _merged([
        {"score_hist": _plain_hist([r["toy_score"] for r in judged], EDGES)},
        {"n_hist": _plain_hist([r["toy_n"] for r in judged], linear_edges(0, 4, 10), lambda v: math.log10(v + 1))},
        {"languages": _plain_langs(judged)},
        {"hits": _plain_counts(judged, (("a", "toy_a"), ("b", "toy_b")))},
        TOY_CONSTANTS,
    ])


@pytest.mark.parametrize("batch", [1, 5, 64])
def test_per_batch_stats_equal_a_plain_per_record_computation(batch, tmp_path):
    recs = _toy_records(150)
    judged = [_Toy().process(dict(r))[0] for r in recs]
    assert any(r["plant"]["bad"] for r in recs) and not all(r["plant"]["bad"] for r in recs)
    assert any(r["text"] is None for r in recs) and any(r["toy_score"] is None for r in judged)
    stage = FilterStage("toy", _Toy, batch_size=3, hists=TOY_HISTS, counts=_toy_counts(), constants=TOY_CONSTANTS)
    got = _stage_stats(stage, recs, batch=batch, tmp_path=tmp_path)
    want = _toy_want(judged)
    assert want["score_hist"]["missing"] > 0 and want["score_hist"]["under"] > 0 and want["score_hist"]["over"] > 0
    assert set(want["languages"]) >= {"(none)", "(no text)", "en"}
    _assert_same(got, want)


def test_a_stage_that_judged_nothing_reports_empty_stats(tmp_path):
    stage = FilterStage("toy", _Toy, hists=TOY_HISTS, counts=_toy_counts(), constants=TOY_CONSTANTS)
    got = _stage_stats(stage, [], tmp_path=tmp_path)
    want = _toy_want([])
    assert want["score_hist"]["n"] == 0 and want["languages"] == {} and want["hits"] == {"found": {}, "records": {}}
    _assert_same(got, want)


def test_histogram_add_inputs_is_add_input_value_by_value():
    rng = random.Random(3)
    values = [rng.choice([None, float("nan"), -1, 0, -0.0, 0.0, 2, 3.0, 7.5, 99, True, rng.uniform(-1, 9)])
              for _ in range(2000)]
    fn = HistogramFn([0.0, 1.0, 2.5, 3.0, 8.0])
    one = fn.create_accumulator()
    for v in values:
        fn.add_input(one, v)
    many = fn.add_inputs(fn.create_accumulator(), values)
    assert json.dumps(fn.extract_output(many)) == json.dumps(fn.extract_output(one))
    assert fn.add_inputs(fn.create_accumulator(), []) == fn.create_accumulator()


def test_partials_merge_in_any_grouping():
    recs = [_Toy().process(dict(r))[0] for r in _toy_records(60, seed=11)]
    from winnow.pipeline.batch import Records

    fn = FilterStatsFn(TOY_HISTS, _toy_counts())
    parts = [fn.batch(Records(recs[i:i + 7])) for i in range(0, len(recs), 7)]
    a = fn.merge_accumulators(parts)
    b = fn.create_accumulator()
    for part in parts:
        b = fn.add_input(b, part)
    assert fn.extract_output(a) == fn.extract_output(b)
    # the same sums, to the last bit, whatever order the partials are merged in
    rng = random.Random(5)
    for _ in range(5):
        shuffled = rng.sample(parts, len(parts))
        c = fn.merge_accumulators([fn.merge_accumulators(shuffled[:4]), fn.merge_accumulators(shuffled[4:])])
        assert json.dumps(fn.extract_output(c)) == json.dumps(fn.extract_output(a))
    # merging leaves the partials as they were
    assert fn.extract_output(fn.merge_accumulators(parts)) == fn.extract_output(a)


def test_infinite_values_sum_as_a_plain_sum_would():
    from winnow.pipeline.batch import Records

    fn = FilterStatsFn((("h", "x", EDGES, None),))
    for values, want in (([1.0, math.inf], math.inf), ([math.inf, 2.0, -math.inf], math.nan), ([-math.inf], -math.inf)):
        parts = [fn.batch(Records([{"x": v}])) for v in values]
        (h,) = fn.extract_output(fn.merge_accumulators(parts))
        assert h["h"]["n"] == len(values)
        assert (math.isnan(h["h"]["sum"]) and math.isnan(want)) or h["h"]["sum"] == want


def _texts():
    from pydoc_data.topics import topics

    out = []
    for k in sorted(topics)[:60]:
        for para in topics[k].split("\n\n"):
            if len(para) > 40:
                out.append(para)
    return out[:120]


def test_quality_and_pii_stage_stats_equal_their_filters_record_by_record(tmp_path):
    texts = _texts()
    recs = [{"id": f"d{i:03d}", "text": t, "modality": "text", "lang": "en"} for i, t in enumerate(texts)]
    recs[5]["text"] = "Mail jane.doe@example.com or call +1 415-555-2671, or bob@example.org."
    recs.append({"id": "no-text", "text": None, "modality": "text", "lang": None})
    recs.append({"id": "empty", "text": "", "modality": "text", "lang": "en"})

    qcfg = QualityConfig()
    judged_q = [QualityFilter(qcfg).process(dict(r))[0] for r in recs]
    q = _stage_stats(quality_stage(qcfg, None), recs, batch=16, tmp_path=tmp_path)
    kept = [r for r in recs if QualityFilter(qcfg).process(dict(r))[1].keep]
    assert 0 < len(kept) < len(recs)
    for key, col, edges, tr in (("words_hist", "quality_words", linear_edges(0, 4, 40), lambda v: math.log10(v + 1)),
                                ("alpha_ratio_hist", "quality_alpha_ratio", linear_edges(0, 1, 40), None)):
        want = _plain_hist([r.get(col) for r in judged_q], edges, tr)
        assert want["n"] > 0
        _assert_same({key: q[key]}, {key: want})

    pcfg = PIIConfig()
    judged_p = [PIIFilter(pcfg).process(dict(r))[0] for r in recs]
    s = _stage_stats(pii_stage(pcfg, None), recs, batch=16, tmp_path=tmp_path)
    want = _plain_counts(judged_p, [(t, f"pii_{t}") for t in PIIFilter.all_types(pcfg)])
    assert want["found"] and s["pii"] == want
    assert json.dumps(s["pii"]) == json.dumps(want)
