"""Loader metrics: per-tier hit counts, bytes fetched, stall time; as a dict or for Prometheus.

Each process counts in plain attributes (no locks: one reader thread per process updates
them; the prefetch threads keep their own :class:`Metrics`). DataLoader workers write a JSON
snapshot to ``<cache>/metrics/<session>-<pid>.json`` at most once a second and when their
iteration ends; the main process sums its own counters and its session's snapshots.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Mapping

__all__ = ["Metrics", "MetricsSink", "summarize", "serve_prometheus"]


@dataclass
class Metrics:
    """Counters of one process.

    Shard accesses are counted once per step and shard: an L1 hit found the shard mapped,
    an L2 hit mapped it from the local cache, an L3 fetch downloaded it first.
    """

    samples: int = 0
    steps: int = 0
    l1_hits: int = 0
    l2_hits: int = 0
    l3_fetches: int = 0
    l1_evictions: int = 0
    batch_hits: int = 0
    batch_decodes: int = 0
    bytes_fetched: int = 0
    fetch_retries: int = 0
    checksum_failures: int = 0
    corrupt_refetches: int = 0
    prefetched_shards: int = 0
    prefetch_bytes: int = 0
    prefetch_retries: int = 0
    transfer_recycled: int = 0
    transfer_fresh: int = 0
    stall_s: float = 0.0
    busy_s: float = 0.0

    def add(self, other: Mapping[str, Any]) -> None:
        for f in fields(self):
            if f.name in other:
                setattr(self, f.name, getattr(self, f.name) + other[f.name])

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)


def summarize(m: Mapping[str, Any]) -> dict[str, Any]:
    """Counters plus derived rates (hit rates per tier, share of time stalled)."""
    out = dict(m)
    acc = m["l1_hits"] + m["l2_hits"] + m["l3_fetches"]
    out["shard_accesses"] = acc
    out["hit_rate_l1"] = m["l1_hits"] / acc if acc else 0.0
    out["hit_rate_l2"] = m["l2_hits"] / acc if acc else 0.0
    out["miss_rate_l3"] = m["l3_fetches"] / acc if acc else 0.0
    dec = m["batch_hits"] + m["batch_decodes"]
    out["hit_rate_batch_lru"] = m["batch_hits"] / dec if dec else 0.0
    out["bytes_fetched_total"] = m["bytes_fetched"] + m["prefetch_bytes"]
    out["stall_share"] = m["stall_s"] / m["busy_s"] if m["busy_s"] else 0.0
    return out


class MetricsSink:
    """Writes a process's snapshot where the main process can sum it."""

    def __init__(self, directory: str, session: str) -> None:
        self.directory = directory
        self.session = session
        self._last = 0.0
        os.makedirs(directory, exist_ok=True)

    def maybe_flush(self, snap: Callable[[], dict[str, Any]], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 1.0:
            return
        self._last = now
        path = os.path.join(self.directory, f"{self.session}-{os.getpid()}.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(snap(), f)
        os.replace(tmp, path)

    def collect(self, exclude_pid: int) -> Metrics:
        total = Metrics()
        for name in os.listdir(self.directory):
            if not name.startswith(self.session + "-") or not name.endswith(".json"):
                continue
            if name == f"{self.session}-{exclude_pid}.json":
                continue
            try:
                with open(os.path.join(self.directory, name)) as f:
                    total.add(json.load(f))
            except (OSError, ValueError):
                continue
        return total


def serve_prometheus(source: Callable[[], Mapping[str, Any]], port: int = 9464, addr: str = "127.0.0.1",
                     prefix: str = "winnow_loader") -> Any:
    """Expose ``source()`` (e.g. ``dataset.metrics``) on ``http://addr:port/metrics``.

    Counters become ``<prefix>_<name>_total``, rates and shares gauges. Needs ``prometheus_client``.

    Returns:
        The ``(server, thread)`` pair from ``prometheus_client.start_http_server``.
    """
    from prometheus_client import start_http_server
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import CollectorRegistry

    class _Collector:
        def collect(self) -> Any:
            data = source()
            for k, v in data.items():
                if not isinstance(v, (int, float)):
                    continue
                if k.startswith(("hit_rate", "miss_rate")) or k.endswith("_share"):
                    yield GaugeMetricFamily(f"{prefix}_{k}", f"winnow loader {k}", value=float(v))
                else:
                    yield CounterMetricFamily(f"{prefix}_{k}", f"winnow loader {k}", value=float(v))

    registry = CollectorRegistry()
    registry.register(_Collector())
    return start_http_server(port, addr=addr, registry=registry)
