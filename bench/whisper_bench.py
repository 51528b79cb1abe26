"""Whisper through the ``audio_asr`` stage (``backend: transformers``, Beam RunInference)
against the same model called directly, in one run, on the same clips.

Figure: audio seconds transcribed per wall-clock second.

Model: ``WhisperForConditionalGeneration`` with whisper-base's shape (``--size base``: 6+6
layers x 512, 51,865-token vocabulary) or whisper-small's (``--size small``: 12+12 x 768),
random weights, written with its processor to a temporary directory by
:func:`winnow.demo.whisper_model.build_random_whisper`; nothing is downloaded. Random weights
produce random tokens and stop at a random point, so the saved generation config forces
exactly ``--new-tokens`` new tokens per 30 s window (``max_new_tokens`` = ``min_new_tokens``):
every variant below does the same decoding work (the printed ``tokens/window`` line checks it).
The cost per window does not depend on what is said; the transcripts are noise.

Audio: ``--seconds`` of synthetic speech-like signal made with numpy (voiced harmonic syllables
at a random pitch under an envelope, pauses, a low noise floor; no espeak-ng on a GPU host),
cut into clips of 8-30 s and stored as 16 kHz 16-bit WAV, as records would carry them.

Variants, same clips, same ``--batch-size`` windows per ``generate``, same device and dtype
(bfloat16 on CUDA, float32 on the CPU), greedy, ``language="en"``, ``task="transcribe"``:

* ``plain loop``: transformers directly, batches in input order: decode the WAV (soundfile,
  as the stage does), ``WhisperProcessor`` features (its default: the STFT on the CPU), copy to
  the device, ``generate``, ``batch_decode``;
* ``model only``: ``generate`` on features already on the device (computed beforehand, not
  timed): the ceiling for this model, batch and token count;
* ``stage``: the clips as audio records in Records batches, read from a local file inside the
  pipeline, through ``AudioAsrStage`` (RunInference + the StageFn that attaches transcripts +
  the report statistics) on the FnApiRunner, end to end, and without its model load
  (RunInference's ``load_model_latency_milli_secs``).

    python bench/whisper_bench.py                       # whisper-base shape, CUDA when present
    python bench/whisper_bench.py --size small --json OUT.json
    python bench/whisper_bench.py --small               # a tiny model and 60 s of audio (CPU smoke run)

``bench/whisper_ct2_bench.py`` measures the faster-whisper backend (CTranslate2) the same way.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
import wave

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # a checkout without an install: the winnow package maps onto the root

RATE = 16000


def synth_speechlike(seconds: float, seed: int):
    """``seconds`` of a speech-like signal (float32, 16 kHz): voiced syllables and pauses."""
    import numpy as np

    rng = np.random.RandomState(seed)
    n_total = int(seconds * RATE)
    out = np.zeros(n_total, dtype=np.float32)
    pos = 0
    f0 = rng.uniform(95, 210)
    while pos < n_total:
        n = int(RATE * rng.uniform(0.09, 0.3))
        t = np.arange(n) / RATE
        pitch = f0 * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
        phase = 2 * np.pi * np.cumsum(pitch) / RATE
        v = sum(np.sin(k * phase) * (rng.uniform(0.3, 1.0) / k) for k in range(1, 14))
        seg = (0.15 * v * np.sin(np.pi * np.arange(n) / n) ** 2).astype(np.float32)
        end = min(n_total, pos + n)
        out[pos:end] = seg[: end - pos]
        pos = end + int(RATE * (rng.uniform(0.03, 0.09) if rng.rand() > 0.15 else rng.uniform(0.2, 0.5)))
    out += (rng.randn(n_total) * 0.003).astype(np.float32)
    return np.clip(out, -1.0, 1.0)


def wav_bytes(x) -> bytes:
    """Mono float samples as 16 kHz 16-bit PCM WAV (stdlib ``wave``)."""
    import numpy as np

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(x, -1.0, 1.0) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def make_clips(total_seconds: float, seed: int = 0) -> tuple[list[bytes], float]:
    """WAV clips of 8-30 s adding up to about ``total_seconds``; returns them and their length."""
    import numpy as np

    rng = np.random.RandomState(seed)
    clips, secs = [], 0.0
    while secs < total_seconds:
        s = float(min(rng.uniform(8.0, 30.0), max(1.0, total_seconds - secs)))
        clips.append(wav_bytes(synth_speechlike(s, seed * 100003 + len(clips))))
        secs += s
    return clips, secs


def _sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _load(model_dir: str, device, dtype):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    proc = WhisperProcessor.from_pretrained(model_dir, local_files_only=True)
    model = WhisperForConditionalGeneration.from_pretrained(model_dir, local_files_only=True)
    return proc, model.to(device=device, dtype=dtype).eval()


GEN = {"language": "en", "task": "transcribe", "num_beams": 1, "do_sample": False}


def plain_loop(model_dir: str, clips: list[bytes], batch: int, device, dtype) -> dict:
    """transformers directly: decode, processor, generate, decode text; batches in input order."""
    import torch

    from winnow.filters.audio import load_mono

    proc, model = _load(model_dir, device, dtype)

    def go(cs: list[bytes]) -> tuple[list[str], list[int]]:
        texts, lengths = [], []
        for s in range(0, len(cs), batch):
            audios = [load_mono(c, RATE) for c in cs[s:s + batch]]
            feats = proc(audios, sampling_rate=RATE, return_tensors="pt").input_features
            with torch.inference_mode():
                ids = model.generate(feats.to(device=device, dtype=dtype), **GEN)
            lengths.append(int(ids.shape[-1]))
            texts += [t.strip() for t in proc.batch_decode(ids, skip_special_tokens=True)]
        return texts, lengths

    go(clips[:batch] + clips[-(len(clips) % batch or batch):])  # warm-up: kernels, allocator, both batch shapes
    _sync(torch, device)
    t = time.perf_counter()
    texts, lengths = go(clips)
    _sync(torch, device)
    return {"seconds": time.perf_counter() - t, "texts": texts, "ids_per_window": sorted(set(lengths))}


def model_only(model_dir: str, clips: list[bytes], batch: int, device, dtype) -> dict:
    """``generate`` alone on features already on the device."""
    import torch

    from winnow.filters.audio import load_mono

    proc, model = _load(model_dir, device, dtype)
    feats = []
    for s in range(0, len(clips), batch):
        audios = [load_mono(c, RATE) for c in clips[s:s + batch]]
        feats.append(proc(audios, sampling_rate=RATE, return_tensors="pt").input_features.to(device=device, dtype=dtype))
    with torch.inference_mode():
        for f in {0: feats[0], len(feats) - 1: feats[-1]}.values():  # warm-up: both batch shapes
            model.generate(f, **GEN)
        _sync(torch, device)
        t = time.perf_counter()
        for f in feats:
            ids = model.generate(f, **GEN)
        _sync(torch, device)
    return {"seconds": time.perf_counter() - t, "ids_per_window": int(ids.shape[-1])}


def stage_run(model_dir: str, clips: list[bytes], batch: int, per_call: int, device: str, dtype: str) -> dict:
    from stage_timing import run_model_stage

    from winnow.filters.audio_models import AudioAsrConfig
    from winnow.pipeline.batch import Records
    from winnow.pipeline.records import make_record
    from winnow.pipeline.stages.audio_models import AudioAsrStage

    cfg = AudioAsrConfig(backend="transformers", model_dir=model_dir, device=device, dtype=dtype, batch_size=batch,
                         records_per_call=per_call, max_wer=None)
    recs = [make_record(source=f"bench:{i}", id=f"{i:06d}", audio=c, modality="audio") for i, c in enumerate(clips)]
    batches = [Records(recs[i:i + batch]) for i in range(0, len(recs), batch)]
    res = run_model_stage(AudioAsrStage(cfg), batches, "id", "audio_asr_transcript", "winnow:audio_asr/run_inference")
    return {"seconds": res["wall_s"], "load_s": res["load_s"], "infer_s": res["infer_s"], "dead": res["dead"],
            "texts": [res["values"].get(r["id"]) for r in recs]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=("base", "small"), default="base", help="Whisper shape (random weights)")
    ap.add_argument("--small", action="store_true", help="CPU smoke run: a tiny model and 60 s of audio")
    ap.add_argument("--seconds", type=float, default=0.0,
                    help="audio to transcribe, in seconds (default 3600 on CUDA, 240 on the CPU, 60 with --small)")
    ap.add_argument("--batch-size", type=int, default=16, help="30 s windows per generate call (default 16)")
    ap.add_argument("--records-per-call", type=int, default=64, help="the stage's records per RunInference call")
    ap.add_argument("--new-tokens", type=int, default=64,
                    help="tokens generated per window in every variant (forced; default 64, about 20 s of speech)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--json", default="", help="also write the figures here")
    a = ap.parse_args(argv)
    import importlib.util

    missing = [m for m in ("torch", "transformers", "soundfile", "apache_beam") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"missing modules: {', '.join(missing)} (the stage decodes audio with soundfile; carry its wheel)",
              file=sys.stderr)
        return 2
    import torch

    from winnow.demo.whisper_model import WHISPER_SHAPES, build_random_whisper

    cuda = torch.cuda.is_available() and a.device != "cpu"
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    size = "tiny" if a.small else a.size
    total = a.seconds or (60.0 if a.small else 3600.0 if cuda else 240.0)
    t = time.perf_counter()
    clips, secs = make_clips(total)
    made = time.perf_counter() - t
    windows = len(clips)  # every clip is at most 30 s: one window each
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        build_random_whisper(d, size, max_new_tokens=a.new_tokens)
        built = time.perf_counter() - t
        dm, layers, heads, ffn, vocab = WHISPER_SHAPES[size]
        name = torch.cuda.get_device_name(0) if cuda else "cpu"
        print(f"model: Whisper {size} shape ({layers}+{layers} layers x {dm}, vocab {vocab}), random weights, "
              f"written in {built:.1f} s; {name}, {str(dtype).replace('torch.', '')}")
        print(f"audio: {len(clips)} clips, {secs:.0f} s of SYNTHETIC speech-like signal (numpy), made in {made:.1f} s")
        print(f"decoding: greedy, exactly {a.new_tokens} new tokens per 30 s window in every variant "
              f"(max_new_tokens = min_new_tokens: random weights would stop at random); batch {a.batch_size} windows",
              flush=True)
        # one untimed pass first: the first generate calls of a process cost far more than the
        # later ones (measured here: the first variant ran at a tenth of its later speed)
        model_only(d, clips[: 2 * a.batch_size], a.batch_size, device, dtype)
        mo = model_only(d, clips, a.batch_size, device, dtype)
        print(f"  (model only: {secs / mo['seconds']:.1f} audio s/s)", flush=True)
        pl = plain_loop(d, clips, a.batch_size, device, dtype)
        print(f"  (plain loop: {secs / pl['seconds']:.1f} audio s/s)", flush=True)
        st = stage_run(d, clips, a.batch_size, a.records_per_call, device.type, str(dtype).replace("torch.", ""))
    same = sum(x == y for x, y in zip(pl["texts"], st["texts"]))
    res = {
        "device": name, "dtype": str(dtype).replace("torch.", ""), "model": f"whisper-{size} shape, random weights",
        "clips": len(clips), "windows": windows, "audio_seconds": secs, "audio": "synthetic speech-like (numpy)",
        "batch_size": a.batch_size, "records_per_call": a.records_per_call, "new_tokens_per_window": a.new_tokens,
        "ids_per_window_model_only": mo["ids_per_window"], "ids_per_window_plain": pl["ids_per_window"],
        "model_only_audio_s_per_s": secs / mo["seconds"], "plain_loop_audio_s_per_s": secs / pl["seconds"],
        "stage_audio_s_per_s": secs / st["seconds"],
        "stage_audio_s_per_s_without_model_load": secs / max(1e-9, st["seconds"] - st["load_s"]),
        "stage_inference_audio_s_per_s": secs / max(1e-9, st["infer_s"]),
        "stage_wall_s": st["seconds"], "stage_model_load_s": st["load_s"], "stage_run_inference_s": st["infer_s"],
        "stage_dead": st["dead"], "same_transcripts_stage_vs_plain": same,
    }
    res["ratio_stage_vs_plain"] = res["stage_audio_s_per_s"] / res["plain_loop_audio_s_per_s"]
    res["ratio_stage_without_load_vs_plain"] = (res["stage_audio_s_per_s_without_model_load"]
                                                / res["plain_loop_audio_s_per_s"])
    res["ratio_plain_vs_model_only"] = res["plain_loop_audio_s_per_s"] / res["model_only_audio_s_per_s"]
    print(f"audio_asr (transformers): whisper-{size} shape on {name} ({res['dtype']}), {secs:.0f} s of audio in "
          f"{len(clips)} clips, batch {a.batch_size}, {a.new_tokens} tokens/window forced")
    print(f"  model only (features ready)  {res['model_only_audio_s_per_s']:9.1f} audio s/s")
    print(f"  plain loop (transformers)    {res['plain_loop_audio_s_per_s']:9.1f} audio s/s   "
          f"x{res['ratio_plain_vs_model_only']:.2f} of model only")
    print(f"  stage (Beam, end to end)     {res['stage_audio_s_per_s']:9.1f} audio s/s   "
          f"x{res['ratio_stage_vs_plain']:.2f} of the plain loop (wall {st['seconds']:.1f} s, model load {st['load_s']:.1f} s)")
    print(f"  stage without model load     {res['stage_audio_s_per_s_without_model_load']:9.1f} audio s/s   "
          f"x{res['ratio_stage_without_load_vs_plain']:.2f} of the plain loop")
    print(f"  stage, RunInference calls    {res['stage_inference_audio_s_per_s']:9.1f} audio s/s   "
          f"(time inside run_inference: {st['infer_s']:.1f} s)")
    print(f"  ids generate returned per window: model only {mo['ids_per_window']}, plain loop {pl['ids_per_window']} "
          f"(the stage runs the same saved generation config)")
    print(f"  transcripts: {sum(t is not None for t in st['texts'])}/{len(clips)} by the stage, dead {st['dead']}; "
          f"same as the plain loop: {same}/{len(clips)}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0 if st["dead"] == 0 and all(t is not None for t in st["texts"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
