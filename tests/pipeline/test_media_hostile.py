"""The must-show hostile media corpus: ONE WebDataset tar holding every planted image and audio
defect, through every media stage in one Beam pipeline (FnApiRunner) by the ``winnow run``
command, with the network blocked.

Each planted key must land exactly where its sample says (kept; rejected by that stage with
that reason; dead-lettered by that stage with that error), every good record is kept, the
balance is exact, and the run's peak memory stays within a bound of a run on the good records
alone (the bombs are refused from their headers, never decoded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pytest

pytest.importorskip("soundfile")
pytest.importorskip("faster_whisper")
pytest.importorskip("speechmos")
pytest.importorskip("transformers")

from winnow.demo.hostile_corpus import MEDIA_STAGES, hostile_samples, media_overrides, write_hostile_corpus
from winnow.format import Manifest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: Runs ``winnow run`` (the console script's ``main``) in a fresh process with every
#: non-loopback connection refused, and prints its exit code, peak RSS and blocked attempts.
_CLI = r"""
import json, resource, sys
import pytest
from tests.pipeline.test_text_filter_stages import _block_network
attempts = _block_network(pytest.MonkeyPatch())
from winnow.pipeline.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "attempts": [str(a) for a in attempts]}))
"""

#: How much more memory the hostile run may take than the run on its good records alone. The
#: 10,000 x 10,000 bomb decoded would take 100 MB as 8-bit grey (300 MB as RGB), the 20,000 x
#: 20,000 one 400 MB (1.2 GB); the 1,000:1 image is 1M pixels.
_MEMORY_SLACK_MB = 80


def _winnow_run(tar: str, out: str, overrides: list[str]) -> dict:
    args = ["run", "--input", tar, "--output", out, "--stages", ",".join(MEDIA_STAGES), "--quiet"]
    for o in overrides:
        args += ["--set", o]
    # glibc's per-thread malloc arenas (Beam, onnxruntime and CTranslate2 threads) made the peak
    # of the same run vary by up to ~140 MB; two arenas keep both runs comparable
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    res = subprocess.run([sys.executable, "-c", _CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["rc"] == 0, res.stderr[-4000:]
    assert got["attempts"] == [], got["attempts"]
    return got


def _rows(out: str, entries) -> list[dict]:
    rows = []
    for e in entries:
        with pa.memory_map(os.path.join(out, e.path)) as src:
            rows += pa.ipc.open_file(src).read_all().to_pylist()
    return rows


def _key(source: str) -> str:
    return source.rsplit("#", 1)[1]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from winnow.demo.clip_model import build_random_clip

    return build_random_clip(tmp_path_factory.mktemp("clip") / "model")


def test_the_corpus_plants_every_defect_of_the_must_show():
    """The list the issue names, each planted once, in one sample list (one tar)."""
    samples = {s.key: s for s in hostile_samples()}
    planted = {
        "bad-truncated-jpeg": ("rejected", "image_quality", "image_quality_truncated"),
        "bad-png-crc": ("dead", "read", "checksum"),
        "bad-bomb-20000": ("dead", "read", "DecompressionBombError"),
        "bad-aspect-1000": ("rejected", "image_quality", "image_quality_aspect_ratio"),
        "bad-blank": ("rejected", "image_quality", "image_quality_blank"),
        "bad-blurred": ("rejected", "image_quality", "image_quality_blurry"),
        "good-cmyk": ("kept", "", ""),
        "good-16bit": ("kept", "", ""),
        "silence": ("rejected", "audio", "audio_mostly_silent"),
        "short": ("rejected", "audio", "audio_too_short"),
        "clipped": ("rejected", "audio", "audio_clipped"),
        "corrupt-header": ("dead", "read", "not readable audio"),
    }
    for key, fate in planted.items():
        assert (samples[key].expect, samples[key].stage, samples[key].reason) == fate, key
    exts = {ext for s in samples.values() for ext, _ in s.members}
    assert {"wav", "flac", "ogg", "mp3", "jpg", "png", "gif"} <= exts
    good = [s for s in samples.values() if s.expect == "kept"]
    assert any(e in ("jpg", "png") for s in good for e, _ in s.members)
    assert any(e in ("wav", "flac") for s in good for e, _ in s.members)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_hostile_media_corpus_through_every_media_stage(tmp_path, clip_dir):
    samples = hostile_samples()
    tar = str(tmp_path / "hostile-0000.tar")
    write_hostile_corpus(tar, samples)
    good_tar = str(tmp_path / "good-0000.tar")
    write_hostile_corpus(good_tar, [s for s in samples if s.expect == "kept"])
    overrides = media_overrides(clip_dir)

    out = str(tmp_path / "out")
    hostile = _winnow_run(tar, out, overrides)
    base = _winnow_run(good_tar, str(tmp_path / "good-out"), overrides)

    stats = json.loads(open(os.path.join(out, "stats.json")).read())
    m = Manifest.loads(open(os.path.join(out, "index.json")).read())
    kept, rejected, dead = _rows(out, m.shards), _rows(out, m.rejects), _rows(out, m.dead_letter)
    assert stats["balanced"] and stats["read"] == len(samples)
    assert len(kept) + len(rejected) + len(dead) == len(samples)
    by_key: dict[str, tuple] = {_key(r["source"]): ("kept", "", "", r) for r in kept}
    by_key.update({_key(r["source"]): ("rejected", r["reject_stage"], r["reject_reason"], r) for r in rejected})
    by_key.update({_key(r["source"]): ("dead", r["reject_stage"], r["error"], r) for r in dead})
    assert set(by_key) == {s.key for s in samples}
    checked = 0
    for s in samples:
        where, stage, why, rec = by_key[s.key]
        if not s.holds:  # synthetic speech without espeak-ng: Whisper's verdict is open
            continue
        checked += 1
        assert where == s.expect, (s.key, s.what, where, stage, why)
        if where == "rejected":
            assert (stage, why) == (s.stage, s.reason), s.key
        if where == "dead":
            assert stage == s.stage and s.reason in why, (s.key, stage, why)
    assert checked >= len(samples) - 6

    # what the kept records carry
    rec = {k: v[3] for k, v in by_key.items() if v[0] == "kept"}
    for k, r in rec.items():
        if r["image"] is not None:
            assert r["image_width"] and r["image_height"] and r["image_sharpness"] is not None, k
            assert r["image_text_score"] is not None and r["audio_duration"] is None, k
        else:
            assert r["audio_duration"] > 0.5 and r["image_width"] is None, k
            assert r["audio_mos_ovrl"] >= 2.0 and r["audio_asr_transcript"], k
    assert (rec["good-exif-rotated"]["image_width"], rec["good-exif-rotated"]["image_height"]) == (120, 160)
    assert rec["good-animated"]["image_format"] == "PNG"  # the first frame, re-encoded
    for k in ("good-wav", "good-flac", "good-mp3", "good-ogg"):
        if k in rec:
            assert rec[k]["audio_format"] == k.split("-")[1].upper(), k
    if all(s.holds for s in samples):
        assert rec["good-mono-noref"]["text"] == rec["good-mono-noref"]["audio_asr_transcript"]
    assert by_key["good-wav-copy"][3]["duplicate_of"] == "good-wav"

    # the funnel names every planted reason under its stage
    funnel = {s["name"]: s for s in stats["stages"]}
    for s in samples:
        if s.expect == "rejected" and s.holds:
            assert s.reason in funnel[s.stage]["rejected"], (s.stage, s.reason)
    report = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    for title in ("Audio transcripts (Whisper)", "Audio quality (DNSMOS)", "Image-text agreement (CLIP)"):
        assert title in report, title

    # the bombs cost no memory: the hostile run stays near the run on the good records alone
    print(f"\npeak RSS: good records {base['peak_kb'] / 1024:.0f} MB, hostile corpus {hostile['peak_kb'] / 1024:.0f} MB")
    assert hostile["peak_kb"] - base["peak_kb"] < _MEMORY_SLACK_MB * 1024, (base, hostile)
