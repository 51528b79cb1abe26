"""The audio stage's pure parts: decoding, measures, verdicts; fingerprints; WER."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("soundfile")

from winnow.demo.audio import SENTENCES, encode, noise, speech, tone
from winnow.errors import ConfigError
from winnow.filters.audio import AudioConfig, AudioFilter, decode_audio, load_mono
from winnow.filters.audio_fingerprint import (
    AudioDedupConfig,
    fingerprint,
    fingerprint_distance,
    fingerprint_tokens,
    minhash_band_keys,
)
from winnow.filters.audio_models import normalize_words, word_error_rate

RATE = 16000


def _rec(data: bytes, modality: str = "audio") -> dict:
    return {"id": "x", "source": "t", "modality": modality, "text": None, "audio": data}


def _tone(seconds: float = 1.5, level: float = 0.5) -> np.ndarray:
    return tone(seconds, RATE, level=level)


CASES = [
    # name, bytes, expected verdict
    ("tone wav", encode(_tone(), RATE, "wav"), None),
    ("tone flac", encode(_tone(), RATE, "flac"), None),
    ("tone mp3", encode(_tone(), RATE, "mp3"), None),
    ("tone ogg", encode(_tone(), RATE, "ogg"), None),
    ("0.2 s", encode(_tone(0.2), RATE, "wav"), "audio_too_short"),
    ("silence", encode(np.zeros(2 * RATE, dtype=np.float32), RATE, "wav"), "audio_mostly_silent"),
    ("very quiet", encode(_tone(level=1e-4), RATE, "flac"), "audio_mostly_silent"),
    ("clipped", encode(np.clip(_tone(level=4.0), -1, 1), RATE, "wav"), "audio_clipped"),
    ("corrupt header", b"RIFX" + bytes(range(40)) + encode(_tone(), RATE, "wav")[44:], "audio_unreadable"),
    ("not audio", b"hello, I am text and not a sound file at all" * 3, "audio_unreadable"),
    ("empty", b"", "audio_unreadable"),
    ("truncated flac header", encode(_tone(), RATE, "flac")[:30], "audio_unreadable"),
]


@pytest.mark.parametrize("name,data,reason", CASES, ids=[c[0] for c in CASES])
def test_audio_verdicts(name, data, reason):
    rec, verdict = AudioFilter().process(_rec(data))
    assert verdict.keep == (reason is None), (name, verdict)
    if reason is not None:
        assert verdict.reason == reason
    if reason in (None, "audio_too_short", "audio_mostly_silent", "audio_clipped"):
        assert rec["audio_duration"] > 0 and rec["audio_channels"] == 1 and rec["audio_sample_rate"] == RATE
    if reason is None:
        assert rec["audio_format"] in ("WAV", "FLAC", "MP3", "OGG")
        assert abs(rec["audio_duration"] - 1.5) < 0.1  # mp3 pads a few ms
        assert -10 < rec["audio_rms_dbfs"] < -6  # a 0.5 sine: -9.03 dBFS
        assert rec["audio_silence_ratio"] < 0.05 and rec["audio_clip_ratio"] == 0


def test_measures_stereo_and_resampling():
    x = _tone(2.0, 0.5)
    stereo = np.stack([x, np.zeros_like(x)], axis=1)
    import soundfile as sf
    import io

    buf = io.BytesIO()
    sf.write(buf, stereo, RATE, format="WAV", subtype="PCM_16")
    rec, v = AudioFilter(AudioConfig(target_rate=8000)).process(_rec(buf.getvalue()))
    assert v.keep and rec["audio_channels"] == 2 and rec["audio_sample_rate"] == RATE
    assert abs(rec["audio_rms_dbfs"] - (-9.03 - 6.02)) < 0.3  # mixed down: half amplitude
    mono = load_mono(encode(x, 44100, "wav"), RATE)
    assert abs(len(mono) - len(x) * RATE / 44100) <= 2


def test_too_long_is_refused_from_the_header():
    rec, v = AudioFilter(AudioConfig(max_seconds=1.0, max_decoded_seconds=1.0)).process(_rec(encode(_tone(3.0), RATE, "wav")))
    assert v.reason == "audio_too_long" and rec["audio_duration"] is None
    rec, v = AudioFilter(AudioConfig(max_seconds=1.0)).process(_rec(encode(_tone(3.0), RATE, "wav")))
    assert v.reason == "audio_too_long" and rec["audio_duration"] == pytest.approx(3.0)


def test_reencode_and_pass_through():
    rec, v = AudioFilter(AudioConfig(reencode="flac")).process(_rec(encode(_tone(), 44100, "wav")))
    dec = decode_audio(rec["audio"])
    assert v.keep and dec.format == "FLAC" and dec.sample_rate == RATE
    text = {"id": "t", "source": "s", "modality": "text", "text": "hi", "audio": None}
    rec, v = AudioFilter().process(dict(text))
    assert v.keep and rec["audio_duration"] is None


@pytest.mark.parametrize("kw", [dict(target_rate=10), dict(min_seconds=5, max_seconds=1), dict(max_clip_ratio=2),
                                dict(reencode="mp4"), dict(clip_level=0)])
def test_config_errors(kw):
    with pytest.raises(ConfigError):
        AudioConfig(**kw)


# -- fingerprints ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clips():
    out = {}
    for i in range(3):
        c = speech(SENTENCES[i])
        out[i] = c
    return out


def _fp(data: bytes):
    return fingerprint(load_mono(data, RATE))


def test_copies_match_and_different_clips_do_not(clips):
    cfg = AudioDedupConfig()
    c = clips[0]
    cut = int(0.27 * c.rate)
    variants = {
        "wav": encode(c.samples, c.rate, "wav"),
        "mp3": encode(c.samples, c.rate, "mp3"),
        "ogg": encode(c.samples * 0.6, c.rate, "ogg"),
        "trimmed flac": encode(c.samples[cut:-cut // 2], c.rate, "flac"),
        "trimmed mp3": encode(c.samples[cut // 3:], c.rate, "mp3"),
    }
    fps = {k: _fp(v) for k, v in variants.items()}
    others = {i: _fp(encode(clips[i].samples, clips[i].rate, "wav")) for i in (1, 2)}
    others["noise"] = fingerprint(noise(3 * RATE, seed=3))
    base_tokens = fingerprint_tokens(*fps["wav"], cfg.token_bits)
    base_keys = set(minhash_band_keys(base_tokens, cfg.bands, cfg.rows, cfg.seed))
    for k, (fp, aud) in fps.items():
        assert fingerprint_distance(fps["wav"][0], fp, cfg.min_overlap) <= cfg.max_ber / 2, k
        keys = set(minhash_band_keys(fingerprint_tokens(fp, aud, cfg.token_bits), cfg.bands, cfg.rows, cfg.seed))
        assert keys & base_keys, k  # a candidate pair
    for k, (fp, _) in others.items():
        for v, (fq, _) in fps.items():
            assert fingerprint_distance(fq, fp, cfg.min_overlap) > cfg.max_ber + 0.05, (k, v)


def test_fingerprint_distance_edge_cases():
    a = np.arange(100, dtype=np.uint32) * np.uint32(2654435761)
    assert fingerprint_distance(a, a) == 0.0
    assert fingerprint_distance(a, a[30:]) == 0.0  # a trimmed copy, at its lag
    assert fingerprint_distance(a, a[:5]) == 0.5  # too short an overlap
    assert fingerprint_distance(a, np.zeros(0, dtype=np.uint32)) == 0.5
    assert minhash_band_keys(np.zeros(0, dtype=np.uint64), 4, 1) == []


# -- WER --------------------------------------------------------------------------------------

@pytest.mark.parametrize("ref,hyp,wer", [
    ("The river carried boats.", "the river carried boats", 0.0),
    ("The river carried boats.", "the river carried goats", 0.25),
    ("The river carried boats.", "", 1.0),
    ("", "anything", None),
    ("It's here!", "it's here", 0.0),
])
def test_word_error_rate(ref, hyp, wer):
    assert word_error_rate(ref, hyp) == wer


def test_normalize_words():
    assert normalize_words("Hello,   WORLD!  It's—fine") == "hello world it's fine"


def test_whisper_batched_transcripts_equal_one_at_a_time():
    pytest.importorskip("faster_whisper")
    from winnow.filters.audio_models import AudioAsrConfig, WhisperAsr

    recs = [{"modality": "audio", "audio": encode(c.samples, c.rate, "wav")}
            for c in (speech(SENTENCES[3]), speech(SENTENCES[5]))]
    batched = WhisperAsr(AudioAsrConfig(device="cpu", batch_size=2))
    assert batched.batch_size == 2
    one = WhisperAsr(AudioAsrConfig(device="cpu", batch_size=1))
    a, b = batched.infer(recs), one.infer(recs)
    assert a == b and all(isinstance(t, str) for t in a)
