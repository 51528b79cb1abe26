"""``minhash_dedup``: text near-duplicates by MinHash LSH, clustered inside Beam.

Records of the configured modalities are signed in batches (vectorised MinHash, see
:mod:`winnow.filters.dedup.minhash`), emit one key per LSH band, and go through
:class:`~winnow.pipeline.stages.dedup_graph.ClusterAndPick`. Records that cannot be signed
(no text, or no word in it) and records of other modalities pass through kept, with null
``dup_cluster`` and ``dup_cluster_size``.
"""

from __future__ import annotations

from typing import Any, Iterable

import apache_beam as beam
import pyarrow as pa

from winnow.filters.dedup.cluster import node_key
from winnow.filters.dedup.config import MinHashDedupConfig
from winnow.pipeline.records import make_dead_letter
from winnow.pipeline.stages.base import DEAD, BatchRecords, StageCounters, StageOutputs, error_text
from winnow.pipeline.stages.dedup_graph import ClusterAndPick, VerifyEdges

__all__ = ["MinHashDedup", "FIELDS", "REASON", "NAME"]

NAME = "minhash_dedup"
REASON = "minhash_dedup_near_duplicate"
#: Kept records: the cluster's id (its kept record's id) and size; null when not compared.
FIELDS = (pa.field("dup_cluster", pa.string(), nullable=True), pa.field("dup_cluster_size", pa.int64(), nullable=True))
_BANDS, _PASS = "bands", "pass"


def _passthrough(record: dict) -> dict:
    out = dict(record)
    out["dup_cluster"] = None
    out["dup_cluster_size"] = None
    return out


class _SignFn(beam.DoFn):
    def __init__(self, cfg: MinHashDedupConfig, bands: int, rows: int) -> None:
        self._cfg, self._bands, self._rows = cfg, bands, rows

    def setup(self) -> None:
        from winnow.filters.dedup.minhash import MinHasher

        c = self._cfg
        self._hasher = MinHasher(c.num_perm, c.ngram, c.seed, window_chars=c.window_chars)
        self._counters = StageCounters(NAME)

    def process(self, batch: list[dict]) -> Iterable[Any]:
        mods = self._cfg.modalities
        todo = [r for r in batch if r.get("modality", "text") in mods and isinstance(r.get("text"), str)]
        for r in batch:
            if not (r.get("modality", "text") in mods and isinstance(r.get("text"), str)):
                self._counters.inc("not_compared")
                yield beam.pvalue.TaggedOutput(_PASS, _passthrough(r))
        try:
            sigs, seen = self._hasher.signatures([r["text"] for r in todo])
        except Exception:  # noqa: BLE001 - find the record that breaks signing, one at a time
            for r in todo:
                yield from self._one(r)
            return
        yield from self._route(todo, sigs, seen)

    def _one(self, r: dict) -> Iterable[Any]:
        try:
            sigs, seen = self._hasher.signatures([r["text"]])
        except Exception as exc:  # noqa: BLE001
            self._counters.inc("dead_letter")
            yield beam.pvalue.TaggedOutput(DEAD, make_dead_letter(stage=NAME, error=error_text(exc),
                                                                  source=r.get("source", "?"), record=r))
            return
        yield from self._route([r], sigs, seen)

    def _route(self, recs: list[dict], sigs: Any, seen: Any) -> Iterable[Any]:
        from winnow.filters.dedup.lsh import band_keys

        keys = band_keys(sigs, self._bands, self._rows, self._cfg.seed) if len(recs) else []
        for i, r in enumerate(recs):
            if not seen[i]:
                self._counters.inc("unsigned")
                yield beam.pvalue.TaggedOutput(_PASS, _passthrough(r))
                continue
            node = node_key(r, self._cfg.keep, self._cfg.keep_field)
            yield node, r
            for key in keys[i]:
                yield beam.pvalue.TaggedOutput(_BANDS, (key, (node, None)))


class _ExactCheck:
    """Exact Jaccard of two texts' shingle sets >= threshold (hasher built once per worker)."""

    def __init__(self, cfg: MinHashDedupConfig) -> None:
        self._cfg = cfg
        self._hasher = None

    def setup(self) -> None:
        from winnow.filters.dedup.minhash import MinHasher

        c = self._cfg
        self._hasher = MinHasher(c.num_perm, c.ngram, c.seed, window_chars=c.window_chars)

    def prepare(self, text: str | None) -> Any:
        return self._hasher.shingle_hashes(text)

    def __call__(self, text_u: str | None, shingles_v: Any) -> bool:
        from winnow.filters.dedup.minhash import jaccard

        return jaccard(self._hasher.shingle_hashes(text_u), shingles_v) >= self._cfg.threshold

    def __getstate__(self) -> dict:
        return {"_cfg": self._cfg, "_hasher": None}


def _example(rec: dict, chars: int = 600) -> dict:
    t = rec.get("text")
    return {"text": None if t is None else t[:chars], "chars": None if t is None else len(t)}


class MinHashDedup(beam.PTransform):
    """Keep one record per cluster of texts whose shingle Jaccard reaches the threshold."""

    def __init__(self, cfg: MinHashDedupConfig | None = None) -> None:
        super().__init__(label=NAME)
        self._cfg = cfg or MinHashDedupConfig()

    def expand(self, records: beam.PCollection) -> StageOutputs:
        cfg = self._cfg
        bands, rows = cfg.banding()
        signed = (records | "Batch" >> BatchRecords(cfg.batch_size)
                  | "Sign" >> beam.ParDo(_SignFn(cfg, bands, rows)).with_outputs(_BANDS, _PASS, DEAD, main="keyed"))
        verify = None
        if cfg.verify == "exact":
            payloads = signed.keyed | "TextPayload" >> beam.Map(lambda kv: (kv[0], kv[1].get("text")))
            verify = VerifyEdges(payloads, _ExactCheck(cfg))
        kept, rejected, stats = signed.keyed | "Cluster" >> ClusterAndPick(
            NAME, REASON, "dup", signed[_BANDS], verify=verify, max_rounds=cfg.max_rounds,
            fail_if_not_converged=cfg.on_not_converged == "fail", example_fn=_example, examples=cfg.examples)
        params = records.pipeline | "Params" >> beam.Create([{
            "bands": bands, "rows": rows, "num_perm": cfg.num_perm, "ngram": cfg.ngram,
            "threshold": cfg.threshold, "verify": cfg.verify}])
        all_kept = (kept, signed[_PASS]) | "KeptAll" >> beam.Flatten()
        all_stats = (stats, params) | "StatsAll" >> beam.Flatten()
        return StageOutputs(kept=all_kept, rejected=rejected, dead=signed[DEAD], stats=all_stats)
