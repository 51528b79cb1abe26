"""``minhash_dedup``: text near-duplicates by MinHash LSH, clustered inside Beam.

Records of the configured modalities are signed in batches (vectorised MinHash, see
:mod:`winnow.filters.dedup.minhash`), emit one key per LSH band, and go through
:class:`~winnow.pipeline.stages.dedup_graph.ClusterAndPick`. Records that cannot be signed
(no text, or no word in it) and records of other modalities pass through kept, with null
``dup_cluster`` and ``dup_cluster_size``.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from winnow.filters.dedup.cluster import node_key
from winnow.filters.dedup.config import MinHashDedupConfig
from winnow.pipeline.spill import SpillingGroupByKey
from winnow.pipeline.stages.base import DEAD, TIMING, Emit, StageFn, StageOutputs, run_step, timed_step
from winnow.pipeline.stages.dedup_graph import (
    COMPARED,
    BucketPacker,
    ClusterAndPick,
    NodeOf,
    VerifyEdges,
    node_partition,
    pack_payloads,
    select_payloads,
)
from winnow.pipeline.stages.dedup_report import dedup_section
from winnow.pipeline.stages.spec import BuildContext, StageDecl

__all__ = ["DECLARATION", "MinHashDedup", "FIELDS", "REASON", "NAME"]

NAME = "minhash_dedup"
REASON = "minhash_dedup_near_duplicate"
#: Kept records: the cluster's id (its kept record's id) and size; null when not compared.
FIELDS = (pa.field("dup_cluster", pa.string(), nullable=True), pa.field("dup_cluster_size", pa.int64(), nullable=True))
_BANDS = "bands"
#: Bytes of a band key in the shuffle: the band number (2 bytes) and the first 64 bits of the
#: band's 128-bit hash (:func:`winnow.filters.dedup.lsh.band_keys`). Two different bands collide
#: with odds of N^2 / 2^65 per band (about 0.03 chance pairs at a billion documents), and a chance
#: pair is a candidate that verification removes, so the other 64 bits need not travel.
KEY_WIDTH = 10
_SKETCH = "sketch"


#: Band keys the signing step gathers (across batches of a bundle) before it packs them: a
#: packed element per shuffle partition per this many keys, not per batch.
_DRAIN_KEYS = 1 << 16


class _SignFn(StageFn):
    """Signs the batch's compared records; every record goes on (flagged), band keys go out.

    Band keys and sketches are packed per shuffle partition once ``_DRAIN_KEYS`` keys have
    gathered, and at the end of the bundle (timed like the batches)."""

    def __init__(self, cfg: MinHashDedupConfig, bands: int, rows: int) -> None:
        super().__init__(NAME, last=False)
        self._cfg, self._bands, self._rows = cfg, bands, rows

    def start(self) -> None:
        from winnow.filters.dedup.minhash import MinHasher

        c = self._cfg
        self._hasher = MinHasher(c.num_perm, c.ngram, c.seed, window_chars=c.window_chars)
        self.start_bundle()

    def start_bundle(self) -> None:
        self._packer = BucketPacker(self._cfg.bucket_partitions, KEY_WIDTH)
        self._sketches: list[tuple[Any, bytes]] = []

    def compute(self, rows: list[dict], *side: Any) -> list[Any]:
        from winnow.filters.dedup.lsh import band_key_array
        from winnow.filters.dedup.minhash import sketch_of

        mods = self._cfg.modalities
        idx = [i for i, r in enumerate(rows) if r.get("modality", "text") in mods and isinstance(r.get("text"), str)]
        out: list[Any] = [None] * len(rows)
        if idx:
            sigs, seen = self._hasher.signatures([rows[i]["text"] for i in idx])
            keys = band_key_array(sigs, self._bands, self._rows, self._cfg.seed, KEY_WIDTH)
            sketches = sketch_of(sigs) if self._cfg.verify == "signature" else None
            for j, i in enumerate(idx):
                out[i] = (keys[j], None if sketches is None else sketches[j].tobytes()) if seen[j] else False
        return out

    def _drain(self) -> Iterable[tuple[str, Any]]:
        for element in self._packer.drain():
            yield _BANDS, element
        if self._sketches:
            sketches, self._sketches = self._sketches, []
            for element in pack_payloads(sketches, self._cfg.bucket_partitions):
                yield _SKETCH, element

    def finish_batch(self, out: Emit) -> None:
        if self._packer.pending >= _DRAIN_KEYS:
            for tag, element in self._drain():
                out.emit(tag, element)

    def finish_bundle(self) -> Iterable[Any]:
        from apache_beam.transforms.window import GlobalWindows

        t0 = time.thread_time()
        rest = list(self._drain())
        cpu = time.thread_time() - t0
        super().finish_bundle()
        if rest:
            yield beam.pvalue.TaggedOutput(TIMING, GlobalWindows.windowed_value((NAME, (cpu, 0, 0, 0, 0))))
        for tag, element in rest:
            yield beam.pvalue.TaggedOutput(tag, GlobalWindows.windowed_value(element))

    def route(self, row: dict, keys: Any, out: Emit) -> None:
        row = dict(row)
        row[COMPARED] = keys is not None and keys is not False
        if keys is None:
            out.count("not_compared")
        elif keys is False:
            out.count("unsigned")
        else:
            node = node_key(row, self._cfg.keep, self._cfg.keep_field)
            band, sketch = keys
            self._packer.add(node, band)
            if sketch is not None:
                self._sketches.append((node, sketch))
        out.keep(row)


class _SketchCheck:
    """Estimated Jaccard (fraction of equal 16-bit sketch values) >= the bar; within
    ``margin`` of the bar, undecided (None) when ``margin`` > 0."""

    def __init__(self, bar: float, margin: float = 0.0) -> None:
        self._bar, self._margin = bar, margin

    def prepare(self, sketch: bytes | None) -> Any:
        import numpy as np

        return None if sketch is None else np.frombuffer(sketch, dtype=np.uint16)

    def __call__(self, sketch_u: Any, sketch_v: Any) -> bool | None:
        from winnow.filters.dedup.minhash import sketch_similarity

        if sketch_u is None or sketch_v is None:
            return False
        est = sketch_similarity(sketch_u, sketch_v)
        if self._margin > 0 and abs(est - self._bar) < self._margin:
            return None
        return est >= self._bar

    def similarity(self, sketch_u: Any, sketch_v: Any) -> float:
        from winnow.filters.dedup.minhash import sketch_similarity

        return float(sketch_similarity(sketch_u, sketch_v))


class _SignatureThenExact(beam.PTransform):
    """Signature verification; pairs whose estimate lies within ``exact_margin`` of the bar
    are settled by the exact Jaccard of their texts: compared texts meet the undecided nodes in
    one shuffle, and only the texts of records on undecided pairs go on to the two shuffles of
    the exact check."""

    def __init__(self, sketches: beam.PCollection, records: beam.PCollection, cfg: MinHashDedupConfig,
                 spill_dir: str | None = None) -> None:
        super().__init__()
        self._sketches, self._records, self._cfg = sketches, records, cfg
        self._spill_dir = spill_dir
        #: once applied: the timing outputs of its steps (they count toward the stage's time)
        self.timings: list[beam.PCollection] = []

    def expand(self, edges: beam.PCollection) -> beam.PCollection:
        cfg = self._cfg
        spill = self._spill_dir
        weighted = cfg.cluster == "representative"
        sketch = VerifyEdges(self._sketches, _SketchCheck(cfg.signature_threshold(), cfg.exact_margin),
                             cfg.bucket_partitions, undecided=True, weighted=weighted, spill_dir=spill, stage=NAME)
        sure, maybe = edges | "Sketch" >> sketch
        timings = self.timings = list(sketch.timings)

        def counted(e: Any) -> Any:
            Metrics.counter("winnow", f"{NAME}/verify_exact_checked").inc()
            return e

        maybe = maybe | "CountUndecided" >> beam.Map(counted)
        # Compared texts travel packed (compressed blobs per batch and partition) and meet the
        # nodes of undecided pairs by partition; only those nodes' texts go on to the check.
        # (A side input of undecided nodes would fuse with the pick and never become ready.)
        parts = cfg.bucket_partitions
        flags = maybe | "UndecidedNodes" >> beam.FlatMap(
            lambda e: [(node_partition(n, parts), ("f", n)) for n in e])

        def texts(batch: Any) -> Iterable[tuple[int, tuple[str, bytes]]]:
            pairs = [(node_key(r, cfg.keep, cfg.keep_field), r.get("text")) for r in batch.rows if r.get(COMPARED)]
            return [(k, ("t", blob)) for k, blob in pack_payloads(pairs, parts)]

        def wanted(element: Any) -> Iterable[tuple[int, bytes]]:
            part, values = element
            flagged = {v for tag, v in values if tag == "f"}
            if not flagged:
                return
            # the flagged nodes' texts, still compressed as they were packed
            blob = select_payloads((v for tag, v in values if tag == "t"), flagged)
            if blob is not None:
                yield part, blob

        all_texts = timed_step(self._records, "AllTexts", NAME, texts, timings=timings)
        grouped = (all_texts, flags) | "GroupTexts" >> SpillingGroupByKey(spill)
        payloads = timed_step(grouped, "UndecidedTexts", NAME, wanted, timings=timings)
        check = VerifyEdges(payloads, _ExactCheck(cfg), parts, weighted=weighted, spill_dir=spill, stage=NAME)
        exact = maybe | "Exact" >> check
        timings += check.timings
        return (sure, exact) | "Verified" >> beam.Flatten()


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

    def prepare_many(self, texts: list[str | None]) -> list[Any]:
        return self._hasher.shingle_hashes_many(texts)

    def __call__(self, shingles_u: Any, shingles_v: Any) -> bool:
        return self.similarity(shingles_u, shingles_v) >= self._cfg.threshold

    def similarity(self, shingles_u: Any, shingles_v: Any) -> float:
        from winnow.filters.dedup.minhash import jaccard

        return float(jaccard(shingles_u, shingles_v))

    def __getstate__(self) -> dict:
        return {"_cfg": self._cfg, "_hasher": None}


def _example(rec: dict, chars: int = 600) -> dict:
    t = rec.get("text")
    return {"text": None if t is None else t[:chars], "chars": None if t is None else len(t)}


class MinHashDedup(beam.PTransform):
    """Keep one record per cluster of texts whose shingle Jaccard reaches the threshold."""

    def __init__(self, cfg: MinHashDedupConfig | None = None, spill_dir: str | None = None) -> None:
        super().__init__(label=NAME)
        self._cfg = cfg or MinHashDedupConfig()
        self._spill_dir = spill_dir

    def expand(self, records: beam.PCollection) -> StageOutputs:
        cfg = self._cfg
        bands, rows = cfg.banding()
        signed = run_step(records, "Sign", _SignFn(cfg, bands, rows), tags=(_BANDS, _SKETCH))
        verify = None
        extra: list = []  # timing outputs of steps outside the clustering
        weighted = cfg.cluster == "representative"
        if cfg.verify == "signature" and cfg.exact_margin > 0:
            verify = _SignatureThenExact(signed[_SKETCH], signed.kept, cfg, spill_dir=self._spill_dir)
        elif cfg.verify == "signature":
            verify = VerifyEdges(signed[_SKETCH], _SketchCheck(cfg.signature_threshold()), cfg.bucket_partitions,
                                 weighted=weighted, spill_dir=self._spill_dir, stage=NAME)
        elif cfg.verify == "exact":
            def payloads(batch: Any) -> Iterable[tuple[int, bytes]]:
                pairs = [(node_key(r, cfg.keep, cfg.keep_field), r.get("text")) for r in batch.rows if r.get(COMPARED)]
                return pack_payloads(pairs, cfg.bucket_partitions)

            verify = VerifyEdges(timed_step(signed.kept, "TextPayload", NAME, payloads, timings=extra),
                                 _ExactCheck(cfg), cfg.bucket_partitions, weighted=weighted,
                                 spill_dir=self._spill_dir, stage=NAME)
        kept, rejected, dead, stats, timing = signed.kept | "Cluster" >> ClusterAndPick(
            NAME, REASON, "dup", signed[_BANDS], node_of=NodeOf(cfg.keep, cfg.keep_field), fields=FIELDS, verify=verify,
            max_rounds=cfg.max_rounds, fail_if_not_converged=cfg.on_not_converged == "fail",
            example_fn=_example, examples=cfg.examples, packed_key_width=KEY_WIDTH,
            roots=cfg.bucket_roots if cfg.verify != "none" else 1, cluster=cfg.cluster)
        params = records.pipeline | "Params" >> beam.Create([{
            "bands": bands, "rows": rows, "num_perm": cfg.num_perm, "ngram": cfg.ngram,
            "threshold": cfg.threshold, "verify": cfg.verify, "cluster": cfg.cluster,
            "verify_threshold": cfg.signature_threshold() if cfg.verify == "signature" else None,
            "exact_margin": cfg.exact_margin if cfg.verify == "signature" else None}])
        all_stats = (stats, params) | "StatsAll" >> beam.Flatten()
        return StageOutputs(kept=kept, rejected=rejected, dead=(signed[DEAD], dead) | "Dead" >> beam.Flatten(),
                            stats=all_stats, timing=(signed[TIMING], timing, *extra))


def _build(cfg: MinHashDedupConfig, ctx: BuildContext) -> beam.PTransform:
    return MinHashDedup(cfg, spill_dir=ctx.spill_dir)


DECLARATION = StageDecl(NAME, MinHashDedupConfig, _build, lambda cfg: FIELDS, (REASON,),
                        report=dedup_section(NAME, "Near-duplicate text clusters (MinHash)"))
