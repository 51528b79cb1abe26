"""`make bench`: every benchmark script, one after the other, each printing ratios against
the peer it measures in the same run (a bare read for the pipeline and its memory, MosaicML Streaming and a
bare memory-mapped gather for the loader)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


SCRIPTS = [
    ("pipeline", [str(HERE / "pipeline_bench.py")]),
    ("loader", [str(HERE / "loader" / "bench_loader.py")]),
    ("tokenizer", [str(HERE / "tokenizer_bench.py")]),
    ("dedup", [str(HERE / "dedup_bench.py")]),
    ("filters", [str(HERE / "filters_bench.py")]),
    ("toxicity", [str(HERE / "toxicity_bench.py")]),
    ("augment", [str(HERE / "augment_bench.py")]),
    ("lang", [str(HERE / "lang_bench.py")]),
    ("grammar", [str(HERE / "grammar_bench.py")]),
    # a base-size classifier through the stage vs a plain loop (on CUDA when present; small on CPU)
    ("classifier", [str(HERE / "classifier_bench.py")] + ([] if _cuda() else ["--small", "--texts", "512"])),
    # Whisper (base shape, random weights, transformers) through the audio_asr stage vs a plain
    # transformers loop and the model alone (CUDA when present; a tiny model on the CPU)
    ("whisper", [str(HERE / "whisper_bench.py")] + ([] if _cuda() else ["--small", "--seconds", "240", "--batch-size", "4"])),
    # Whisper tiny.en through the audio_asr stage vs faster-whisper in a loop (CUDA when CTranslate2 works)
    ("whisper-ct2", [str(HERE / "whisper_ct2_bench.py")] + ([] if _cuda() else ["--clips-n", "16", "--device", "cpu"])),
    # peak RSS and MB/s per core of `winnow run` on 300 MB, this tree beside the commit before
    # the batch contract and a bare gzip+JSON read
    ("memory", [str(HERE / "memory_bench.py"), "--mb", "300", "--baseline-ref", "fb29bc3"]),
]


def main() -> int:
    only = set(sys.argv[1:])
    failed = []
    for name, cmd in SCRIPTS:
        if only and name not in only:
            continue
        print(f"\n===== {name} benchmark =====", flush=True)
        if subprocess.run([sys.executable, *cmd]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
