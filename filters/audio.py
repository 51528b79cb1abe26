"""The ``audio`` stage: decode, resample and measure audio records, and drop the unusable ones.

Audio bytes (WAV, FLAC, Ogg Vorbis/Opus, MP3: whatever the libsndfile bundled in the
``soundfile`` wheel reads) are decoded to float32, mixed down to mono and resampled to
``target_rate`` with soxr (the resampler librosa uses by default: band-limited, fast, a
maintained C library with wheels; the ``audio`` extra pulls it in). On that signal the stage
measures:

=======================  ==============================================================
column                   meaning
=======================  ==============================================================
``audio_duration``       seconds
``audio_sample_rate``    the rate the file was encoded at (Hz)
``audio_channels``       channels in the file
``audio_format``         libsndfile's container name (``WAV``, ``FLAC``, ``OGG``, ``MP3``)
``audio_rms_dbfs``       RMS level of the whole clip, dB relative to full scale
``audio_peak_dbfs``      the largest absolute sample, dB relative to full scale
``audio_silence_ratio``  share of ``frame_ms`` frames whose RMS is below ``silence_dbfs``
``audio_clip_ratio``     share of samples (before resampling) at or above ``clip_level``
=======================  ==============================================================

Drops: ``audio_unreadable`` (libsndfile cannot parse the header or the stream: a corrupt or
truncated file, an unknown format), ``audio_too_short``, ``audio_too_long``,
``audio_mostly_silent``, ``audio_clipped``. Anything else raised while decoding is a bug or an
environment problem and goes to the dead letters through the stage contract.

Records without audio bytes pass through with null columns. Plain numpy, soundfile and soxr:
no Beam here.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping, MutableMapping

import numpy as np
import pyarrow as pa

from winnow.errors import ConfigError
from winnow.filters.base import KEEP, RecordFilter, Verdict, drop

__all__ = [
    "AudioConfig",
    "AudioFilter",
    "AudioUnreadable",
    "DecodedAudio",
    "decode_audio",
    "resample",
    "encode_audio",
    "AUDIO_FIELDS",
    "REASONS",
]

REASON_UNREADABLE = "audio_unreadable"
REASON_SHORT = "audio_too_short"
REASON_LONG = "audio_too_long"
REASON_SILENT = "audio_mostly_silent"
REASON_CLIPPED = "audio_clipped"
REASONS = (REASON_UNREADABLE, REASON_SHORT, REASON_LONG, REASON_SILENT, REASON_CLIPPED)

AUDIO_FIELDS = (
    pa.field("audio_duration", pa.float64(), nullable=True),
    pa.field("audio_sample_rate", pa.int64(), nullable=True),
    pa.field("audio_channels", pa.int64(), nullable=True),
    pa.field("audio_format", pa.string(), nullable=True),
    pa.field("audio_rms_dbfs", pa.float64(), nullable=True),
    pa.field("audio_peak_dbfs", pa.float64(), nullable=True),
    pa.field("audio_silence_ratio", pa.float64(), nullable=True),
    pa.field("audio_clip_ratio", pa.float64(), nullable=True),
)
_NULLS = {f.name: None for f in AUDIO_FIELDS}
#: dBFS given to digital silence (log of zero)
FLOOR_DBFS = -120.0


class AudioUnreadable(ValueError):
    """libsndfile could not open or decode the bytes (a corrupt header, an unknown format)."""


@dataclass(frozen=True)
class AudioConfig:
    """Options of the ``audio`` stage.

    Attributes:
        target_rate: decoded audio is resampled to this rate (Hz) for the measures, for the
            model stages and for ``reencode``.
        min_seconds, max_seconds: duration bounds (``audio_too_short`` / ``audio_too_long``).
        silence_dbfs: a ``frame_ms`` frame whose RMS is below this level is silent.
        frame_ms: frame length for the silence measure.
        max_silence_ratio: drop as ``audio_mostly_silent`` above this share of silent frames.
        clip_level: a sample whose magnitude reaches this (full scale is 1.0) is clipped.
        max_clip_ratio: drop as ``audio_clipped`` above this share of clipped samples.
        reencode: ``""`` keeps the bytes as read; ``flac`` or ``wav`` rewrites the ``audio``
            column as mono 16-bit audio at ``target_rate``.
        max_decoded_seconds: refuse (``audio_too_long``) before decoding when the header says
            the clip is longer than this; bounds memory on a hostile file.
        modalities: records of these modalities are decoded; others pass through.
    """

    target_rate: int = 16000
    min_seconds: float = 0.5
    max_seconds: float = 600.0
    silence_dbfs: float = -50.0
    frame_ms: float = 20.0
    max_silence_ratio: float = 0.9
    clip_level: float = 0.999
    max_clip_ratio: float = 0.001
    reencode: Literal["", "flac", "wav"] = ""
    max_decoded_seconds: float = 3600.0
    modalities: tuple[str, ...] = ("audio", "audio_text")

    def __post_init__(self) -> None:
        s = "audio"
        if not 1000 <= self.target_rate <= 384000:
            raise ConfigError(f"{s}.target_rate", self.target_rate, "a sample rate in Hz from 1000 to 384000")
        if not 0.0 <= self.min_seconds < self.max_seconds:
            raise ConfigError(f"{s}.min_seconds", self.min_seconds, f"0 <= min_seconds < max_seconds ({self.max_seconds})")
        if not math.isfinite(self.max_seconds):
            raise ConfigError(f"{s}.max_seconds", self.max_seconds, "a finite number of seconds")
        if not -150.0 <= self.silence_dbfs <= 0.0:
            raise ConfigError(f"{s}.silence_dbfs", self.silence_dbfs, "a level in dBFS from -150 to 0")
        if not 1.0 <= self.frame_ms <= 1000.0:
            raise ConfigError(f"{s}.frame_ms", self.frame_ms, "milliseconds from 1 to 1000")
        for key in ("max_silence_ratio", "max_clip_ratio"):
            v = getattr(self, key)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{s}.{key}", v, "a share from 0 to 1")
        if not 0.0 < self.clip_level <= 1.0:
            raise ConfigError(f"{s}.clip_level", self.clip_level, "a magnitude in (0, 1] (full scale is 1)")
        if self.reencode not in ("", "flac", "wav"):
            raise ConfigError(f"{s}.reencode", self.reencode, "'' (keep the bytes), flac or wav")
        if not self.max_decoded_seconds >= self.max_seconds:
            raise ConfigError(f"{s}.max_decoded_seconds", self.max_decoded_seconds,
                              f"at least max_seconds ({self.max_seconds})")


@dataclass(frozen=True)
class DecodedAudio:
    """A decoded clip: ``samples`` (float32 frames x channels, as stored), its rate and container."""

    samples: np.ndarray
    sample_rate: int
    format: str

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        return self.samples.shape[0] / self.sample_rate if self.sample_rate else 0.0

    def mono(self) -> np.ndarray:
        """The channels averaged (float32, 1-D)."""
        s = self.samples
        return s[:, 0].copy() if s.shape[1] == 1 else s.mean(axis=1, dtype=np.float32)


def decode_audio(data: bytes, max_seconds: float | None = None) -> DecodedAudio:
    """Decode encoded audio bytes with libsndfile.

    Raises:
        AudioUnreadable: the bytes are not audio libsndfile can read (bad header, truncated
            or corrupt stream, unknown format), or (with ``max_seconds``) the header says the
            clip is longer than that (``AudioUnreadable.too_long`` is then True).
    """
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            fmt, rate, frames = f.format, int(f.samplerate), int(f.frames)
            if rate <= 0:
                raise AudioUnreadable(f"the header gives a sample rate of {rate}")
            if max_seconds is not None and frames > 0 and frames / rate > max_seconds:
                err = AudioUnreadable(f"the header gives {frames / rate:.1f} s, more than {max_seconds} s")
                err.too_long = True  # type: ignore[attr-defined]
                raise err
            samples = f.read(dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        raise AudioUnreadable(f"libsndfile: {exc.error_string}") from None
    except (sf.SoundFileRuntimeError, EOFError) as exc:  # a stream that breaks off mid-decode
        raise AudioUnreadable(f"libsndfile: {exc}") from None
    if samples.size and not np.isfinite(samples).all():
        raise AudioUnreadable("the decoded samples are not finite")
    return DecodedAudio(samples, rate, str(fmt))


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``x`` (1-D float32) from ``rate`` to ``target`` Hz with soxr (high quality)."""
    if rate == target or x.size == 0:
        return np.ascontiguousarray(x, dtype=np.float32)
    import soxr

    return soxr.resample(np.ascontiguousarray(x, dtype=np.float32), rate, target, quality="HQ").astype(np.float32, copy=False)


def encode_audio(x: np.ndarray, rate: int, fmt: str) -> bytes:
    """Mono float samples as 16-bit ``flac`` or ``wav`` bytes."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), rate, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue()


def _dbfs(v: float) -> float:
    return FLOOR_DBFS if v <= 10 ** (FLOOR_DBFS / 20) else max(FLOOR_DBFS, 20.0 * math.log10(v))


def measure(dec: DecodedAudio, mono16: np.ndarray, cfg: AudioConfig) -> dict[str, Any]:
    """The stage's columns for a decoded clip and its mono signal at ``cfg.target_rate``."""
    raw = dec.samples
    n = raw.size
    clip = float(np.count_nonzero(np.abs(raw) >= cfg.clip_level)) / n if n else 0.0
    peak = float(np.max(np.abs(raw))) if n else 0.0
    rms = float(np.sqrt(np.mean(np.square(mono16, dtype=np.float64)))) if mono16.size else 0.0
    frame = max(1, int(round(cfg.target_rate * cfg.frame_ms / 1000.0)))
    k = mono16.size // frame
    if k:
        e = np.mean(np.square(mono16[: k * frame].reshape(k, frame), dtype=np.float64), axis=1)
        thresh = 10 ** (cfg.silence_dbfs / 10)  # on power
        silence = float(np.count_nonzero(e < thresh)) / k
    else:
        silence = 1.0 if rms < 10 ** (cfg.silence_dbfs / 20) else 0.0
    return {
        "audio_duration": round(dec.duration, 6),
        "audio_sample_rate": dec.sample_rate,
        "audio_channels": dec.channels,
        "audio_format": dec.format,
        "audio_rms_dbfs": round(_dbfs(rms), 3),
        "audio_peak_dbfs": round(_dbfs(peak), 3),
        "audio_silence_ratio": round(silence, 6),
        "audio_clip_ratio": round(clip, 6),
    }


def load_mono(data: bytes, target_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Encoded audio bytes as mono float32 at ``target_rate`` (raises :class:`AudioUnreadable`)."""
    dec = decode_audio(data, max_seconds)
    return resample(dec.mono(), dec.sample_rate, target_rate)


class AudioFilter(RecordFilter):
    """Decode, measure and judge audio records (see the module docstring)."""

    name = "audio"
    reasons = REASONS
    FIELDS = AUDIO_FIELDS

    def __init__(self, cfg: AudioConfig | None = None) -> None:
        self._cfg = cfg or AudioConfig()

    def fields(self) -> tuple[pa.Field, ...]:
        return AUDIO_FIELDS

    def applies(self, record: Mapping[str, Any]) -> bool:
        return record.get("audio") is not None and record.get("modality") in self._cfg.modalities

    def process(self, record: MutableMapping[str, Any]) -> tuple[MutableMapping[str, Any], Verdict]:
        cfg = self._cfg
        if not self.applies(record):
            record.update(_NULLS)
            return record, KEEP
        try:
            dec = decode_audio(bytes(record["audio"]), cfg.max_decoded_seconds)
        except AudioUnreadable as exc:
            record.update(_NULLS)
            return record, drop(REASON_LONG if getattr(exc, "too_long", False) else REASON_UNREADABLE)
        mono = resample(dec.mono(), dec.sample_rate, cfg.target_rate)
        record.update(measure(dec, mono, cfg))
        verdict = self.judge(record)
        if verdict.keep and cfg.reencode:
            record["audio"] = encode_audio(mono, cfg.target_rate, cfg.reencode)
        return record, verdict

    def judge(self, record: Mapping[str, Any]) -> Verdict:
        """The verdict on a measured record (the first failing check, in a fixed order)."""
        cfg = self._cfg
        d = record.get("audio_duration")
        if d is None:
            return KEEP
        if d < cfg.min_seconds:
            return drop(REASON_SHORT)
        if d > cfg.max_seconds:
            return drop(REASON_LONG)
        if record["audio_silence_ratio"] > cfg.max_silence_ratio:
            return drop(REASON_SILENT)
        if record["audio_clip_ratio"] > cfg.max_clip_ratio:
            return drop(REASON_CLIPPED)
        return KEEP

    def verdict(self, record: Mapping[str, Any]) -> Verdict:
        return self.judge(record)
