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
corrupt-header      a WAV whose RIFF/fmt header is overwritten             audio / audio_unreadable
noisy               speech under white noise at about -3 dB SNR            audio_mos / audio_mos_too_low
wrong-caption       speech whose caption is another sentence               audio_asr / audio_asr_wer_too_high
==================  =====================================================  ===================================

Built from :mod:`winnow.demo.audio` (espeak-ng speech when installed). Without espeak-ng the
speech is synthetic and Whisper cannot transcribe it: :attr:`HostileAudio.real_speech` says
which, and the ASR expectations only hold with real speech.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field

import numpy as np

from winnow.demo.audio import SENTENCES, encode, noise, speech
from winnow.demo.images import tar_bytes

__all__ = ["HostileAudio", "build_hostile_audio", "STAGES", "with_audio_stages"]

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
        expected: key -> ``"kept"`` or ``(stage, reason)``.
        captions: key -> caption (``audio_text`` samples).
        real_speech: espeak-ng made the speech (else synthetic stand-ins).
    """

    path: str
    expected: dict[str, object] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    real_speech: bool = True


def build_hostile_audio(dest: str, name: str = "hostile-audio.tar") -> HostileAudio:
    """Write ``dest/<name>`` and return what each sample must become.

    A ``name`` ending in ``.tar.gz`` writes the tar gzip-compressed (fixed mtime: the same bytes
    on every build).
    """
    os.makedirs(dest, exist_ok=True)
    members: list[tuple[str, bytes]] = []
    expected: dict[str, object] = {}
    captions: dict[str, str] = {}
    real = True

    def add(key: str, ext: str, data: bytes, fate: object, caption: str | None) -> None:
        members.append((f"{key}.{ext}", data))
        members.append((f"{key}.json", json.dumps({"id": key}).encode("utf-8")))
        if caption is not None:
            members.append((f"{key}.txt", caption.encode("utf-8")))
            captions[key] = caption
        expected[key] = fate

    clips = []
    for s in SENTENCES[:8]:
        c = speech(s)
        real = real and not c.synthetic
        clips.append(c)
    for c, ext in zip(clips[:4], ("wav", "flac", "mp3", "ogg")):
        add(f"good-{ext}", ext, encode(c.samples, c.rate, ext), "kept", c.text)
    c = clips[4]
    add("good-mono-noref", "wav", encode(c.samples, c.rate, "wav"), "kept", None)
    c0 = clips[0]
    cut = int(0.31 * c0.rate)
    add("good-wav-copy", "mp3", encode(c0.samples[cut:] * 0.8, c0.rate, "mp3"), ("audio_dedup", "audio_dedup_near_duplicate"),
        c0.text)
    add("silence", "wav", encode(np.zeros(2 * 16000, dtype=np.float32), 16000, "wav"), ("audio", "audio_mostly_silent"),
        None)
    c = clips[5]
    add("short", "wav", encode(c.samples[int(0.3 * c.rate):int(0.5 * c.rate)], c.rate, "wav"),
        ("audio", "audio_too_short"), None)
    add("clipped", "flac", encode(np.clip(c.samples * 8.0, -1.0, 1.0), c.rate, "flac"), ("audio", "audio_clipped"),
        c.text)
    good = encode(c.samples, c.rate, "wav")
    add("corrupt-header", "wav", b"RIFX" + bytes(range(40)) + good[44:], ("audio", "audio_unreadable"), c.text)
    c = clips[6]
    level = float(np.sqrt(np.mean(np.square(c.samples))))
    noisy = np.clip(c.samples + noise(len(c.samples), level=1.4 * level, seed=7), -1.0, 1.0)
    add("noisy", "wav", encode(noisy, c.rate, "wav"), ("audio_mos", "audio_mos_too_low"), c.text)
    c = clips[7]
    add("wrong-caption", "ogg", encode(c.samples, c.rate, "ogg"), ("audio_asr", "audio_asr_wer_too_high"),
        SENTENCES[9])
    path = os.path.join(dest, name)
    data = tar_bytes(members)
    if name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    with open(path, "wb") as fh:
        fh.write(data)
    return HostileAudio(path, expected, captions, real)
