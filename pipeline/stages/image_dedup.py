"""``image_dedup``: near-duplicate images by perceptual hash, clustered inside Beam.

Each image (``image`` and ``image_text`` records) gets 64-bit pHashes of its luma and chroma;
``bands`` keys of ``rows`` sampled luma bits each put candidates in buckets; a bucket member
links to the bucket's smallest node only if their luma hashes are within ``max_distance`` bits
and their chroma hashes within ``max_color_distance`` (and, with
``match: image+caption``, their captions are near-duplicates too). Clusters are then found and
resolved as for text (:mod:`winnow.pipeline.stages.dedup_graph`). Records without an image
pass through with null columns; an image that cannot be decoded is dead-lettered.
"""

from __future__ import annotations

from typing import Any, Iterable

import apache_beam as beam
import pyarrow as pa

from winnow.filters.dedup.cluster import node_key
from winnow.filters.dedup.config import ImageDedupConfig
from winnow.pipeline.records import make_dead_letter
from winnow.pipeline.stages.base import DEAD, StageCounters, StageOutputs, error_text
from winnow.pipeline.stages.dedup_graph import ClusterAndPick

__all__ = ["ImageDedup", "FIELDS", "REASON", "NAME"]

NAME = "image_dedup"
REASON = "image_dedup_near_duplicate"
FIELDS = (
    pa.field("image_dup_cluster", pa.string(), nullable=True),
    pa.field("image_dup_cluster_size", pa.int64(), nullable=True),
    pa.field("image_phash", pa.string(), nullable=True),  # hex of the Y, Cb and Cr pHashes
)
_BANDS, _PASS = "bands", "pass"


class _HashFn(beam.DoFn):
    def __init__(self, cfg: ImageDedupConfig) -> None:
        self._cfg = cfg

    def setup(self) -> None:
        self._counters = StageCounters(NAME)

    def process(self, rec: dict) -> Iterable[Any]:
        from winnow.filters.dedup.phash import image_band_keys, phash_ycc

        img = rec.get("image")
        if img is None:
            out = dict(rec)
            out["image_dup_cluster"] = out["image_dup_cluster_size"] = out["image_phash"] = None
            self._counters.inc("not_compared")
            yield beam.pvalue.TaggedOutput(_PASS, out)
            return
        try:
            h = phash_ycc(bytes(img))
        except Exception as exc:  # noqa: BLE001 - an undecodable image is a dead letter, not a crash
            self._counters.inc("dead_letter")
            yield beam.pvalue.TaggedOutput(DEAD, make_dead_letter(stage=NAME, error=error_text(exc),
                                                                  source=rec.get("source", "?"), record=rec))
            return
        c = self._cfg
        out = dict(rec)
        out["image_phash"] = "".join(f"{x:016x}" for x in h)
        node = node_key(out, c.keep, c.keep_field)
        yield node, out
        payload = (h, rec.get("text") if c.match == "image+caption" else None)
        for key in image_band_keys(h[0], c.bands, c.rows, c.seed):
            yield beam.pvalue.TaggedOutput(_BANDS, (key, (node, payload)))


class _Similar:
    """pHashes close in luma and colour (and captions alike, with image+caption)."""

    def __init__(self, cfg: ImageDedupConfig) -> None:
        self._d, self._cd, self._caption = cfg.max_distance, cfg.max_color_distance, cfg.match == "image+caption"
        self._t, self._n = cfg.caption_threshold, cfg.caption_ngram

    def __call__(self, a: tuple, b: tuple) -> bool:
        from winnow.filters.dedup.phash import caption_similarity, images_similar

        if not images_similar(a[0], b[0], self._d, self._cd):
            return False
        return not self._caption or caption_similarity(a[1], b[1], self._n) >= self._t


def _example(rec: dict, chars: int = 300) -> dict:
    t, img = rec.get("text"), rec.get("image")
    return {"text": None if t is None else t[:chars], "phash": rec.get("image_phash"),
            "image": bytes(img) if img is not None and len(img) <= 65536 else None}


class ImageDedup(beam.PTransform):
    """Keep one record per cluster of images whose perceptual hashes are within max_distance."""

    def __init__(self, cfg: ImageDedupConfig | None = None) -> None:
        super().__init__(label=NAME)
        self._cfg = cfg or ImageDedupConfig()

    def expand(self, records: beam.PCollection) -> StageOutputs:
        cfg = self._cfg
        hashed = records | "Hash" >> beam.ParDo(_HashFn(cfg)).with_outputs(_BANDS, _PASS, DEAD, main="keyed")
        kept, rejected, stats = hashed.keyed | "Cluster" >> ClusterAndPick(
            NAME, REASON, "image_dup", hashed[_BANDS], similar=_Similar(cfg), max_rounds=cfg.max_rounds,
            fail_if_not_converged=cfg.on_not_converged == "fail", example_fn=_example, examples=cfg.examples)
        params = records.pipeline | "Params" >> beam.Create([{
            "bands": cfg.bands, "rows": cfg.rows, "max_distance": cfg.max_distance,
            "max_color_distance": cfg.max_color_distance, "match": cfg.match}])
        all_kept = (kept, hashed[_PASS]) | "KeptAll" >> beam.Flatten()
        return StageOutputs(kept=all_kept, rejected=rejected, dead=hashed[DEAD],
                            stats=(stats, params) | "StatsAll" >> beam.Flatten())
