"""The Pushgateway's per-stage byte counters are exact bytes (stats.json ``timing`` bytes_in/out),
not the rounded MB figure times a million."""

from __future__ import annotations

import json

from tests.pipeline.test_cli import corpus
from winnow.monitoring.pipeline import pipeline_families
from winnow.pipeline.cli import main


def _values(stats, name):
    fam = next(f for f in pipeline_families(stats, "r1") if f.name == name.removesuffix("_total"))
    return {s.labels["stage"]: s.value for s in fam.samples if s.name == name}


def test_a_runs_stage_bytes_are_exact_in_stats_and_in_the_pushed_metrics(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--input", corpus(tmp_path, n=777), "--output", str(out), "--stages", "normalize,exact_dedup",
                 "--quiet"]) == 0
    capsys.readouterr()
    stats = json.loads((out / "stats.json").read_text())
    pushed_in = _values(stats, "winnow_pipeline_stage_bytes_in_total")
    pushed_out = _values(stats, "winnow_pipeline_stage_bytes_out_total")
    assert set(pushed_in) == set(stats["timing"]) == {"normalize", "exact_dedup"}
    for stage, t in stats["timing"].items():
        assert isinstance(t["bytes_in"], int) and isinstance(t["bytes_out"], int)
        assert t["mb_in"] == round(t["bytes_in"] / 1e6, 3) and t["mb_out"] == round(t["bytes_out"] / 1e6, 3)
        assert pushed_in[stage] == t["bytes_in"] and pushed_out[stage] == t["bytes_out"]
    # this corpus's byte counts are not whole kB, so the old mb x 1e6 would have been off
    assert any(t["bytes_in"] % 1000 for t in stats["timing"].values())
    assert all(pushed_in[s] != t["mb_in"] * 1e6 for s, t in stats["timing"].items() if t["bytes_in"] % 1000)


def test_stats_written_before_exact_bytes_still_push_the_mb_figure():
    stats = {"read": 3, "kept": 3, "rejected": 0, "dead_letter": 0, "stages": [],
             "timing": {"normalize": {"cpu_s": 0.1, "mb_in": 0.31, "mb_out": 0.3}}}
    assert _values(stats, "winnow_pipeline_stage_bytes_in_total") == {"normalize": 310000.0}
    stats["timing"]["normalize"].update(bytes_in=310347, bytes_out=299999)
    assert _values(stats, "winnow_pipeline_stage_bytes_in_total") == {"normalize": 310347.0}
    assert _values(stats, "winnow_pipeline_stage_bytes_out_total") == {"normalize": 299999.0}
