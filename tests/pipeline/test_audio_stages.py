"""The audio stages in Beam: dedup clusters, DNSMOS and Whisper through RunInference offline,
and identical shards across runners. The hostile corpus end to end (audio and images in one
tar, every media stage) is tests/pipeline/test_media_hostile.py."""

from __future__ import annotations

import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

pytest.importorskip("soundfile")
pytest.importorskip("faster_whisper")
pytest.importorskip("speechmos")

from winnow.demo.audio import SENTENCES, encode, speech
from winnow.demo.hostile_audio import STAGES, build_hostile_audio
from winnow.filters.audio_fingerprint import AudioDedupConfig
from winnow.filters.audio_models import AudioAsrConfig, AudioMosConfig
from winnow.pipeline.configure import load_config
from winnow.pipeline.records import make_record
from winnow.pipeline.runner import run
from winnow.pipeline.stages.audio_dedup import AudioDedup
from winnow.pipeline.stages.audio_models import AudioAsrStage, AudioMosStage

from .batches import create_batches, rows
from .test_text_filter_stages import _block_network


def _opts() -> PipelineOptions:
    return PipelineOptions(["--runner=FnApiRunner"])


@pytest.fixture(scope="module")
def clips():
    return [speech(s) for s in SENTENCES[:4]]


class _Sink:
    """Collects rows in the test process (FnApiRunner runs in-process)."""

    store: dict[str, list] = {}

    def __init__(self, name: str) -> None:
        self.name = name
        _Sink.store[name] = []

    def __call__(self, r):
        _Sink.store[self.name].append(r)


def _run_stage(stage, recs):
    kept, rej, dead = _Sink("kept"), _Sink("rejected"), _Sink("dead")
    with TestPipeline(options=_opts()) as p:
        out = create_batches(p, recs, size=3) | stage
        rows(out.kept, "K") | "SK" >> beam.Map(kept)
        rows(out.rejected, "R") | "SR" >> beam.Map(rej)
        rows(out.dead, "D") | "SD" >> beam.Map(dead)
    return _Sink.store["kept"], _Sink.store["rejected"], _Sink.store["dead"]


def test_audio_dedup_clusters_reencoded_and_trimmed_copies(clips):
    c0 = clips[0]
    cut = int(0.23 * c0.rate)
    recs = [
        make_record(source="a", id="a-orig", audio=encode(c0.samples, c0.rate, "wav")),
        make_record(source="b", id="b-mp3", audio=encode(c0.samples[cut:], c0.rate, "mp3"), text=c0.text),
        make_record(source="c", id="c-ogg", audio=encode(c0.samples * 0.5, c0.rate, "ogg")),
    ] + [make_record(source=f"o{i}", id=f"other-{i}", audio=encode(c.samples, c.rate, "flac"))
         for i, c in enumerate(clips[1:])] + [make_record(source="t", id="text", text="plain text")]
    kept, rejected, dead = _run_stage(AudioDedup(AudioDedupConfig()), recs)
    assert not dead
    assert sorted(r["id"] for r in rejected) == ["b-mp3", "c-ogg"]
    assert all(r["reject_reason"] == "audio_dedup_near_duplicate" and r["duplicate_of"] == "a-orig" for r in rejected)
    by_id = {r["id"]: r for r in kept}
    assert sorted(by_id) == ["a-orig", "other-0", "other-1", "other-2", "text"]
    assert by_id["a-orig"]["audio_dup_cluster_size"] == 3
    assert by_id["other-0"]["audio_dup_cluster_size"] in (None, 1)


def test_model_stages_load_offline_and_dead_letter_alone(clips, monkeypatch):
    attempts = _block_network(monkeypatch)
    c0, c1 = clips[0], clips[1]
    recs = [
        make_record(source="a", id="captioned", audio=encode(c0.samples, c0.rate, "flac"), text=c0.text),
        make_record(source="b", id="audio-only", audio=encode(c1.samples, c1.rate, "mp3")),
        make_record(source="c", id="broken", audio=b"not audio at all" * 4),
        make_record(source="t", id="text", text="plain text"),
    ]
    kept, rejected, dead = _run_stage(AudioMosStage(AudioMosConfig(min_mos=1.0, device="cpu")), recs)
    assert [d["source"] for d in dead] == ["c"] and "could not be decoded" in dead[0]["error"]
    assert not rejected
    by_id = {r["id"]: r for r in kept}
    for k in ("captioned", "audio-only"):
        assert 1.0 <= by_id[k]["audio_mos_ovrl"] <= 5.0
    assert by_id["text"]["audio_mos_ovrl"] is None
    kept2, rejected2, dead2 = _run_stage(AudioAsrStage(AudioAsrConfig(device="cpu", max_wer=0.6)), kept)
    assert not dead2 and not rejected2
    by_id = {r["id"]: r for r in kept2}
    if not c0.synthetic:  # espeak-ng speech: Whisper hears the words
        assert by_id["captioned"]["audio_asr_wer"] <= 0.6
        assert "old mill" in by_id["captioned"]["audio_asr_transcript"].lower()
        assert by_id["audio-only"]["text"] == by_id["audio-only"]["audio_asr_transcript"] != ""
    assert by_id["captioned"]["text"] == c0.text  # a caption is never replaced
    assert by_id["text"]["audio_asr_transcript"] is None and by_id["text"]["text"] == "plain text"
    assert attempts == []


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_identical_audio_shards_across_runners(tmp_path):
    from .test_runners import free_port, manifest_files
    import socket
    import subprocess
    import sys
    import time

    h = build_hostile_audio(str(tmp_path / "in"))
    port = free_port()
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                             f"--service_port={port}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("the Beam worker pool did not start")
                time.sleep(0.2)
        setups = {
            "fnapi": dict(workers=1, beam_args=[]),
            "multiprocess2": dict(workers=2, beam_args=[]),
            "portable": dict(workers=1, beam_args=["--runner=PortableRunner", "--job_endpoint=embed",
                                                   "--environment_type=EXTERNAL",
                                                   f"--environment_config=localhost:{port}"]),
        }
        results = {}
        for name, kw in setups.items():
            out = str(tmp_path / name)
            res = run(load_config(input=[h.path], output=out, stages=list(STAGES),
                                  overrides=["audio_asr.device=cpu", "audio_mos.device=cpu"]), **kw)
            assert res.stats["balanced"], name
            results[name] = manifest_files(out)
        base = results["fnapi"]
        assert base[0]["shards"] and base[0]["rejects"]
        for name, got in results.items():
            assert got == base, f"{name} wrote different shards than the in-process runner"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_registry_declares_the_audio_stages():
    from winnow.pipeline.stages.registry import STAGES as REGISTRY

    for name in STAGES:
        assert name in REGISTRY
    assert REGISTRY["audio"].reasons == ("audio_unreadable", "audio_too_short", "audio_too_long",
                                         "audio_mostly_silent", "audio_clipped")
    names = [f.name for f in REGISTRY["audio_asr"].fields(AudioAsrConfig())]
    assert names == ["audio_asr_transcript", "audio_asr_wer"]


def test_demo_audio_file_and_stage_order(tmp_path):
    from pathlib import Path

    from winnow.demo.corpus import _audio
    from winnow.demo.hostile_audio import with_audio_stages

    planted: dict = {}
    f = _audio(Path(tmp_path), planted)
    assert f.kind == "tar.gz" and f.path.endswith("speech-0000.tar.gz") and f.units == 12
    assert f.malformed == planted["audio_planted_unreadable"] == 1 and f.records == 11  # read dead letter
    assert planted["audio_planted_too_short"] == planted["audio_planted_dedup_near_duplicate"] == 1
    assert planted["audio_synthetic_speech"] in (0, 1)
    order = with_audio_stages(["normalize", "exact_dedup", "minhash_dedup", "image_dedup", "toxicity"])
    assert order == ["normalize", "exact_dedup", "minhash_dedup", "image_dedup", *STAGES, "toxicity"]
    assert with_audio_stages(["toxicity"]) == [*STAGES, "toxicity"]
