"""Curriculum: quantile buckets from a score column, schedule shares, exactly-once, resume."""

import numpy as np
import pytest

from winnow.curriculum import CurriculumPlan, Schedule, column_values, plan_curriculum, simple_to_complex
from winnow.errors import ConfigError


def _plan(n=3000, steps=900, batch=8, seed=3):
    rng = np.random.default_rng(0)
    ppl = rng.lognormal(4.0, 0.8, n)
    ppl[::97] = np.nan  # missing scores go to the hardest bucket
    return ppl, plan_curriculum(ppl, "model_quality_perplexity", simple_to_complex(steps), batch, seed=seed)


def test_buckets_are_quantiles_of_the_column():
    ppl, plan = _plan()
    finite = ppl[np.isfinite(ppl)]
    assert plan.edges[0] == pytest.approx(np.median(finite))
    simple = plan.members(0)
    assert np.all(ppl[simple] < plan.edges[0])
    assert np.all(np.isnan(ppl[~np.isfinite(ppl)])) and set(plan.bucket_of[~np.isfinite(ppl)]) == {1}
    assert abs(len(simple) - finite.size / 2) <= 1


def test_share_per_window_follows_the_schedule():
    _, plan = _plan(steps=3000)
    drawn = plan.bucket_per_step(0, 3000)
    first, mid, last = drawn[:1000], drawn[1000:2000], drawn[2000:]
    assert (first == 0).all() and (last == 1).all()
    share = (mid == 0).mean()
    assert abs(share - 0.7) < 4 * np.sqrt(0.7 * 0.3 / 1000)  # within sampling noise


def test_exactly_once_per_bucket_pass_and_resume_at_37_percent():
    _, plan = _plan(n=400, steps=300, batch=10)
    full = list(plan.batches(0, 300))
    for b in (0, 1):
        m = plan.members(b)
        per_pass = len(m) // 10
        batches = [idx for _, bb, idx in full if bb == b]
        assert len(batches) >= per_pass  # the first and last thirds are one bucket only
        seen = np.concatenate(batches[:per_pass])
        assert len(np.unique(seen)) == len(seen) == per_pass * 10
        assert set(seen) <= set(m)
    cut = int(0.37 * 300)
    resumed = list(plan.batches(cut, 300))
    assert [(s, b, i.tolist()) for s, b, i in resumed] == [(s, b, i.tolist()) for s, b, i in full[cut:]]


def test_plan_round_trips_as_json_and_user_schedules():
    _, plan = _plan(n=200, steps=30)
    again = CurriculumPlan.from_json(plan.to_json())
    assert [i.tolist() for _, _, i in again.batches(0, 30)] == [i.tolist() for _, _, i in plan.batches(0, 30)]
    three = plan_curriculum(np.arange(90.0), "tokens", Schedule([(0, [1, 0, 0]), (10, [1, 1, 1])]), 3)
    assert [len(three.members(b)) for b in range(3)] == [30, 30, 30]
    hard_first = plan_curriculum(np.arange(10.0), "quality_score", Schedule([(0, [1, 0])]), 2, ascending=False)
    assert set(hard_first.members(0)) == {5, 6, 7, 8, 9}  # high quality is "simple" here
    with pytest.raises(ConfigError):
        Schedule([(5, [1, 0]), (5, [0, 1])])


def test_column_values_from_a_run(tmp_path):
    import pyarrow as pa

    from winnow.format import Manifest, ShardInfo, output_schema
    from winnow.shardio import rows_table, write_arrow_file

    schema = output_schema([pa.field("quality_score", pa.float64())])
    rows = [{"id": str(i), "source": "s", "modality": "text", "text": "x", "meta": "{}", "quality_score": i / 10}
            for i in range(6)]
    (tmp_path / "shards").mkdir()
    infos = []
    for k in range(2):
        t = rows_table(rows[k * 3:(k + 1) * 3], schema)
        path = f"shards/part-{k:05d}-of-00002.arrow"
        nbytes, digest = write_arrow_file(str(tmp_path / path), schema, t.to_batches())
        infos.append(ShardInfo(path, 3, nbytes, digest))
    (tmp_path / "index.json").write_text(Manifest(schema=schema, shards=tuple(infos), counts={"read": 6}).dumps())
    assert column_values(str(tmp_path), "quality_score").tolist() == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    with pytest.raises(ConfigError, match="numeric"):
        column_values(str(tmp_path), "text")


def test_locate_is_a_pure_function_of_the_step_across_draw_chunks():
    from winnow.curriculum import DRAW_CHUNK

    _, plan = _plan(n=600, steps=3 * DRAW_CHUNK, batch=8)
    lo, hi = DRAW_CHUNK - 300, DRAW_CHUNK + 300
    whole = plan.locate(0, hi)
    part = plan.locate(lo, hi)
    fresh = CurriculumPlan.from_json(plan.to_json()).locate(lo, hi)  # no memo carried over
    for a, b, c in zip(whole, part, fresh):
        assert a[lo:].tolist() == b.tolist() == c.tolist()
    drawn = plan.bucket_per_step(0, hi)
    assert plan.uses_before(hi).tolist() == np.bincount(drawn, minlength=2).tolist()
    bucket, passes, offsets = whole
    per = plan.steps_per_pass()
    for b in (0, 1):  # the n-th use of a bucket is batch n % per of pass n // per
        at = np.flatnonzero(bucket == b)
        n = np.arange(len(at))
        assert passes[at].tolist() == (n // per[b]).tolist()
        assert offsets[at].tolist() == ((n % per[b]) * 8).tolist()


def test_bad_json_and_cli_errors_are_config_errors(tmp_path, capsys):
    from winnow.curriculum import main

    with pytest.raises(ConfigError, match="curriculum.json"):
        CurriculumPlan.from_json('{"column": "x"}')
    with pytest.raises(ConfigError, match="bucket numbers"):
        CurriculumPlan("x", np.zeros(1), np.asarray([0, 2]), simple_to_complex(9), 1)
    test_column_values_from_a_run(tmp_path)
    assert main([str(tmp_path), "--column", "nope", "--steps", "9"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main([str(tmp_path), "--column", "quality_score", "--schedule", "[[0, [1, 1]]]", "--descending"]) == 0
    plan = CurriculumPlan.from_json((tmp_path / "curriculum.json").read_text())
    assert plan.bucket_of.tolist() == [1, 1, 1, 0, 0, 0]  # high quality is simple with --descending


def test_winnow_curriculum_subcommand_writes_the_plan(tmp_path, capsys):
    from winnow.pipeline.cli import main as winnow_main

    test_column_values_from_a_run(tmp_path)
    assert winnow_main(["curriculum", str(tmp_path), "--column", "quality_score", "--steps", "30"]) == 0
    plan = CurriculumPlan.from_json((tmp_path / "curriculum.json").read_text())
    assert plan.column == "quality_score" and len(plan.bucket_of) == 6
    with pytest.raises(SystemExit):
        winnow_main(["curriculum", "-h"])
    assert "winnow curriculum" in capsys.readouterr().out
