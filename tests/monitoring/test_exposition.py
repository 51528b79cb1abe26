"""The loader's Prometheus endpoints: one naming scheme, no name exported twice, text Prometheus accepts."""

from __future__ import annotations

import collections
import shutil
import subprocess
import urllib.request

import pytest

from winnow.cache import serve_prometheus
from winnow.cache.metrics import Metrics, summarize
from winnow.monitoring.loader import SNAPSHOT_KEYS, loader_exposition, serve_loader
from winnow.monitoring.names import LOADER


def _snapshot() -> dict:
    # distinct values, so a value under the wrong name shows
    m = Metrics(samples=208, steps=13, l1_hits=38, l2_hits=1, l3_fetches=5, l1_evictions=2, batch_hits=3,
                batch_decodes=9, bytes_fetched=402826, fetch_retries=4, checksum_failures=1, corrupt_refetches=1,
                prefetched_shards=1, prefetch_bytes=100834, prefetch_retries=6, transfer_recycled=7,
                transfer_fresh=8, stall_s=0.25, busy_s=2.0)
    return summarize(m.snapshot())


def _scrape(server) -> str:
    try:
        port = server.server_address[1]
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        server.shutdown()


def _check_exposition(text: str) -> dict[str, dict[tuple, float]]:
    """Parse ``text`` as Prometheus does; fail on a metric name given twice. Returns name -> labels -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    helps = collections.Counter(line.split()[2] for line in text.splitlines() if line.startswith("# HELP "))
    types = collections.Counter(line.split()[2] for line in text.splitlines() if line.startswith("# TYPE "))
    assert [n for n, c in helps.items() if c > 1] == [], "a second HELP line for a metric name"
    assert [n for n, c in types.items() if c > 1] == [], "a second TYPE line for a metric name"
    families = list(text_string_to_metric_families(text))
    names = collections.Counter(f.name for f in families)
    assert [n for n, c in names.items() if c > 1] == []
    series = collections.Counter((s.name, tuple(sorted(s.labels.items()))) for f in families for s in f.samples)
    assert [k for k, c in series.items() if c > 1] == [], "a series given twice"
    out: dict[str, dict[tuple, float]] = {}
    for f in families:
        for s in f.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_serve_prometheus_and_serve_loader_give_the_same_valid_scrape():
    snap = _snapshot()
    text_cache = _scrape(serve_prometheus(lambda: snap, port=0)[0])
    text_mon = _scrape(serve_loader(lambda: snap, 0, rank=0)[0])
    assert text_cache == text_mon == loader_exposition(snap, rank=0)
    values = _check_exposition(text_cache)
    # every name of the scheme, nothing else, each labelled with the rank
    assert set(values) == set(LOADER) == set(SNAPSHOT_KEYS)
    assert all(list(v) == [(("rank", "0"),)] for v in values.values())
    # the names the reviewer found doubled or spelled two ways are gone
    for bad in ("winnow_loader_bytes_fetched_total", "winnow_loader_stall_s_total", "winnow_loader_busy_s_total"):
        assert bad not in text_cache
    r = (("rank", "0"),)
    assert values["winnow_loader_fetched_bytes_total"][r] == 402826 + 100834 == snap["bytes_fetched_total"]
    assert values["winnow_loader_prefetched_bytes_total"][r] == 100834
    assert values["winnow_loader_stall_seconds_total"][r] == 0.25
    assert values["winnow_loader_fetch_retries_total"][r] == 4 + 6
    assert values["winnow_loader_shard_accesses_total"][r] == 44
    assert values["winnow_loader_hit_rate_batch_cache"][r] == pytest.approx(3 / 12)
    assert values["winnow_loader_stall_share"][r] == pytest.approx(0.125)
    for name, m in LOADER.items():
        assert name.endswith("_total") == (m.kind == "counter"), name
        assert not name.endswith("_total_total") and "_s_" not in name + "_", name


def test_a_rank_and_a_prefix_are_passed_through():
    snap = _snapshot()
    text = _scrape(serve_prometheus(lambda: snap, port=0, prefix="job_loader", rank=3)[0])
    values = _check_exposition(text)
    assert set(values) == {"job_loader" + n[len("winnow_loader"):] for n in LOADER}
    assert values["job_loader_samples_total"] == {(("rank", "3"),): 208}


def test_the_duplicate_check_catches_a_name_given_twice():
    bad = ("# HELP x_total a\n# TYPE x_total counter\nx_total 1.0\n"
           "# HELP x_total b\n# TYPE x_total counter\nx_total 2.0\n")
    with pytest.raises(AssertionError):
        _check_exposition(bad)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus package) is not installed")
def test_promtool_accepts_the_scrape():
    text = loader_exposition(_snapshot(), rank=0)
    res = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    # and it rejects what serve_prometheus used to serve (the same name twice)
    with open(__file__.replace("test_exposition.py", "old_serve_prometheus.txt")) as fh:
        old = fh.read()
    res = subprocess.run(["promtool", "check", "metrics"], input=old, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
