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
from winnow.pipeline.stages.base import DEAD, TIMING, Emit, StageFn, StageOutputs, run_step
from winnow.pipeline.stages.dedup_graph import COMPARED, ClusterAndPick, NodeOf
from winnow.pipeline.stages.dedup_report import dedup_section
from winnow.pipeline.stages.spec import BuildContext, StageDecl

__all__ = ["DECLARATION", "ImageDedup", "FIELDS", "REASON", "NAME"]

NAME = "image_dedup"
REASON = "image_dedup_near_duplicate"
FIELDS = (
    pa.field("image_dup_cluster", pa.string(), nullable=True),
    pa.field("image_dup_cluster_size", pa.int64(), nullable=True),
    pa.field("image_phash", pa.string(), nullable=True),  # hex of the Y, Cb and Cr pHashes
)
_BANDS = "bands"


class _HashFn(StageFn):
    def __init__(self, cfg: ImageDedupConfig) -> None:
        super().__init__(NAME, last=False)
        self._cfg = cfg

    def compute(self, rows: list[dict], *side: Any) -> list[Any]:
        from winnow.filters.dedup.phash import phash_ycc

        return [None if r.get("image") is None else phash_ycc(bytes(r["image"])) for r in rows]

    def route(self, rec: dict, h: Any, out: Emit) -> None:
        from winnow.filters.dedup.phash import image_band_keys

        row = dict(rec)
        if h is None:
            row[COMPARED] = False
            row["image_phash"] = None
            out.count("not_compared")
            out.keep(row)
            return
        c = self._cfg
        row[COMPARED] = True
        row["image_phash"] = "".join(f"{x:016x}" for x in h)
        node = node_key(row, c.keep, c.keep_field)
        out.keep(row)
        payload = (h, rec.get("text") if c.match == "image+caption" else None)
        for key in image_band_keys(h[0], c.bands, c.rows, c.seed):
            out.emit(_BANDS, (key, (node, payload)))


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
        hashed = run_step(records, "Hash", _HashFn(cfg), tags=(_BANDS,))
        kept, rejected, dead, stats, timing = hashed.kept | "Cluster" >> ClusterAndPick(
            NAME, REASON, "image_dup", hashed[_BANDS], node_of=NodeOf(cfg.keep, cfg.keep_field), fields=FIELDS,
            similar=_Similar(cfg), max_rounds=cfg.max_rounds, fail_if_not_converged=cfg.on_not_converged == "fail",
            example_fn=_example, examples=cfg.examples)
        params = records.pipeline | "Params" >> beam.Create([{
            "bands": cfg.bands, "rows": cfg.rows, "max_distance": cfg.max_distance,
            "max_color_distance": cfg.max_color_distance, "match": cfg.match}])
        return StageOutputs(kept=kept, rejected=rejected, dead=(hashed[DEAD], dead) | "Dead" >> beam.Flatten(),
                            stats=(stats, params) | "StatsAll" >> beam.Flatten(), timing=(hashed[TIMING], timing))


def _build(cfg: ImageDedupConfig, ctx: BuildContext) -> beam.PTransform:
    return ImageDedup(cfg)


DECLARATION = StageDecl(NAME, ImageDedupConfig, _build, lambda cfg: FIELDS, (REASON,),
                        report=dedup_section(NAME, "Near-duplicate image clusters (pHash)"))
