"""Audio bytes are checked at read time, as images are: unreadable audio is a read dead letter
(also in a sample that holds an image), readable audio of every format goes on, and the run
stays balanced (read = kept + rejected + dead letters)."""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile

import numpy as np
import pytest

from winnow.errors import RecordError
from winnow.pipeline.config import ReaderConfig
from winnow.pipeline.readers.common import build_record, check_audio

from .test_media_hostile import _rows
from .test_readers import image_bytes, wav_bytes

sf = pytest.importorskip("soundfile")

RATE = 16000


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * r.uniform(200, 900) * t) + 0.01 * r.normal(size=t.size)).astype("float32")


def _encode(x: np.ndarray, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, RATE, format=fmt, subtype=subtype)
    return buf.getvalue()


GOOD = {
    "wav": lambda: _encode(_speechlike(1.0, 1), "WAV"),
    "flac": lambda: _encode(_speechlike(1.0, 2), "FLAC"),
    "ogg": lambda: _encode(_speechlike(1.0, 3), "OGG", "VORBIS"),
    "stdlib wav": wav_bytes,
    "header only": lambda: _encode(np.zeros(0, "float32"), "WAV"),  # too short is the audio stage's call
}
if "MP3" in sf.available_formats():
    GOOD["mp3"] = lambda: _encode(_speechlike(1.0, 4), "MP3", "MPEG_LAYER_III")

BAD = {
    "random bytes": lambda: np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes(),
    "text named mp3": lambda: b"this is plainly not audio, just text pretending",
    "destroyed header": lambda: b"RIFX" + bytes(range(40)) + _encode(_speechlike(1.0, 5), "WAV")[44:],
    "flac cut in its header": lambda: _encode(_speechlike(1.0, 6), "FLAC")[:30],
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_readable_audio_passes(name):
    check_audio(GOOD[name](), name)


@pytest.mark.parametrize("name", sorted(BAD))
def test_unreadable_audio_is_a_record_error(name):
    data = BAD[name]()
    with pytest.raises(RecordError, match="not readable audio") as e:
        check_audio(data, f"member {name!r}")
    assert f"member {name!r}" in str(e.value) and data[:8].hex(" ") in str(e.value)
    assert "WAV, FLAC, Ogg Vorbis/Opus or MP3" in str(e.value) and " at 0x" not in str(e.value)


def test_empty_audio_is_a_record_error():
    with pytest.raises(RecordError, match="empty"):
        check_audio(b"", "audio")


def test_without_soundfile_the_leading_bytes_decide(monkeypatch):
    monkeypatch.setitem(sys.modules, "soundfile", None)  # import soundfile raises ImportError
    for name in ("wav", "flac", "ogg"):
        check_audio(GOOD[name](), name)
    check_audio(bytes([0xFF, 0xFB, 0x90, 0x64]) + bytes(400), "bare mp3 frame")
    for data in (b"this is plainly not audio", bytes([0xFF, 0xFF, 0xFF, 0xFF]) + bytes(40)):
        with pytest.raises(RecordError, match="is not audio"):
            check_audio(data, "x")


def test_build_record_checks_audio_beside_an_image():
    cfg = ReaderConfig()
    wav = GOOD["wav"]()
    rec = build_record({"text": "both"}, cfg, "s#1", image=image_bytes("PNG"), audio=wav)
    assert rec["modality"] == "image_text" and rec["audio"] == wav  # the audio is carried
    with pytest.raises(RecordError, match="not readable audio"):
        build_record({"text": "both"}, cfg, "s#2", image=image_bytes("PNG"), audio=BAD["random bytes"](),
                     audio_what="member '2.wav'")


def _tar(path: str, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))




def test_default_pipeline_dead_letters_unreadable_audio_and_keeps_good_audio(tmp_path):
    from winnow.format import Manifest
    from winnow.pipeline.configure import load_config
    from winnow.pipeline.runner import run

    ogg = GOOD["ogg"]()  # Vorbis streams get a random serial number: encode once
    caption = b"a recording of a person reading a sentence about the weather in the mountains"
    members = [
        ("good.wav", GOOD["wav"]()), ("good.txt", caption),
        ("goodflac.flac", GOOD["flac"]()), ("goodflac.txt", caption + b" again"),
        ("noisebytes.wav", BAD["random bytes"]()), ("noisebytes.txt", caption + b" noise"),
        ("textmp3.mp3", BAD["text named mp3"]()), ("textmp3.txt", caption + b" text"),
        ("emptyflac.flac", b""), ("emptyflac.txt", caption + b" empty"),
        ("both.jpg", image_bytes("JPEG")), ("both.ogg", ogg), ("both.txt", caption + b" both"),
        ("bothbad.jpg", image_bytes("JPEG", (10, 200, 10))), ("bothbad.wav", BAD["destroyed header"]()),
        ("bothbad.txt", caption + b" both bad"),
        ("nocaption.wav", _encode(_speechlike(1.0, 9), "WAV")),
    ]
    tar = str(tmp_path / "audio-0000.tar")
    _tar(tar, members)
    out = str(tmp_path / "out")
    res = run(load_config(input=[tar], output=out))
    stats = json.loads(open(os.path.join(out, "stats.json")).read())
    m = Manifest.loads(open(os.path.join(out, "index.json")).read())
    kept, rejected, dead = _rows(out, m.shards), _rows(out, m.rejects), _rows(out, m.dead_letter)

    assert res.stats["balanced"] and stats["balanced"]
    assert stats["read"] == 8 == len(kept) + len(rejected) + len(dead)
    assert (stats["kept"], stats["rejected"], stats["dead_letter"]) == (len(kept), len(rejected), len(dead))
    key = lambda r: r["source"].rsplit("#", 1)[1]  # noqa: E731
    by_dead = {key(r): r for r in dead}
    assert sorted(by_dead) == ["bothbad", "emptyflac", "noisebytes", "textmp3"]
    for k in ("bothbad", "noisebytes", "textmp3"):
        assert by_dead[k]["reject_stage"] == "read" and "not readable audio" in by_dead[k]["error"], k
    assert "empty (0 bytes)" in by_dead["emptyflac"]["error"]
    alive = {key(r): r for r in kept + rejected}
    assert sorted(alive) == ["both", "good", "goodflac", "nocaption"]
    assert alive["both"]["modality"] == "image_text" and alive["both"]["audio"] == ogg
    assert alive["good"]["modality"] == "audio_text" and alive["nocaption"]["modality"] == "audio"
