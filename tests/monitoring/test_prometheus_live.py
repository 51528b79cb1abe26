"""A curation run and a loader epoch, scraped by a real Prometheus on loopback.

The run pushes to a real Pushgateway (``winnow run --pushgateway``); the loader's metrics are
served on ``/metrics`` through :mod:`winnow.monitoring.loader`; Prometheus scrapes both. The
test checks through Prometheus' HTTP API that the counts equal stats.json and the loader's own
``metrics()``, and that every query of every dashboard panel returns data.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess

import pytest

from tests.monitoring.servers import EXAMPLE_CONFIG, Servers, binaries, free_port
from winnow.monitoring.loader import serve_loader
from winnow.monitoring.names import LOADER, PIPELINE
from winnow.pipeline.cli import main

from tests.monitoring.test_dashboard import DASHBOARD, panel_queries, substitute

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(binaries() is None, reason="needs Debian's prometheus and prometheus-pushgateway (make install as root)"),
]

RUN_ID = "live-test-1"


def _corpus(tmp_path):
    p = tmp_path / "in.jsonl.gz"
    lines = [json.dumps({"id": f"d{i:04d}", "text": f"text {i % 150}"}) for i in range(200)]
    lines += ['{"id": "bad", "text": broken'] * 3  # three dead letters at read
    p.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    return str(p)


def _value(result: list[dict], **labels: str) -> float:
    got = [r for r in result if all(r["metric"].get(k) == v for k, v in labels.items())]
    assert len(got) == 1, (labels, result)
    return float(got[0]["value"][1])


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from winnow.cache import StreamingDataset
    from winnow.cache.synth import write_token_shards

    tmp = tmp_path_factory.mktemp("live")
    # A loader epoch over token shards, its metrics served on /metrics as rank 0.
    store = tmp / "store"
    write_token_shards(str(store), num_samples=600, rows_per_shard=200, lengths=(16, 48), rows_per_batch=64)
    ds = StreamingDataset(remote=str(store), local=str(tmp / "cache"), cache_limit="64MB", memory_limit="64MB",
                          batch_size=16, shuffle=True, seed=1, columns=["tokens"], rank=0, world_size=1)
    samples = sum(1 for _ in ds)  # in-process: one sample at a time
    loader_snapshot = ds.metrics()
    port = free_port()
    server, _thread = serve_loader(lambda: loader_snapshot, port, rank=0)
    servers = Servers(tmp, port)
    try:
        out = tmp / "out"
        rc = main(["run", "--input", _corpus(tmp), "--output", str(out), "--stages", "normalize,exact_dedup",
                   "--pushgateway", servers.gateway, "--run-id", RUN_ID])
        assert rc == 0
        stats = json.loads((out / "stats.json").read_text())
        yield servers, stats, loader_snapshot, samples
    finally:
        servers.close()
        server.shutdown()
        ds.close()


def test_example_scrape_config_is_valid():
    res = subprocess.run(["promtool", "check", "config", str(EXAMPLE_CONFIG)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_pipeline_counts_in_prometheus_equal_stats_json(live):
    servers, stats, _, _ = live
    sel = f'{{run_id="{RUN_ID}"}}'
    servers.wait_for(f"winnow_pipeline_stage_cpu_seconds_total{sel}")
    assert _value(servers.query(f"winnow_pipeline_read_records_total{sel}")) == stats["read"] == 203
    assert _value(servers.query(f"winnow_pipeline_kept_records_total{sel}")) == stats["kept"] == 150
    assert _value(servers.query(f"winnow_pipeline_rejected_records_total{sel}")) == stats["rejected"] == 50
    assert _value(servers.query(f"winnow_pipeline_dead_letter_records_total{sel}")) == stats["dead_letter"] == 3
    assert _value(servers.query(f"winnow_pipeline_balanced{sel}")) == 1.0
    rin = servers.query(f"winnow_pipeline_stage_records_in_total{sel}")
    rout = servers.query(f"winnow_pipeline_stage_records_out_total{sel}")
    dead = servers.query(f"winnow_pipeline_stage_dead_letter_total{sel}")
    rej = servers.query(f"winnow_pipeline_stage_rejected_total{sel}")
    for st in stats["stages"]:
        assert _value(rin, stage=st["name"]) == st["in"]
        assert _value(rout, stage=st["name"]) == st["out"]
        assert _value(dead, stage=st["name"]) == st["dead_letter"]
        for reason, n in st["rejected"].items():
            assert _value(rej, stage=st["name"], reason=reason) == n
    assert sum(float(r["value"][1]) for r in rej) == stats["rejected"]
    cpu = servers.query(f"winnow_pipeline_stage_cpu_seconds_total{sel}")
    bytes_in = servers.query(f"winnow_pipeline_stage_bytes_in_total{sel}")
    assert {r["metric"]["stage"] for r in cpu} == set(stats["timing"]) == {"normalize", "exact_dedup"}
    for stage, t in stats["timing"].items():
        assert _value(cpu, stage=stage) == pytest.approx(t["cpu_s"])
        assert _value(bytes_in, stage=stage) == t["bytes_in"]  # exact bytes, not the rounded MB
    # The Pushgateway's job label and the run's labels survive the scrape (honor_labels).
    assert {r["metric"]["job"] for r in cpu} == {"winnow_pipeline"}


def test_loader_counts_in_prometheus_equal_its_metrics(live):
    servers, _, snap, samples = live
    servers.wait_for('winnow_loader_samples_total{rank="0"}')
    # 600 samples in steps of 16: the last step is filled by wrapping (drop_last=False).
    assert _value(servers.query('winnow_loader_samples_total{rank="0"}')) == snap["samples"] == samples == 608
    assert _value(servers.query('winnow_loader_steps_total{rank="0"}')) == snap["steps"] == 38
    for tier in ("l1_hits", "l2_hits", "l3_fetches"):
        assert _value(servers.query(f'winnow_loader_{tier}_total{{rank="0"}}')) == snap[tier]
    assert snap["l1_hits"] + snap["l2_hits"] + snap["l3_fetches"] > 0
    assert _value(servers.query('winnow_loader_fetched_bytes_total{rank="0"}')) == snap["bytes_fetched_total"]
    assert _value(servers.query('winnow_loader_stall_seconds_total{rank="0"}')) == pytest.approx(snap["stall_s"])
    assert _value(servers.query('winnow_loader_stall_share{rank="0"}')) == pytest.approx(snap["stall_share"])
    assert _value(servers.query('winnow_loader_hit_rate_l1{rank="0"}')) == pytest.approx(snap["hit_rate_l1"])


def test_every_exported_name_is_scraped(live):
    servers, _, _, _ = live
    servers.wait_for("winnow_pipeline_stage_cpu_seconds_total")
    servers.wait_for("winnow_loader_samples_total")
    names = set(servers.api("label/__name__/values"))
    assert set(PIPELINE) | set(LOADER) <= names, sorted(set(PIPELINE) | set(LOADER) - names)


def test_every_dashboard_query_returns_data(live):
    servers, _, _, _ = live
    servers.wait_for("winnow_pipeline_stage_cpu_seconds_total")
    # rate() needs two loader samples within the window.
    servers.wait_for("count_over_time(winnow_loader_samples_total[1m])", check=lambda r: r and float(r[0]["value"][1]) >= 3)
    names = set(servers.api("label/__name__/values"))
    for title, expr in panel_queries(DASHBOARD):
        for metric in set(re.findall(r"\bwinnow_[a-z0-9_]+", expr)):
            assert metric in names, (title, metric)
        promql = substitute(expr, run_id=RUN_ID, rank="0")
        assert servers.query(promql), (title, promql)
