"""``audio_mos`` (DNSMOS) and ``audio_asr`` (Whisper: faster-whisper, or transformers with
``backend: transformers``): audio model stages through RunInference.

Both follow the ``classifier`` stage's pattern (:mod:`winnow.pipeline.stages.classifier`):

1. ``Infer``: Beam's ``RunInference`` with :class:`AudioModelHandler`, whose elements are whole
   :class:`~winnow.pipeline.batch.Records` batches, grouped up to ``records_per_call`` records
   (``batch_elements_kwargs`` by record count). RunInference loads the model once per worker
   process and shares it between threads. Records never leave their batch; nothing shuffles.
2. ``Apply`` (a :class:`StageFn`): attaches the columns and keeps or rejects. A clip the model
   failed on carries its error from step 1; ``compute`` raises for it, so the contract
   dead-letters that record alone. The model call's wall time joins the stage's timing (the
   models compute on threads of their own, which a thread CPU clock would miss).

``audio_asr`` writes ``audio_asr_transcript``; an audio-only record gets it as ``text``, a
captioned one gets ``audio_asr_wer`` (caption vs transcript) and the ``max_wer`` check.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import apache_beam as beam
import xxhash

from winnow.filters.audio_models import (
    REASON_MOS,
    REASON_WER,
    AudioAsrConfig,
    AudioModelError,
    AudioMosConfig,
    DnsmosModel,
    WhisperAsr,
    asr_fields,
    asr_verdict,
    mos_fields,
    mos_verdict,
    word_error_rate,
)
from winnow.pipeline.stages.audio_report import SAMPLE_COLUMNS, audio_asr_section, audio_mos_section
from winnow.pipeline.stages.base import DEAD, REJECTED, TIMING, Emit, StageOutputs, explode, run_step
from winnow.pipeline.stages.scored import InferenceResultFn
from winnow.pipeline.stages.spec import StageDecl
from winnow.pipeline.stages.stats import HistogramFn, linear_edges

__all__ = ["AudioMosStage", "AudioAsrStage", "MOS_DECLARATION", "ASR_DECLARATION"]

MOS = "audio_mos"
ASR = "audio_asr"
#: sample rows kept for the report
SAMPLES = 8


class _LoadMos:
    def __init__(self, cfg: AudioMosConfig) -> None:
        self.cfg = cfg

    def __call__(self) -> Any:
        return DnsmosModel(self.cfg)


class _LoadAsr:
    def __init__(self, cfg: AudioAsrConfig) -> None:
        self.cfg = cfg

    def __call__(self) -> Any:
        if self.cfg.backend == "transformers":
            from winnow.filters.audio_whisper_hf import TransformersWhisperAsr

            return TransformersWhisperAsr(self.cfg)
        return WhisperAsr(self.cfg)


class _ApplyFn(InferenceResultFn):
    """Attach a model's result to each record of a RunInference result; a failed clip raises."""

    def __init__(self, stage: str, fields: Sequence[Any]) -> None:
        super().__init__(stage, fields=fields)

    def failure(self, value: Any) -> Exception | None:
        if isinstance(value, tuple) and len(value) == 2 and value[0] == "error":
            return AudioModelError(value[1])
        return None


class _MosApply(_ApplyFn):
    def __init__(self, cfg: AudioMosConfig) -> None:
        super().__init__(MOS, mos_fields(cfg))
        self._cfg = cfg

    def route(self, row: dict, value: Any, out: Emit) -> None:
        row = dict(row)
        row.update(value or {f.name: None for f in mos_fields()})
        if value is None:
            out.count("not_scored")
        v = mos_verdict(row, self._cfg)
        out.keep(row) if v.keep else out.reject(row, v.reason)


class _AsrApply(_ApplyFn):
    def __init__(self, cfg: AudioAsrConfig) -> None:
        super().__init__(ASR, asr_fields(cfg))
        self._cfg = cfg

    def route(self, row: dict, transcript: Any, out: Emit) -> None:
        row = dict(row)
        row["audio_asr_transcript"] = transcript
        row["audio_asr_wer"] = None
        if transcript is None:
            out.count("not_transcribed")
        elif row.get("text") is None:
            if self._cfg.transcript_as_text:
                row["text"] = transcript
            out.count("transcript_as_text")
        else:
            row["audio_asr_wer"] = word_error_rate(row["text"], transcript)
        v = asr_verdict(row, self._cfg)
        out.keep(row) if v.keep else out.reject(row, v.reason)


def _sample_key(r: Mapping[str, Any]) -> int:
    return xxhash.xxh3_64_intdigest(f"{r.get('id')}\x00{r.get('source')}".encode("utf-8", "surrogatepass")) >> 1


def _sample_row(r: Mapping[str, Any]) -> dict:
    return {c: r.get(c) for c in SAMPLE_COLUMNS}


def _stats(rows: beam.PCollection, column: str, lo: float, hi: float, name: str, extra: dict) -> beam.PCollection:
    hist = (rows
            | "Value" >> beam.FlatMap(lambda r: [r[column]] if r.get(column) is not None else [])
            | "Hist" >> beam.CombineGlobally(HistogramFn(linear_edges(lo, hi, 40)))
            | "HistWrap" >> beam.Map(lambda h: {name: h}))
    samples = (rows
               | "WithAudio" >> beam.Filter(lambda r: r.get("audio") is not None)
               | "SampleKey" >> beam.Map(lambda r: (_sample_key(r), _sample_row(r)))
               | "Sample" >> beam.combiners.Top.Of(SAMPLES, key=lambda kv: -kv[0])
               | "SampleWrap" >> beam.Map(lambda top: {"samples": [v for _, v in top]}))
    info = rows.pipeline | "Info" >> beam.Create([extra])
    return (hist, samples, info) | "Stats" >> beam.Flatten()


class _ModelStage(beam.PTransform):
    def __init__(self, stage: str, load: Callable[[], Any], records_per_call: int, apply: _ApplyFn) -> None:
        super().__init__(label=stage)
        self._stage, self._load, self._per_call, self._apply = stage, load, records_per_call, apply

    def stats(self, kept: beam.PCollection) -> beam.PCollection:
        raise NotImplementedError

    def expand(self, records: beam.PCollection) -> StageOutputs:
        # Beam's inference module imports torch when it is installed (about 200 MB): imported
        # here, only by pipelines that build a model stage
        from apache_beam.ml.inference.base import RunInference

        from winnow.pipeline.stages.audio_handler import AudioModelHandler

        inferred = (records
                    | "NonEmpty" >> beam.Filter(lambda b: len(b.rows) > 0)
                    | "Infer" >> RunInference(AudioModelHandler(self._stage, self._load, self._per_call)))
        applied = run_step(inferred, "Apply", self._apply)
        return StageOutputs(kept=applied.kept, rejected=applied[REJECTED], dead=applied[DEAD],
                            stats=self.stats(explode(applied.kept, "Rows")), timing=(applied[TIMING],))


class AudioMosStage(_ModelStage):
    """DNSMOS scores (``audio_mos_*``) and the minimum-MOS check."""

    def __init__(self, cfg: AudioMosConfig | None = None) -> None:
        cfg = cfg or AudioMosConfig()
        super().__init__(MOS, _LoadMos(cfg), cfg.records_per_call, _MosApply(cfg))
        self._cfg = cfg

    def stats(self, kept: beam.PCollection) -> beam.PCollection:
        return _stats(kept, f"audio_mos_{self._cfg.score}", 1.0, 5.0, "mos_hist",
                      {"score": self._cfg.score, "min_mos": self._cfg.min_mos})


class AudioAsrStage(_ModelStage):
    """Whisper transcripts (``audio_asr_transcript``; faster-whisper or transformers), WER against
    captions and its check."""

    def __init__(self, cfg: AudioAsrConfig | None = None) -> None:
        cfg = cfg or AudioAsrConfig()
        super().__init__(ASR, _LoadAsr(cfg), cfg.records_per_call, _AsrApply(cfg))
        self._cfg = cfg

    def stats(self, kept: beam.PCollection) -> beam.PCollection:
        return _stats(kept, "audio_asr_wer", 0.0, 2.0, "wer_hist",
                      {"model": self._cfg.resolved_dir, "backend": self._cfg.backend, "max_wer": self._cfg.max_wer})


MOS_DECLARATION = StageDecl(MOS, AudioMosConfig, lambda cfg, ctx: AudioMosStage(cfg), mos_fields, (REASON_MOS,),
                            report=audio_mos_section)
ASR_DECLARATION = StageDecl(ASR, AudioAsrConfig, lambda cfg, ctx: AudioAsrStage(cfg), asr_fields, (REASON_WER,),
                            report=audio_asr_section)
