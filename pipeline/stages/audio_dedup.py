"""``audio_dedup``: near-duplicate audio by log-mel fingerprints, clustered inside Beam.

Each clip (``audio`` and ``audio_text`` records) is decoded to 16 kHz mono and fingerprinted
(:mod:`winnow.filters.audio_fingerprint`: 32-bit sub-fingerprints of the log-mel spectrogram);
MinHash band keys of its token set put candidates in buckets, every bucket member becomes a
candidate pair with the bucket's ``bucket_roots`` smallest records, and each candidate edge is
verified by the best-lag bit error rate of the two fingerprints
(:class:`~winnow.pipeline.stages.dedup_graph.VerifyEdges`: a fingerprint travels once per
record, packed per batch). Clusters are then found and resolved as for text and images
(:class:`~winnow.pipeline.stages.dedup_graph.ClusterAndPick`). Re-encoded (WAV/FLAC/MP3/Ogg),
re-levelled and trimmed copies of a clip cluster together; different clips do not.

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
    fingerprint,
    fingerprint_distance,
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
            fp, audible = fingerprint(x, c.max_seconds)
            keys = minhash_band_keys(fingerprint_tokens(fp, audible, c.token_bits), c.bands, c.rows, c.seed)
            out.append((keys, fp.astype("<u4").tobytes()) if keys else False)
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
    """Two fingerprints are duplicates when their best-lag bit error rate is at most ``max_ber``."""

    def __init__(self, cfg: AudioDedupConfig) -> None:
        self._ber, self._overlap = cfg.max_ber, cfg.min_overlap

    def prepare(self, fp: bytes | None) -> Any:
        return None if fp is None else np.frombuffer(fp, dtype="<u4")

    def __call__(self, fp_u: Any, fp_v: Any) -> bool:
        if fp_u is None or fp_v is None:
            return False
        return fingerprint_distance(fp_u, fp_v, self._overlap) <= self._ber


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
        verify = VerifyEdges(signed[_FP], _BerCheck(cfg), cfg.bucket_partitions)
        kept, rejected, dead, stats, timing = signed.kept | "Cluster" >> ClusterAndPick(
            NAME, REASON, "audio_dup", signed[_BANDS], node_of=NodeOf(cfg.keep, cfg.keep_field), fields=FIELDS,
            verify=verify, max_rounds=cfg.max_rounds, fail_if_not_converged=cfg.on_not_converged == "fail",
            example_fn=_example, examples=cfg.examples, roots=cfg.bucket_roots)
        params = records.pipeline | "Params" >> beam.Create([{
            "bands": cfg.bands, "rows": cfg.rows, "token_bits": cfg.token_bits, "max_ber": cfg.max_ber,
            "min_overlap": cfg.min_overlap}])
        return StageOutputs(kept=kept, rejected=rejected, dead=(signed[DEAD], dead) | "Dead" >> beam.Flatten(),
                            stats=(stats, params) | "StatsAll" >> beam.Flatten(), timing=(signed[TIMING], timing))


def _build(cfg: AudioDedupConfig, ctx: BuildContext) -> beam.PTransform:
    return AudioDedup(cfg)


DECLARATION = StageDecl(NAME, AudioDedupConfig, _build, lambda cfg: FIELDS, (REASON,),
                        report=dedup_section(NAME, "Near-duplicate audio clusters (log-mel fingerprints)"))
