"""A WebDataset tar of audio samples with planted defects, and what must become of each.

Samples (``<key>.<ext>``, ``<key>.json`` with the id ``<key>``, and ``<key>.txt`` captions for
``audio_text`` samples; ids order the duplicate pair, so good-wav is the one kept):

==================  =====================================================  ===================================
key                 what                                                   expected
==================  =====================================================  ===================================
good-wav/-flac/     four different sentences, one per container           kept
-mp3/-ogg
good-mono-noref     an uncaptioned clip (audio only)                       kept, transcript as text
good-wav-copy       good-wav re-encoded as MP3 and trimmed                 audio_dedup_near_duplicate
silence             two seconds of digital silence                         audio / audio_mostly_silent
short               0.2 s of speech                                        audio / audio_too_short
clipped             speech amplified 8x and clipped at full scale          audio / audio_clipped
corrupt-header      a WAV whose RIFF/fmt header is overwritten             read / dead letter (not audio)
noisy               speech under white noise at about -3 dB SNR            audio_mos / audio_mos_too_low
wrong-caption       speech whose caption is another sentence               audio_asr / audio_asr_wer_too_high
==================  =====================================================  ===================================

Built from :mod:`winnow.demo.audio` (espeak-ng speech when installed). Without espeak-ng the
speech is synthetic and Whisper cannot transcribe it: :attr:`HostileAudio.real_speech` says
which, and the ASR expectations only hold with real speech (those samples carry
``holds=False`` then).

:func:`audio_samples` gives the samples as :class:`~winnow.demo.hostile_media.HostileSample`
(the image builder's type, so one tar can hold both: :mod:`winnow.demo.hostile_corpus`);
:func:`build_hostile_audio` writes them alone.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field

import numpy as np

from winnow.demo.audio import SENTENCES, encode, noise, speech
from winnow.demo.hostile_media import HostileSample
from winnow.demo.images import tar_bytes

__all__ = ["HostileAudio", "audio_samples", "build_hostile_audio", "STAGES", "with_audio_stages"]

#: The stages the expectations are written for, in order.
STAGES = ("audio", "audio_dedup", "audio_mos", "audio_asr")


def with_audio_stages(stages: list[str]) -> list[str]:
    """``stages`` with the audio stages after ``image_dedup`` (or after ``exact_dedup``, or first)."""
    out = [s for s in stages if s not in STAGES]
    anchor = next((a for a in ("image_dedup", "minhash_dedup", "exact_dedup") if a in out), None)
    i = out.index(anchor) + 1 if anchor else 0
    return out[:i] + list(STAGES) + out[i:]


@dataclass(frozen=True)
class HostileAudio:
    """The written tar and the fate of each sample key.

    Attributes:
        path: the tar file.
        expected: key -> ``"kept"``, ``(stage, reason)`` (rejected) or ``("dead", stage, part of
            the error)`` (dead-lettered).
        captions: key -> caption (``audio_text`` samples).
        real_speech: espeak-ng made the speech (else synthetic stand-ins).
    """

    path: str
    expected: dict[str, object] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    real_speech: bool = True


def audio_samples() -> list[HostileSample]:
    """The audio samples of the table above, each with what must become of it.

    Members: ``<key>.<ext>`` (the audio), ``<key>.json`` (``{"id": key}``) and, for captioned
    samples, ``<key>.txt``. The expectations assume the audio stages' defaults. Without
    espeak-ng the samples whose fate depends on Whisper hearing words (captioned clips that
    reach ``audio_asr``) carry ``holds=False``.
    """
    out: list[HostileSample] = []
    clips = [speech(s) for s in SENTENCES[:8]]
    real = not any(c.synthetic for c in clips)

    def add(key: str, ext: str, data: bytes, fate: object, caption: str | None, what: str) -> None:
        members = [(ext, data), ("json", json.dumps({"id": key}).encode("utf-8"))]
        if caption is not None:
            members.append(("txt", caption.encode("utf-8")))
        if fate == "kept":
            # a captioned clip is kept only if Whisper hears its words
            out.append(HostileSample(key, tuple(members), "kept", what=what, holds=real or caption is None))
        elif isinstance(fate, tuple) and fate[0] == "dead":
            _, stage, error = fate
            out.append(HostileSample(key, tuple(members), "dead", stage, error, what))
        else:
            stage, reason = fate  # type: ignore[misc]
            holds = real or stage != "audio_asr"
            out.append(HostileSample(key, tuple(members), "rejected", stage, reason, what, holds))

    for c, ext in zip(clips[:4], ("wav", "flac", "mp3", "ogg")):
        add(f"good-{ext}", ext, encode(c.samples, c.rate, ext), "kept", c.text, f"a spoken sentence as {ext.upper()}")
    c = clips[4]
    add("good-mono-noref", "wav", encode(c.samples, c.rate, "wav"), "kept", None,
        "an uncaptioned spoken sentence (its transcript becomes the text)")
    c0 = clips[0]
    cut = int(0.31 * c0.rate)
    add("good-wav-copy", "mp3", encode(c0.samples[cut:] * 0.8, c0.rate, "mp3"),
        ("audio_dedup", "audio_dedup_near_duplicate"), c0.text, "good-wav trimmed, quieter, re-encoded as MP3")
    add("silence", "wav", encode(np.zeros(2 * 16000, dtype=np.float32), 16000, "wav"),
        ("audio", "audio_mostly_silent"), None, "two seconds of digital silence")
    c = clips[5]
    add("short", "wav", encode(c.samples[int(0.3 * c.rate):int(0.5 * c.rate)], c.rate, "wav"),
        ("audio", "audio_too_short"), None, "0.2 s of speech")
    add("clipped", "flac", encode(np.clip(c.samples * 8.0, -1.0, 1.0), c.rate, "flac"), ("audio", "audio_clipped"),
        c.text, "speech amplified 8x and clipped at full scale")
    good = encode(c.samples, c.rate, "wav")
    add("corrupt-header", "wav", b"RIFX" + bytes(range(40)) + good[44:], ("dead", "read", "not readable audio"), c.text,
        "a WAV whose RIFF/fmt header is overwritten")
    c = clips[6]
    level = float(np.sqrt(np.mean(np.square(c.samples))))
    noisy = np.clip(c.samples + noise(len(c.samples), level=1.4 * level, seed=7), -1.0, 1.0)
    add("noisy", "wav", encode(noisy, c.rate, "wav"), ("audio_mos", "audio_mos_too_low"), c.text,
        "speech under white noise at about -3 dB SNR")
    c = clips[7]
    add("wrong-caption", "ogg", encode(c.samples, c.rate, "ogg"), ("audio_asr", "audio_asr_wer_too_high"),
        SENTENCES[9], "speech whose caption is another sentence")
    return out


def build_hostile_audio(dest: str, name: str = "hostile-audio.tar") -> HostileAudio:
    """Write :func:`audio_samples` as ``dest/<name>`` and return what each sample must become.

    A ``name`` ending in ``.tar.gz`` writes the tar gzip-compressed (fixed mtime: the same bytes
    on every build).
    """
    os.makedirs(dest, exist_ok=True)
    samples = audio_samples()
    members = [(f"{s.key}.{ext}", data) for s in samples for ext, data in s.members]
    expected: dict[str, object] = {s.key: "kept" if s.expect == "kept" else ("dead", s.stage, s.reason)
                                   if s.expect == "dead" else (s.stage, s.reason) for s in samples}
    captions = {s.key: data.decode("utf-8") for s in samples for ext, data in s.members if ext == "txt"}
    path = os.path.join(dest, name)
    data = tar_bytes(members)
    if name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    with open(path, "wb") as fh:
        fh.write(data)
    return HostileAudio(path, expected, captions, all(s.holds for s in samples))
