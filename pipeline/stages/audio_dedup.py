"""``audio_dedup``: near-duplicate audio by log-mel fingerprints, clustered inside Beam.

Each clip (``audio`` and ``audio_text`` records) is decoded to 16 kHz mono and fingerprinted
(:mod:`winnow.filters.audio_fingerprint`: 32-bit sub-fingerprints of the log-mel spectrogram);
MinHash band keys of its token set put candidates in buckets, every bucket member becomes a
candidate pair with the bucket's ``bucket_roots`` smallest records, and each candidate edge is
verified by :func:`~winnow.filters.audio_fingerprint.clip_distance`: comparable durations and
the best-lag bit error rate of the heads (and tails, for clips longer than ``max_seconds``),
the overlap measured against the longer clip
(:class:`~winnow.pipeline.stages.dedup_graph.VerifyEdges`: a fingerprint travels once per
record, packed per batch). Clusters are then found and resolved as for text and images
(:class:`~winnow.pipeline.stages.dedup_graph.ClusterAndPick`), by default with
``cluster: representative``: every removed clip matched the clip kept for it, so a short clip
(a jingle) shared by two different recordings cannot chain them into one cluster. Re-encoded
(WAV/FLAC/MP3/Ogg), re-levelled and trimmed copies of a clip cluster together; different clips,
and recordings that merely contain a shorter clip, do not.

Records without audio, or of other modalities, pass through with null columns; audio that
cannot be decoded is dead-lettered (run the ``audio`` stage first to reject it with a reason).
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa

from winnow.filters.audio import AudioUnreadable, load_mono
from winnow.filters.audio_fingerprint import (
    RATE,
    AudioDedupConfig,
    ClipPrint,
    clip_distance,
    clip_print,
    fingerprint_tokens,
    minhash_band_keys,
)
from winnow.filters.dedup.cluster import node_key
from winnow.pipeline.stages.base import DEAD, TIMING, Emit, StageFn, StageOutputs, run_step
from winnow.pipeline.stages.dedup_graph import COMPARED, ClusterAndPick, NodeOf, VerifyEdges, pack_payloads
from winnow.pipeline.stages.dedup_report import dedup_section
from winnow.pipeline.stages.spec import BuildContext, StageDecl

__all__ = ["DECLARATION", "AudioDedup", "FIELDS", "REASON", "NAME"]

NAME = "audio_dedup"
REASON = "audio_dedup_near_duplicate"
FIELDS = (
    pa.field("audio_dup_cluster", pa.string(), nullable=True),
    pa.field("audio_dup_cluster_size", pa.int64(), nullable=True),
)
_BANDS = "bands"
_FP = "fingerprints"


class _FingerprintFn(StageFn):
    """Fingerprints the batch's clips; every record goes on (flagged), band keys and packed
    fingerprints go out."""

    def __init__(self, cfg: AudioDedupConfig) -> None:
        super().__init__(NAME, last=False)
        self._cfg = cfg
        self._payloads: list[tuple[Any, bytes]] = []

    def compute(self, rows: list[dict], *side: Any) -> list[Any]:
        c = self._cfg
        out: list[Any] = []
        for r in rows:
            if r.get("audio") is None or r.get("modality") not in c.modalities:
                out.append(None)
                continue
            try:
                x = load_mono(bytes(r["audio"]), RATE, max_seconds=None)
            except AudioUnreadable as exc:
                raise AudioUnreadable(f"{exc}; run the audio stage before audio_dedup to reject unreadable "
                                      "audio with a reason") from None
            cp, loud = clip_print(x, c.max_seconds)
            tokens = fingerprint_tokens(loud, np.ones(loud.shape, bool), c.token_bits)
            keys = minhash_band_keys(tokens, c.bands, c.rows, c.seed)
            out.append((keys, cp.to_bytes()) if keys else False)
        return out

    def route(self, rec: dict, result: Any, out: Emit) -> None:
        row = dict(rec)
        row[COMPARED] = bool(result)
        if result is None:
            out.count("not_compared")
        elif result is False:
            out.count("silent")
        else:
            keys, fp = result
            node = node_key(row, self._cfg.keep, self._cfg.keep_field)
            for k in keys:
                out.emit(_BANDS, (k, (node, None)))
            self._payloads.append((node, fp))
        out.keep(row)

    def finish_batch(self, out: Emit) -> None:
        if self._payloads:
            for element in pack_payloads(self._payloads, self._cfg.bucket_partitions):
                out.emit(_FP, element)
            self._payloads = []


class _BerCheck:
    """Two clips are duplicates when :func:`clip_distance` is at most ``max_ber``; their
    similarity (for ``cluster: representative``) is one minus it."""

    def __init__(self, cfg: AudioDedupConfig) -> None:
        self._ber, self._overlap = cfg.max_ber, cfg.min_overlap
        self._last: tuple[Any, Any, float] | None = None

    def prepare(self, payload: bytes | None) -> Any:
        return None if payload is None else ClipPrint.from_bytes(payload)

    def _distance(self, p: Any, q: Any) -> float:
        if p is None or q is None:
            return 0.5
        last = self._last  # VerifyEdges asks similarity() right after __call__ on the same pair
        if last is not None and last[0] is p and last[1] is q:
            return last[2]
        d = clip_distance(p, q, self._overlap)
        self._last = (p, q, d)
        return d

    def __call__(self, p: Any, q: Any) -> bool:
        return self._distance(p, q) <= self._ber

    def similarity(self, p: Any, q: Any) -> float:
        return 1.0 - self._distance(p, q)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_last": None}


def _example(rec: dict, chars: int = 300) -> dict:
    t = rec.get("text")
    return {"text": None if t is None else t[:chars], "duration": rec.get("audio_duration"),
            "format": rec.get("audio_format")}


class AudioDedup(beam.PTransform):
    """Keep one record per cluster of clips whose fingerprints match (see the module docstring)."""

    def __init__(self, cfg: AudioDedupConfig | None = None) -> None:
        super().__init__(label=NAME)
        self._cfg = cfg or AudioDedupConfig()

    def expand(self, records: beam.PCollection) -> StageOutputs:
        cfg = self._cfg
        signed = run_step(records, "Fingerprint", _FingerprintFn(cfg), tags=(_BANDS, _FP))
        weighted = cfg.cluster == "representative"
        verify = VerifyEdges(signed[_FP], _BerCheck(cfg), cfg.bucket_partitions, weighted=weighted, stage=NAME)
        kept, rejected, dead, stats, timing = signed.kept | "Cluster" >> ClusterAndPick(
            NAME, REASON, "audio_dup", signed[_BANDS], node_of=NodeOf(cfg.keep, cfg.keep_field), fields=FIELDS,
            verify=verify, max_rounds=cfg.max_rounds, fail_if_not_converged=cfg.on_not_converged == "fail",
            example_fn=_example, examples=cfg.examples, roots=cfg.bucket_roots, cluster=cfg.cluster)
        params = records.pipeline | "Params" >> beam.Create([{
            "bands": cfg.bands, "rows": cfg.rows, "token_bits": cfg.token_bits, "max_ber": cfg.max_ber,
            "min_overlap": cfg.min_overlap, "max_seconds": cfg.max_seconds, "cluster": cfg.cluster}])
        return StageOutputs(kept=kept, rejected=rejected, dead=(signed[DEAD], dead) | "Dead" >> beam.Flatten(),
                            stats=(stats, params) | "StatsAll" >> beam.Flatten(), timing=(signed[TIMING], timing))


def _build(cfg: AudioDedupConfig, ctx: BuildContext) -> beam.PTransform:
    return AudioDedup(cfg)


DECLARATION = StageDecl(NAME, AudioDedupConfig, _build, lambda cfg: FIELDS, (REASON,),
                        report=dedup_section(NAME, "Near-duplicate audio clusters (log-mel fingerprints)"))
