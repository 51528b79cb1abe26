"""Pipeline benchmark: docs/s and MB/s per stage and end to end, peak memory.

Generates a ~100 MB JSONL.gz text corpus (real text from this machine, see
``winnow.demo.corpus.write_text_corpus``), then measures, each ``--repeats`` times:

* the peer: a bare single-process read of the same files (gzip + json.loads, nothing else),
* each pure stage alone on the parsed records (normalize, exact-dedup key),
* the whole pipeline on Beam's FnApiRunner with 1 and with 2 worker processes,

and prints medians and ratios against the bare read measured in the same run. Each
end-to-end run is its own subprocess, so its peak RSS is its own.

    python bench/pipeline_bench.py [--mb 100] [--repeats 3] [--workdir .bench/pipeline]
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time


def bare_read(files: list[str]) -> tuple[list[dict], int, float]:
    t = time.perf_counter()
    recs: list[dict] = []
    nbytes = 0
    for f in files:
        with gzip.open(f, "rb") as fh:
            for line in fh:
                nbytes += len(line)
                recs.append(json.loads(line))
    return recs, nbytes, time.perf_counter() - t


def stage_times(recs: list[dict]) -> dict[str, float]:
    from winnow.filters.exact import ExactDedupConfig, exact_key
    from winnow.filters.normalize import Normalizer
    from winnow.pipeline.records import make_record

    out = {}
    t = time.perf_counter()
    records = [make_record(source=f"f:{i}", text=r["text"], id=r.get("id"), meta={k: v for k, v in r.items() if k not in ("id", "text")}) for i, r in enumerate(recs)]
    out["make_record"] = time.perf_counter() - t
    norm = Normalizer()
    t = time.perf_counter()
    for r in records:
        norm.process(r)
    out["normalize"] = time.perf_counter() - t
    cfg = ExactDedupConfig()
    t = time.perf_counter()
    for r in records:
        exact_key(r, cfg)
    out["exact_dedup_key"] = time.perf_counter() - t
    return out


def end_to_end(files_glob: str, out: str, workers: int) -> dict:
    code = (
        "import json, resource, sys, time\n"
        "from winnow.pipeline.configure import load_config\n"
        "from winnow.pipeline.runner import run\n"
        f"cfg = load_config(input=[{files_glob!r}], output={out!r})\n"
        "t = time.perf_counter()\n"
        f"res = run(cfg, workers={workers}, overwrite=True)\n"
        "el = time.perf_counter() - t\n"
        "own = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "rss = max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "print(json.dumps({'elapsed': el, 'rss_kb': rss, 'stats': res.stats}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"end-to-end run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=100.0, help="corpus size in MB of JSONL text (default 100)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default=".bench/pipeline")
    args = ap.parse_args()

    from winnow.demo.corpus import write_text_corpus

    corpus = os.path.join(args.workdir, f"corpus-{args.mb:g}MB")
    if not glob.glob(os.path.join(corpus, "text", "*.jsonl.gz")):
        shutil.rmtree(corpus, ignore_errors=True)
        t = time.perf_counter()
        write_text_corpus(corpus, int(args.mb * 1e6), seed=0)
        print(f"generated corpus in {time.perf_counter() - t:.1f} s: {corpus}")
    files = sorted(glob.glob(os.path.join(corpus, "text", "*.jsonl.gz")))
    gz_bytes = sum(os.path.getsize(f) for f in files)

    bare, stage = [], {}
    recs: list[dict] = []
    nbytes = 0
    for _ in range(args.repeats):
        recs, nbytes, el = bare_read(files)
        bare.append(el)
        for k, v in stage_times(recs).items():
            stage.setdefault(k, []).append(v)
    ndocs = len(recs)
    mb = nbytes / 1e6
    print(f"\ncorpus: {ndocs:,} docs, {mb:.1f} MB of JSONL ({gz_bytes / 1e6:.1f} MB gzip), {len(files)} files")
    print(f"{'step':<34}{'median s':>10}{'docs/s':>12}{'MB/s':>9}{'vs bare read':>14}")
    bare_med = statistics.median(bare)

    def row(name: str, secs: float, vs: bool = True) -> None:
        ratio = f"{bare_med / secs:>13.2f}x" if vs else f"{'(peer)':>14}"
        print(f"{name:<34}{secs:>10.2f}{ndocs / secs:>12,.0f}{mb / secs:>9.1f}{ratio}")

    row("bare read (gzip+json, 1 proc)", bare_med, vs=False)
    for k, v in stage.items():
        row(f"stage {k} (pure, 1 proc)", statistics.median(v))

    del recs
    for workers in (1, 2):
        runs = [end_to_end(os.path.join(corpus, "text", "*.jsonl.gz"), os.path.join(args.workdir, f"out-w{workers}"), workers) for _ in range(args.repeats)]
        secs = statistics.median(r["elapsed"] for r in runs)
        rss_mb = max(r["rss_kb"] for r in runs) / 1024
        st = runs[0]["stats"]
        row(f"pipeline end-to-end, {workers} worker(s)", secs)
        print(f"{'':<34}peak RSS {rss_mb:,.0f} MB (largest process); kept {st['kept']:,} of {st['read']:,}; balanced={st['balanced']}")
    print(
        "\nratios: 'vs bare read' = bare-read seconds / step seconds, measured in this run (>1 is faster "
        "than just reading). End-to-end includes reading, both stages, the shuffle, sorting and writing shards, "
        "rejects and the manifest."
    )
    print(f"bench process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
