"""Speech and audio for the demo corpus and the tests, made offline.

Speech comes from Debian's ``espeak-ng`` (a formant synthesiser, no model download) when it is
installed; otherwise :func:`speech` synthesises a speech-like signal (harmonic voiced syllables
under an envelope, seeded by the text) and says so (``SpeechClip.synthetic``): Whisper cannot
transcribe such a signal, so callers that need real words check that flag. The sentences are
this project's own. Encoding to WAV, FLAC, MP3 and Ogg Vorbis is libsndfile's (``soundfile``).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = ["SENTENCES", "SpeechClip", "speech", "encode", "have_espeak", "noise", "tone"]

#: Sentences written for winnow's demo and tests.
SENTENCES = (
    "The river carried small boats past the old mill every morning.",
    "Please close the window before the storm reaches the harbour.",
    "Seven students painted a bright mural on the library wall.",
    "A quiet train crossed the valley just after sunset.",
    "Fresh bread from the corner bakery sells out before noon.",
    "The engineer checked every bolt on the new bridge twice.",
    "Our garden grows tomatoes, beans and a few tall sunflowers.",
    "The museum opens a new exhibition about ancient maps tomorrow.",
    "Heavy snow closed the mountain road for three days.",
    "She tuned the old piano and played a slow waltz.",
    "The market square fills with music on summer evenings.",
    "Two foxes crossed the frozen lake in the early light.",
)


@dataclass(frozen=True)
class SpeechClip:
    """Mono float32 samples at ``rate``; ``synthetic`` when not real synthesised speech."""

    samples: np.ndarray
    rate: int
    text: str
    synthetic: bool


def have_espeak() -> bool:
    """Whether ``espeak-ng`` is on PATH."""
    return shutil.which("espeak-ng") is not None


def speech(text: str, voice: str = "en-us", words_per_minute: int = 160) -> SpeechClip:
    """``text`` spoken by espeak-ng (22.05 kHz), or a labelled synthetic stand-in without it."""
    import soundfile as sf

    exe = shutil.which("espeak-ng")
    if exe is not None:
        wav = subprocess.run([exe, "-v", voice, "-s", str(words_per_minute), "--stdout", text],
                             check=True, capture_output=True, timeout=60).stdout
        x, sr = sf.read(io.BytesIO(wav), dtype="float32")
        return SpeechClip(x if x.ndim == 1 else x.mean(axis=1), int(sr), text, False)
    return SpeechClip(_babble(text), 16000, text, True)


def _babble(text: str, rate: int = 16000) -> np.ndarray:
    """A speech-like signal: one voiced syllable per vowel group of ``text``, seeded by it."""
    rng = np.random.RandomState(zlib.crc32(text.encode("utf-8")))
    out = []
    for _ in range(max(1, sum(ch in "aeiou" for ch in text.lower()) // 2)):
        n = int(rate * rng.uniform(0.12, 0.25))
        t = np.arange(n) / rate
        f0 = rng.uniform(100, 180)
        v = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
        env = np.sin(np.pi * np.arange(n) / n) ** 2
        out += [0.2 * v * env, np.zeros(int(rate * rng.uniform(0.03, 0.08)))]
    return np.concatenate(out).astype(np.float32)


def noise(n: int, level: float = 0.3, seed: int = 0) -> np.ndarray:
    """``n`` samples of white noise (float32)."""
    return (np.random.RandomState(seed).randn(n) * level).astype(np.float32)


def tone(seconds: float, rate: int = 16000, hz: float = 440.0, level: float = 0.5) -> np.ndarray:
    """A sine tone (float32)."""
    return (level * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


_FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"),
            "ogg": ("OGG", "VORBIS")}


def encode(x: np.ndarray, rate: int, fmt: str) -> bytes:
    """Samples as ``wav``, ``flac``, ``mp3`` or ``ogg`` (Vorbis) bytes."""
    import soundfile as sf

    container, subtype = _FORMATS[fmt]
    buf = io.BytesIO()
    sf.write(buf, np.asarray(x, dtype=np.float32), rate, format=container, subtype=subtype)
    return buf.getvalue()
