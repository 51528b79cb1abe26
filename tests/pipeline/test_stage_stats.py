"""Stage stats and artifacts: from a stage's PCollections to stats.json, report.html and index.json."""

import json
import math
from dataclasses import dataclass

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from winnow.format import Manifest
from winnow.pipeline.configure import load_config
from winnow.pipeline.report import ReportSection, svg_histogram
from winnow.pipeline.runner import run
from winnow.pipeline.stages.registry import STAGES
from winnow.pipeline.stages.spec import StageDecl
from winnow.pipeline.stages.base import StageOutputs
from winnow.pipeline.stages.stats import HistogramFn, histogram_stats, linear_edges, log_edges, merge_stat_dicts


def test_histogram_fn_bins_clamps_and_counts_missing():
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = (p | beam.Create([0.0, 0.5, 0.99, 1.0, 2.5, -3.0, None, float("nan"), 9.0])
               | beam.CombineGlobally(HistogramFn([0.0, 1.0, 2.0, 3.0])))

        def check(results):
            (h,) = results
            assert h["counts"] == [4, 1, 2]  # -3 -> first bin, 1.0 -> second, 9.0 -> last
            assert (h["n"], h["under"], h["over"], h["missing"]) == (7, 1, 1, 2)
            assert (h["min"], h["max"]) == (-3.0, 9.0)
            assert math.isclose(h["mean"], (0 + 0.5 + 0.99 + 1 + 2.5 - 3 + 9) / 7)

        assert_that(out, check)


def test_histogram_of_nothing_and_bad_edges():
    fn = HistogramFn(linear_edges(0, 1, 4))
    h = fn.extract_output(fn.create_accumulator())
    assert h["n"] == 0 and h["mean"] is None and h["counts"] == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="increasing"):
        HistogramFn([1.0, 1.0])
    with pytest.raises(ValueError):
        log_edges(0, 10, 3)
    assert log_edges(1, 1000, 3) == pytest.approx((1, 10, 100, 1000))


def test_merge_stat_dicts_merges_one_level():
    assert merge_stat_dicts([{"a": {"x": 1}, "b": 1}, {"a": {"y": 2}, "b": 2}]) == {"a": {"x": 1, "y": 2}, "b": 2}


@dataclass(frozen=True)
class _LenConfig:
    pass


class _LengthStats(beam.PTransform):
    """A test stage: keeps everything, reports a length histogram, publishes an artifact."""

    def expand(self, records):
        lengths = records | "Len" >> beam.FlatMap(lambda b: [len(r.get("text") or "") for r in b.rows])
        stats = histogram_stats(lengths, "text_length", linear_edges(0, 2000, 10))
        p = records.pipeline
        artifacts = p | "Art" >> beam.Create([{"tokenizer": {"model": "tokenizer/test.model", "vocab_size": 7}}])
        empty = p | "Empty" >> beam.Create([])
        return StageOutputs(kept=records, rejected=empty, dead=p | "Empty2" >> beam.Create([]),
                            stats=stats, artifacts=artifacts)


def _length_section(stats, examples, config):
    h = stats.get("stage_stats", {}).get("test_lengths", {}).get("text_length")
    return None if not h else ReportSection("Text lengths", svg_histogram(h, title="length", x_label="chars"))


@pytest.fixture
def length_stage():
    """A user's own stage: one declaration added to the built-in registry (nothing global changes)."""
    decl = StageDecl("test_lengths", _LenConfig, lambda cfg, ctx: _LengthStats(), report=_length_section)
    return STAGES.with_stages(decl)


def test_stage_stats_and_artifacts_reach_stats_report_and_manifest(tmp_path, length_stage):
    src = tmp_path / "in.jsonl"
    texts = ["a" * n for n in (10, 300, 301, 1999, 5000)]
    src.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "out"
    cfg = load_config(input=[str(src)], output=str(out), stages=["normalize", "test_lengths"], registry=length_stage)
    result = run(cfg)
    h = result.stats["stage_stats"]["test_lengths"]["text_length"]
    assert h["n"] == 5 and h["counts"][0] == 1 and h["counts"][1] == 2 and h["counts"][-1] == 2 and h["over"] == 1
    assert json.loads((out / "stats.json").read_text())["stage_stats"] == result.stats["stage_stats"]
    m = Manifest.loads((out / "index.json").read_text())
    assert m.tokenizer == {"model": "tokenizer/test.model", "vocab_size": 7}
    html = (out / "report.html").read_text()
    assert "Text lengths" in html and "(failed)" not in html


def test_a_stage_unknown_to_the_registry_is_a_config_error(tmp_path):
    from winnow.errors import ConfigError

    with pytest.raises(ConfigError, match="test_lengths"):
        load_config(input=["x"], output=str(tmp_path), stages=["normalize", "test_lengths"])


def test_per_stage_time_reaches_stats_funnel_report_and_inspect(tmp_path):
    from winnow.pipeline.inspect import inspect_run

    src = tmp_path / "in.jsonl"
    texts = [f"record number {i} " * (i + 1) for i in range(40)] + ["   ", "record number 3 " * 4]
    src.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "out"
    result = run(load_config(input=[str(src)], output=str(out), stages=["normalize", "exact_dedup"]))
    timing = result.stats["timing"]
    assert set(timing) == {"normalize", "exact_dedup"}
    funnel = {s["name"]: s for s in result.stats["stages"]}
    for name, t in timing.items():
        # every record a stage saw is timed, and what it passed on is what the funnel says it kept
        assert t["records_in"] == funnel[name]["in"] and t["records_out"] == funnel[name]["out"], name
        assert t["cpu_s"] >= 0 and t["mb_in"] >= t["mb_out"] > 0
        assert funnel[name]["time"] == t
    assert funnel["normalize"]["out"] == 41 and funnel["exact_dedup"]["out"] == 40
    html = (out / "report.html").read_text()
    assert "CPU s" in html
    assert "rec/s" in html
    assert "rec/s" in inspect_run(str(out))
