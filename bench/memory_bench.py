"""Memory and end-to-end throughput of ``winnow run`` on a large text corpus.

Generates (once) a JSONL.gz corpus of ``--mb`` MB of uncompressed JSONL from text on this
machine, then runs ``winnow run --stages normalize,exact_dedup,lang,quality,minhash_dedup,pii``
on it as a subprocess and samples the resident memory of the whole process tree (children
included) every 50 ms. It prints, for each run, the peak tree RSS as a multiple of the input
size, MB/s of input per CPU second of the tree, and wall-clock MB/s, and the same for the
peer measured in the same run: a bare gzip + ``json.loads`` read of the same files.

With ``--baseline-ref REF`` it also runs the same job with the code of git commit ``REF``
(checked out into a temporary work tree and put first on ``PYTHONPATH``), so the previous
stage contract is measured side by side on the same corpus.

    python bench/memory_bench.py [--mb 300] [--workers 1 2] [--baseline-ref fb29bc3]
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
STAGES = "normalize,exact_dedup,lang,quality,minhash_dedup,pii"
#: package folders mapped into the ``winnow`` namespace (pyproject's package-dir)
PACKAGE_DIRS = ("pipeline", "filters", "tokenizer", "cache", "demo", "monitoring")


def ensure_corpus(workdir: str, mb: float) -> list[str]:
    corpus = os.path.join(workdir, f"corpus-{mb:g}MB")
    files = sorted(glob.glob(os.path.join(corpus, "text", "*.jsonl.gz")))
    if files:
        return files
    shutil.rmtree(corpus, ignore_errors=True)
    code = ("import sys\nfrom winnow.demo.corpus import write_text_corpus\n"
            "write_text_corpus(sys.argv[1], int(float(sys.argv[2]) * 1e6), seed=0)\n")
    subprocess.run([sys.executable, "-c", code, corpus, str(mb)], check=True)
    return sorted(glob.glob(os.path.join(corpus, "text", "*.jsonl.gz")))


def input_bytes(files: list[str]) -> int:
    n = 0
    for f in files:
        with gzip.open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                n += len(chunk)
    return n


def tree_sample(proc: psutil.Process) -> tuple[int, float]:
    """(RSS bytes, CPU seconds) of a process and all its children, now."""
    rss = cpu = 0.0
    procs = [proc]
    try:
        procs += proc.children(recursive=True)
    except psutil.Error:
        pass
    for p in procs:
        try:
            rss += p.memory_info().rss
            t = p.cpu_times()
            cpu += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return int(rss), cpu


def measure(cmd: list[str], env: dict | None = None, cwd: str | None = None) -> dict:
    """Run ``cmd``; peak tree RSS, tree CPU seconds and wall seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ps = psutil.Process(proc.pid)
    lines: list[tuple[float, str]] = []

    def drain() -> None:  # read while it runs (a full pipe would stall the run) and time each line
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.perf_counter() - t0, line))

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    peak = 0
    cpu_seen: dict[int, float] = {}
    while proc.poll() is None:
        rss, _ = tree_sample(ps)
        peak = max(peak, rss)
        try:
            for p in [ps, *ps.children(recursive=True)]:
                t = p.cpu_times()
                cpu_seen[p.pid] = t.user + t.system
        except psutil.Error:
            pass
        time.sleep(0.05)
    reader.join()
    out = "".join(line for _, line in lines)
    wall = time.perf_counter() - t0
    ru = os.wait4  # noqa: F841 - children are reaped by Popen; their CPU is in RUSAGE_CHILDREN
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")
    # the longest stretch without a progress line, from the first one to the end of the run
    stamps = [t for t, line in lines if line.startswith("winnow:")] + [wall]
    quiet = max((b - a for a, b in zip(stamps, stamps[1:])), default=wall)
    return {"peak_rss": peak, "cpu": sum(cpu_seen.values()), "wall": wall, "log": out, "quiet": quiet}


def bare_read(files: list[str]) -> dict:
    code = (
        "import gzip, json, sys\n"
        "n = 0\n"
        "for f in sys.argv[1:]:\n"
        "    with gzip.open(f, 'rb') as fh:\n"
        "        for line in fh:\n"
        "            json.loads(line); n += 1\n"
        "print(n)\n"
    )
    return measure([sys.executable, "-c", code, *files])


def baseline_tree(ref: str, into: str) -> str:
    """Check out ``ref`` and lay its packages out as an importable ``winnow`` namespace."""
    src = os.path.join(into, "src")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", src, ref], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    farm = os.path.join(into, "path")
    pkg = os.path.join(farm, "winnow")
    shutil.copytree(os.path.join(src, "winnow"), pkg)
    for d in PACKAGE_DIRS:
        if os.path.isdir(os.path.join(src, d)):
            os.symlink(os.path.join(src, d), os.path.join(pkg, d))
    return farm


def winnow_cmd(files_glob: str, out: str, workers: int, flags: str = "", sets: list[str] | None = None) -> list[str]:
    code = "import sys\nfrom winnow.pipeline.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return [sys.executable, *flags.split(), "-c", code, "run", "--input", files_glob, "--output", out, "--overwrite",
            "--stages", STAGES, "--workers", str(workers), *[a for kv in sets or [] for a in ("--set", kv)]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=300.0, help="corpus size in MB of uncompressed JSONL (default 300)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--baseline-ref", default=None, help="also run the code of this git commit (side by side)")
    ap.add_argument("--no-tree", action="store_true",
                    help="run only the baseline (with --baseline-ref), not this tree's code")
    ap.add_argument("--workdir", default=".bench/memory")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="also run this tree with these config overrides (repeatable), e.g. the previous "
                         "contract's stage semantics: minhash_dedup.verify=none lang.backend=lingua")
    args = ap.parse_args()
    if args.no_tree and not args.baseline_ref:
        ap.error("--no-tree needs --baseline-ref")
    if args.no_tree and args.sets:
        ap.error("--set runs this tree's code, which --no-tree leaves out")
    args.workdir = os.path.abspath(args.workdir)

    files = ensure_corpus(args.workdir, args.mb)
    nbytes = input_bytes(files)
    mb = nbytes / 1e6
    files_glob = os.path.join(os.path.dirname(files[0]), "*.jsonl.gz")
    print(f"corpus: {mb:.1f} MB of JSONL in {len(files)} files; stages {STAGES}")
    print(f"{'run':<40}{'peak RSS MB':>12}{'x input':>9}{'MB/s/core':>11}{'MB/s wall':>11}{'quiet s':>9}")

    def row(name: str, r: dict) -> None:
        print(f"{name:<40}{r['peak_rss'] / 1e6:>12,.0f}{r['peak_rss'] / nbytes:>9.2f}"
              f"{mb / max(r['cpu'], 1e-9):>11.2f}{mb / r['wall']:>11.2f}{r['quiet']:>9.1f}", flush=True)

    row("peer: bare gzip+json read", bare_read(files))
    # (name, environment, config overrides, working directory)
    variants: list[tuple[str, dict | None, list[str], str | None]] = (
        [] if args.no_tree else [("winnow (this tree)", None, [], None)])
    if args.sets:
        variants.append(("this tree, " + " ".join(args.sets), None, args.sets, None))
    tmp = None
    if args.baseline_ref:
        tmp = tempfile.mkdtemp(prefix="winnow-baseline-")
        farm = baseline_tree(args.baseline_ref, tmp)
        # -S: no site hooks, so this checkout's editable install cannot shadow the baseline's
        # packages; site-packages come after the baseline on the path instead.
        site_dirs = [d for d in sys.path if d.endswith("site-packages")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([farm, *site_dirs]), WINNOW_BENCH_PYFLAGS="-S")
        # (run from the temporary directory: the working directory comes first on the path)
        check = subprocess.run([sys.executable, "-S", "-c", "import winnow.pipeline.cli as c; print(c.__file__)"],
                               env=env, cwd=tmp, capture_output=True, text=True, check=True).stdout.strip()
        if not check.startswith(farm):
            raise SystemExit(f"the baseline run would import {check}, not the code of {args.baseline_ref}")
        variants.append((f"winnow @ {args.baseline_ref}", env, [], tmp))
    try:
        for workers in args.workers:
            for name, env, sets, cwd in variants:
                out = os.path.join(args.workdir, "out")
                r = measure(winnow_cmd(files_glob, out, workers, (env or {}).get("WINNOW_BENCH_PYFLAGS", ""), sets),
                            env=env, cwd=cwd)
                row(f"{name}, {workers} worker(s)", r)
                with open(os.path.join(out, "stats.json")) as fh:
                    st = json.load(fh)
                print(f"{'':<40}read {st['read']:,} kept {st['kept']:,} balanced={st['balanced']}")
    finally:
        if tmp:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", os.path.join(tmp, "src")],
                           check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(tmp, ignore_errors=True)
    print("\npeak RSS = the largest sum of resident memory over the run's whole process tree (sampled every 50 ms); "
          "MB/s/core = input MB per CPU second of the tree; quiet s = the longest wait for a 'winnow:' line "
          "(progress every --progress-interval, 5 s) from the first one to the end; the peer is measured in the same run.")


if __name__ == "__main__":
    main()
