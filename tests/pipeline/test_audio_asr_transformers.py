"""``audio_asr.backend: transformers``: a tiny randomly initialised Whisper and its processor,
built offline and saved, loaded through the real path (``from_pretrained``, local files only)
and run through the stage (Beam RunInference on the FnApiRunner) on the CPU, network blocked.

A random model's transcripts are noise; what is checked is the contract: every audio record
gets a transcript, audio-only records get it as text, captioned ones a WER, a clip longer than
30 s is transcribed window by window, an undecodable clip dead-letters alone, other records
pass through, and a clip's transcript does not depend on the clips batched with it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("soundfile")

from winnow.demo.audio import encode, noise, tone
from winnow.errors import ConfigError
from winnow.filters.audio_models import AudioAsrConfig, default_whisper_dir
from winnow.filters.audio_whisper_hf import TransformersWhisperAsr, windows
from winnow.pipeline.records import make_record

from .test_audio_stages import _run_stage
from .test_text_filter_stages import _block_network

TOKENS = 6


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    from winnow.demo.whisper_model import build_random_whisper

    return build_random_whisper(tmp_path_factory.mktemp("whisper") / "tiny", "tiny", max_new_tokens=TOKENS)


def _clip(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:
    t = tone(seconds, rate=rate, hz=180.0 + 40 * seed, level=0.2)
    return np.clip(t + noise(len(t), level=0.02, seed=seed), -1, 1).astype(np.float32)


def _cfg(d: str, **kw) -> AudioAsrConfig:
    return AudioAsrConfig(backend="transformers", model_dir=d, device="cpu", **kw)


def test_config_checks_the_directory_for_the_backend(tmp_path, whisper_dir):
    with pytest.raises(ConfigError, match="audio_asr.model_dir"):
        AudioAsrConfig(backend="transformers")  # no default model for transformers
    with pytest.raises(ConfigError, match="audio_asr.backend"):
        AudioAsrConfig(backend="whisper.cpp")
    with pytest.raises(ConfigError, match="audio_asr.dtype"):
        _cfg(whisper_dir, dtype="int8")
    ct2 = default_whisper_dir()
    if ct2:  # the bundled CTranslate2 model is for the other backend, and the error says so
        with pytest.raises(ConfigError, match="backend=faster_whisper"):
            _cfg(ct2)
    with pytest.raises(ConfigError, match="model.bin"):
        AudioAsrConfig(backend="faster_whisper", model_dir=whisper_dir)
    assert _cfg(whisper_dir).resolved_dir == whisper_dir


def test_config_option_from_the_command_line(tmp_path, whisper_dir):
    from winnow.pipeline.configure import load_config

    cfg = load_config(input=["x.tar"], output=str(tmp_path / "o"), stages=["audio_asr"],
                      overrides=["audio_asr.backend=transformers", f"audio_asr.model_dir={whisper_dir}",
                                 "audio_asr.dtype=float32"])
    got = cfg.stage_options["audio_asr"]
    assert (got.backend, got.model_dir, got.dtype) == ("transformers", whisper_dir, "float32")


def test_windows_cut_long_clips_at_30_seconds():
    assert [len(w) for w in windows(np.zeros(16000 * 30))] == [480000]
    assert [len(w) for w in windows(np.zeros(16000 * 65))] == [480000, 480000, 80000]


def test_transcripts_do_not_depend_on_the_batch(whisper_dir, monkeypatch):
    attempts = _block_network(monkeypatch)
    asr = TransformersWhisperAsr(_cfg(whisper_dir, batch_size=3))
    assert str(asr.device) == "cpu" and asr.generate_kwargs["language"] == "en"
    clips = [_clip(1.0 + i, i) for i in range(3)]
    together = asr.transcribe_batch(clips)
    alone = [asr.transcribe_batch([c])[0] for c in clips]
    assert together == alone
    assert all(t for t in together)
    ids = asr.model.generate(asr.features(clips[:1]), **asr.generate_kwargs)
    assert ids.shape[-1] <= TOKENS + 4  # the saved generation config bounds the work
    # the reference way to call it: the processor on the clips, generate, batch_decode
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    proc = WhisperProcessor.from_pretrained(whisper_dir, local_files_only=True)
    model = WhisperForConditionalGeneration.from_pretrained(whisper_dir, local_files_only=True).eval()
    with torch.inference_mode():
        ref = model.generate(proc(clips, sampling_rate=16000, return_tensors="pt").input_features,
                             language="en", task="transcribe")
    assert [t.strip() for t in proc.batch_decode(ref, skip_special_tokens=True)] == together
    assert attempts == []


def test_stage_with_the_transformers_backend(whisper_dir, monkeypatch):
    attempts = _block_network(monkeypatch)
    long_clip = _clip(35.0, 4)
    recs = [
        make_record(source="a", id="captioned", audio=encode(_clip(2.0, 1), 16000, "flac"), text="a short caption"),
        make_record(source="b", id="audio-only", audio=encode(_clip(1.5, 2), 16000, "wav")),
        make_record(source="c", id="long", audio=encode(long_clip, 16000, "wav")),
        make_record(source="d", id="broken", audio=b"not audio at all" * 4),
        make_record(source="e", id="resampled", audio=encode(_clip(1.0, 3, rate=22050), 22050, "ogg")),
        make_record(source="t", id="text", text="plain text"),
    ]
    from winnow.pipeline.stages.audio_models import AudioAsrStage

    cfg = _cfg(whisper_dir, max_wer=None, batch_size=2, records_per_call=4)
    kept, rejected, dead = _run_stage(AudioAsrStage(cfg), recs)
    assert not rejected
    assert [d["id"] for d in dead] == ["broken"] and "could not be decoded" in dead[0]["error"]
    by_id = {r["id"]: r for r in kept}
    assert sorted(by_id) == ["audio-only", "captioned", "long", "resampled", "text"]
    for k in ("audio-only", "captioned", "long", "resampled"):
        assert by_id[k]["audio_asr_transcript"], k
    assert by_id["audio-only"]["text"] == by_id["audio-only"]["audio_asr_transcript"]
    assert by_id["captioned"]["text"] == "a short caption" and by_id["captioned"]["audio_asr_wer"] is not None
    assert by_id["text"]["audio_asr_transcript"] is None and by_id["text"]["text"] == "plain text"
    # the long clip: its two windows' transcripts, joined (same model, called directly)
    direct = TransformersWhisperAsr(cfg)
    assert by_id["long"]["audio_asr_transcript"] == " ".join(direct.transcribe_batch(windows(long_clip)))
    assert attempts == []
