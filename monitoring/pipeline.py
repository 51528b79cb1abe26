"""A curation run's counters and per-stage time as Prometheus metrics, pushed at the end.

Prometheus recommends the Pushgateway for batch jobs: a run pushes once, when stats.json is
written, under the grouping key ``job="winnow_pipeline", run_id=<id>``. The numbers are the
run's stats.json (the funnel per stage, ``stats["timing"]``), so the scrape equals the file.
"""

from __future__ import annotations

import time
from typing import Any, Iterator, Mapping

from winnow.monitoring.names import PIPELINE

__all__ = ["pipeline_families", "push_pipeline", "new_run_id", "PIPELINE_JOB"]

#: The Pushgateway ``job`` a run pushes under.
PIPELINE_JOB = "winnow_pipeline"


def new_run_id(config_hash: str = "") -> str:
    """A run id: the UTC start time, and the config hash's first 8 characters when given."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{stamp}-{config_hash[:8]}" if config_hash else stamp


def _family(name: str) -> Any:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    m = PIPELINE[name]
    cls = CounterMetricFamily if m.kind == "counter" else GaugeMetricFamily
    return cls(name, m.help, labels=list(m.labels))


def _bytes(timing: Mapping[str, Any], way: str) -> float:
    """A stage's exact ``bytes_<way>``; stats.json written before they were recorded has only
    the MB figure rounded to 1 kB, which is all there is to give then."""
    exact = timing.get(f"bytes_{way}")
    return float(exact) if isinstance(exact, (int, float)) else float(timing[f"mb_{way}"]) * 1e6


def pipeline_families(stats: Mapping[str, Any], run_id: str) -> Iterator[Any]:
    """The metric families of one finished run, from its stats.json contents."""
    totals = {
        "winnow_pipeline_read_records_total": stats["read"],
        "winnow_pipeline_kept_records_total": stats["kept"],
        "winnow_pipeline_rejected_records_total": stats["rejected"],
        "winnow_pipeline_dead_letter_records_total": stats["dead_letter"],
        "winnow_pipeline_shard_bytes_total": stats.get("shards", {}).get("bytes", 0),
        "winnow_pipeline_elapsed_seconds": stats.get("elapsed_s", 0.0),
        "winnow_pipeline_balanced": 1.0 if stats.get("balanced") else 0.0,
    }
    for name, value in totals.items():
        f = _family(name)
        f.add_metric([run_id], float(value))
        yield f
    fam = {n: _family(n) for n in (
        "winnow_pipeline_stage_records_in_total", "winnow_pipeline_stage_records_out_total",
        "winnow_pipeline_stage_rejected_total", "winnow_pipeline_stage_dead_letter_total",
    )}
    for st in stats.get("stages", ()):
        labels = [run_id, st["name"]]
        fam["winnow_pipeline_stage_records_in_total"].add_metric(labels, float(st["in"]))
        fam["winnow_pipeline_stage_records_out_total"].add_metric(labels, float(st["out"]))
        fam["winnow_pipeline_stage_dead_letter_total"].add_metric(labels, float(st["dead_letter"]))
        for reason, n in st["rejected"].items():
            fam["winnow_pipeline_stage_rejected_total"].add_metric([*labels, reason], float(n))
    timing = {n: _family(n) for n in (
        "winnow_pipeline_stage_cpu_seconds_total", "winnow_pipeline_stage_bytes_in_total",
        "winnow_pipeline_stage_bytes_out_total",
    )}
    for stage, t in stats.get("timing", {}).items():
        labels = [run_id, stage]
        timing["winnow_pipeline_stage_cpu_seconds_total"].add_metric(labels, float(t["cpu_s"]))
        timing["winnow_pipeline_stage_bytes_in_total"].add_metric(labels, float(_bytes(t, "in")))
        timing["winnow_pipeline_stage_bytes_out_total"].add_metric(labels, float(_bytes(t, "out")))
    yield from fam.values()
    yield from timing.values()


class _StatsCollector:
    def __init__(self, stats: Mapping[str, Any], run_id: str) -> None:
        self._stats, self._run_id = stats, run_id

    def collect(self) -> Iterator[Any]:
        return pipeline_families(self._stats, self._run_id)


def push_pipeline(url: str, stats: Mapping[str, Any], run_id: str, timeout: float = 10.0) -> None:
    """Push one run's metrics to the Pushgateway at ``url`` (replacing that run id's group).

    Raises:
        OutputError: the Pushgateway cannot be reached or refuses the push.
    """
    from prometheus_client import CollectorRegistry, push_to_gateway

    from winnow.errors import OutputError

    reg = CollectorRegistry()
    reg.register(_StatsCollector(stats, run_id))
    try:
        push_to_gateway(url, job=PIPELINE_JOB, registry=reg, grouping_key={"run_id": run_id}, timeout=timeout)
    except Exception as exc:
        raise OutputError(f"--pushgateway {url}: the push failed ({type(exc).__name__}: {exc}); "
                          "check the URL (host:port of a running Pushgateway)") from exc
