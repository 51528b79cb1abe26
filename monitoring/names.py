"""The metric names winnow exports, in one scheme: ``winnow_<part>_<what>[_<unit>][_total]``.

Every endpoint and push uses only these names (``winnow.cache.serve_prometheus`` too: it serves
through :func:`winnow.monitoring.loader.serve_loader`), so a name is never exported twice with
two meanings. The unit is spelled out in the name (``_seconds``, ``_bytes``), counters end in
``_total`` once.

``part`` is ``pipeline`` (a curation run; labels ``run_id`` and ``stage``, plus ``reason`` on
rejects) or ``loader`` (training input; label ``rank``). Counters end in ``_total``, times are
seconds, sizes bytes, rates and shares are gauges between 0 and 1. The Beam counters of a run
(``winnow:<stage>/<reason>``) are the same numbers under Beam's own names on remote runners.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Metric", "PIPELINE", "LOADER", "metric_names"]


@dataclass(frozen=True)
class Metric:
    """One exported metric: its full name (as scraped), type, labels and help text."""

    name: str
    kind: Literal["counter", "gauge"]
    labels: tuple[str, ...]
    help: str


_RUN = ("run_id",)
_STAGE = ("run_id", "stage")

#: Metrics of a curation run, from its stats.json (per stage: the funnel and ``stats["timing"]``).
PIPELINE: dict[str, Metric] = {m.name: m for m in (
    Metric("winnow_pipeline_read_records_total", "counter", _RUN, "records read from the inputs"),
    Metric("winnow_pipeline_kept_records_total", "counter", _RUN, "original records kept (in the shards)"),
    Metric("winnow_pipeline_rejected_records_total", "counter", _RUN, "records rejected by any stage"),
    Metric("winnow_pipeline_dead_letter_records_total", "counter", _RUN, "records dead-lettered by any stage"),
    Metric("winnow_pipeline_shard_bytes_total", "counter", _RUN, "bytes of kept shards written"),
    Metric("winnow_pipeline_elapsed_seconds", "gauge", _RUN, "wall time of the run"),
    Metric("winnow_pipeline_balanced", "gauge", _RUN, "1 when read = kept + rejected + dead-lettered"),
    Metric("winnow_pipeline_stage_records_in_total", "counter", _STAGE, "records entering the stage"),
    Metric("winnow_pipeline_stage_records_out_total", "counter", _STAGE, "records leaving the stage kept"),
    Metric("winnow_pipeline_stage_rejected_total", "counter", (*_STAGE, "reason"), "records the stage rejected, by reason"),
    Metric("winnow_pipeline_stage_dead_letter_total", "counter", _STAGE, "records the stage dead-lettered"),
    Metric("winnow_pipeline_stage_cpu_seconds_total", "counter", _STAGE, "CPU seconds spent in the stage's steps"),
    Metric("winnow_pipeline_stage_bytes_in_total", "counter", _STAGE, "bytes of records entering the stage's steps"),
    Metric("winnow_pipeline_stage_bytes_out_total", "counter", _STAGE, "bytes of records leaving the stage's steps"),
)}

_RANK = ("rank",)

#: Metrics of the training loader, from ``StreamingDataset.metrics()`` (key in the snapshot -> metric).
LOADER: dict[str, Metric] = {m.name: m for m in (
    Metric("winnow_loader_samples_total", "counter", _RANK, "samples delivered"),
    Metric("winnow_loader_steps_total", "counter", _RANK, "steps (batches) delivered"),
    Metric("winnow_loader_l1_hits_total", "counter", _RANK, "shard accesses found mapped in memory (L1)"),
    Metric("winnow_loader_l2_hits_total", "counter", _RANK, "shard accesses mapped from the local disk cache (L2)"),
    Metric("winnow_loader_l3_fetches_total", "counter", _RANK, "shard accesses that fetched from remote storage (L3)"),
    Metric("winnow_loader_l1_evictions_total", "counter", _RANK, "shards unmapped from memory"),
    Metric("winnow_loader_fetched_bytes_total", "counter", _RANK, "bytes fetched from remote storage (on demand and prefetched)"),
    Metric("winnow_loader_fetch_retries_total", "counter", _RANK, "fetch retries (on demand and prefetch)"),
    Metric("winnow_loader_checksum_failures_total", "counter", _RANK, "shards that failed their checksum"),
    Metric("winnow_loader_prefetched_shards_total", "counter", _RANK, "shards prefetched ahead of use"),
    Metric("winnow_loader_prefetched_bytes_total", "counter", _RANK,
           "bytes the prefetcher fetched (included in winnow_loader_fetched_bytes_total)"),
    Metric("winnow_loader_corrupt_refetches_total", "counter", _RANK, "shards fetched again after a failed checksum"),
    Metric("winnow_loader_shard_accesses_total", "counter", _RANK, "shard accesses (L1 hits + L2 hits + L3 fetches)"),
    Metric("winnow_loader_batch_cache_hits_total", "counter", _RANK, "batches served from the decoded-batch cache"),
    Metric("winnow_loader_batch_decodes_total", "counter", _RANK, "batches decoded (decoded-batch cache misses)"),
    Metric("winnow_loader_transfer_chunks_recycled_total", "counter", _RANK, "transfer chunks packed into a recycled pool slot"),
    Metric("winnow_loader_transfer_chunks_fresh_total", "counter", _RANK, "transfer chunks packed into freshly allocated memory"),
    Metric("winnow_loader_stall_seconds_total", "counter", _RANK, "seconds the training loop waited for data"),
    Metric("winnow_loader_busy_seconds_total", "counter", _RANK, "seconds the loader was iterated"),
    Metric("winnow_loader_hit_rate_l1", "gauge", _RANK, "share of shard accesses served by L1"),
    Metric("winnow_loader_hit_rate_l2", "gauge", _RANK, "share of shard accesses served by L2"),
    Metric("winnow_loader_miss_rate_l3", "gauge", _RANK, "share of shard accesses that fetched (L3)"),
    Metric("winnow_loader_hit_rate_batch_cache", "gauge", _RANK, "share of batches served from the decoded-batch cache"),
    Metric("winnow_loader_stall_share", "gauge", _RANK, "share of loader time spent waiting for data"),
)}


def metric_names() -> frozenset[str]:
    """Every metric name winnow exports (pipeline and loader)."""
    return frozenset(PIPELINE) | frozenset(LOADER)
