"""The loader's metrics (``StreamingDataset.metrics()``) under winnow's metric names.

An adapter over the loader's existing snapshot API (:mod:`winnow.cache.metrics`): it maps the
snapshot's keys onto :data:`~winnow.monitoring.names.LOADER` with a ``rank`` label, and serves
them on ``/metrics`` (scraped while training runs) or pushes them (a short job).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

from winnow.monitoring.names import LOADER

__all__ = ["loader_families", "loader_exposition", "serve_loader", "push_loader", "LOADER_JOB", "SNAPSHOT_KEYS"]

LOADER_JOB = "winnow_loader"

#: metric name -> how its value comes from a ``summarize``-d snapshot.
SNAPSHOT_KEYS: dict[str, Callable[[Mapping[str, Any]], float]] = {
    "winnow_loader_samples_total": lambda m: m["samples"],
    "winnow_loader_steps_total": lambda m: m["steps"],
    "winnow_loader_l1_hits_total": lambda m: m["l1_hits"],
    "winnow_loader_l2_hits_total": lambda m: m["l2_hits"],
    "winnow_loader_l3_fetches_total": lambda m: m["l3_fetches"],
    "winnow_loader_l1_evictions_total": lambda m: m["l1_evictions"],
    "winnow_loader_fetched_bytes_total": lambda m: m["bytes_fetched"] + m["prefetch_bytes"],
    "winnow_loader_fetch_retries_total": lambda m: m["fetch_retries"] + m["prefetch_retries"],
    "winnow_loader_checksum_failures_total": lambda m: m["checksum_failures"],
    "winnow_loader_prefetched_shards_total": lambda m: m["prefetched_shards"],
    "winnow_loader_prefetched_bytes_total": lambda m: m["prefetch_bytes"],
    "winnow_loader_corrupt_refetches_total": lambda m: m["corrupt_refetches"],
    "winnow_loader_shard_accesses_total": lambda m: m["l1_hits"] + m["l2_hits"] + m["l3_fetches"],
    "winnow_loader_batch_cache_hits_total": lambda m: m["batch_hits"],
    "winnow_loader_batch_decodes_total": lambda m: m["batch_decodes"],
    "winnow_loader_transfer_chunks_recycled_total": lambda m: m["transfer_recycled"],
    "winnow_loader_transfer_chunks_fresh_total": lambda m: m["transfer_fresh"],
    "winnow_loader_stall_seconds_total": lambda m: m["stall_s"],
    "winnow_loader_busy_seconds_total": lambda m: m["busy_s"],
    "winnow_loader_hit_rate_l1": lambda m: m["hit_rate_l1"],
    "winnow_loader_hit_rate_l2": lambda m: m["hit_rate_l2"],
    "winnow_loader_miss_rate_l3": lambda m: m["miss_rate_l3"],
    "winnow_loader_hit_rate_batch_cache": lambda m: m["hit_rate_batch_lru"],
    "winnow_loader_stall_share": lambda m: m["stall_share"],
}


_PREFIX = "winnow_loader"


def loader_families(snapshot: Mapping[str, Any], rank: int | str = 0, prefix: str = _PREFIX) -> Iterator[Any]:
    """Metric families from one ``StreamingDataset.metrics()`` result of ``rank``.

    ``prefix`` replaces ``winnow_loader`` at the start of every name (the rest stays as in
    :data:`~winnow.monitoring.names.LOADER`).
    """
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    for name, get in SNAPSHOT_KEYS.items():
        m = LOADER[name]
        shown = prefix + name[len(_PREFIX):]
        fam = (CounterMetricFamily if m.kind == "counter" else GaugeMetricFamily)(shown, m.help, labels=["rank"])
        fam.add_metric([str(rank)], float(get(snapshot)))
        yield fam


class _Collector:
    def __init__(self, source: Callable[[], Mapping[str, Any]], rank: int | str, prefix: str = _PREFIX) -> None:
        self._source, self._rank, self._prefix = source, rank, prefix

    def collect(self) -> Iterator[Any]:
        return loader_families(self._source(), self._rank, self._prefix)


def _registry(source: Callable[[], Mapping[str, Any]], rank: int | str, prefix: str = _PREFIX) -> Any:
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry()
    reg.register(_Collector(source, rank, prefix))
    return reg


def loader_exposition(snapshot: Mapping[str, Any], rank: int | str = 0, prefix: str = _PREFIX) -> str:
    """The text a scrape of :func:`serve_loader` returns for ``snapshot`` (Prometheus text format)."""
    from prometheus_client import generate_latest

    return generate_latest(_registry(lambda: snapshot, rank, prefix)).decode("utf-8")


def serve_loader(source: Callable[[], Mapping[str, Any]], port: int, rank: int | str = 0, addr: str = "127.0.0.1",
                 prefix: str = _PREFIX) -> Any:
    """Serve ``source()`` (e.g. ``dataset.metrics``) on ``http://addr:port/metrics``.

    Returns:
        The ``(server, thread)`` pair of ``prometheus_client.start_http_server``; call
        ``server.shutdown()`` to stop.

    Raises:
        OSError: the port cannot be bound (taken by another process, or out of range).
    """
    from prometheus_client import start_http_server

    return start_http_server(port, addr=addr, registry=_registry(source, rank, prefix))


def push_loader(url: str, snapshot: Mapping[str, Any], rank: int | str = 0, job: str = LOADER_JOB, timeout: float = 10.0) -> None:
    """Push one rank's loader metrics to the Pushgateway (grouping key ``rank``)."""
    from prometheus_client import push_to_gateway

    push_to_gateway(url, job=job, registry=_registry(lambda: snapshot, rank), grouping_key={"rank": str(rank)}, timeout=timeout)
