"""Loader benchmark: winnow.cache side by side with MosaicML Streaming, in one run.

Usage (from the repository root)::

    .venv/bin/python bench/loader/bench_loader.py            # default, about 4 minutes on 2 cores
    .venv/bin/python bench/loader/bench_loader.py --only warm --reps 7 --json out/bench.json

The same rows (``--samples`` x 256 int32 tokens) are written once as winnow shards (Arrow IPC
+ index.json), once as one Arrow file (the bare-gather reference) and once as MDS for the
peer. Every measurement runs in a fresh subprocess (peak memory is the sum of the per-process
peaks, VmHWM, of that process and its workers).

Ratios are measured in interleaved ROUNDS (``--reps`` rounds, default 5): a round runs the
reference and every measured item back to back, each in its own fresh process (odd rounds in
reverse order), and each ratio is taken against that round's reference. On a shared, noisy
machine the load changes between processes; a ratio of two runs seconds apart is far steadier
than one of two medians taken minutes apart. The script prints the median of the per-round
ratios with their min-max, next to the median absolute figures.

* warm round: bare gather (a shuffled ``take`` of 256-row batches from one memory-mapped Arrow
  file, one process: the same copy of the same bytes that winnow's gather makes, without the
  order, the ``_index`` column, torch tensors or any worker); winnow batched in-process; winnow batched through StreamingDataLoader with
  2 workers (``transfer_steps`` default 8 steps per item, and 1 step per item; the consumer
  asserts batches of 256 either way); MosaicML Streaming (MDS, per-sample dicts collated by
  DataLoader(batch_size=256), 2 workers); the DataLoader floor (a plain torch DataLoader, 2
  workers handing over ready-made batches of the same shape, no reading: torch passes each
  tensor's shared-memory segment as a file descriptor per item); with ``--per-sample`` also winnow per-sample, 2
  workers. All shuffled epochs of the same data from the local cache, batch 256. A process runs one epoch if that lasts
  ``--min-seconds``; a faster item runs one untimed warm-up epoch and then epochs until the timed
  ones last ``--min-seconds``.
* cold round: a plain sequential s3fs read of the same shard bytes from a moto S3 server on
  loopback, then one winnow epoch into an empty cache in-process and with 2 workers.
* latency (one process each): random-access ``ds[i]`` p50/p99 per tier, and MDS warm.

``--only warm|cold|latency`` runs one part. The peer is installed by this script with
``pip --no-deps`` into ``.bench/peer`` from ``requirements-peer.txt`` (never into ``.venv``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

from procstat import proc_cpu

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PEER = os.path.join(ROOT, ".bench", "peer")
TOKENS = 256


# --- helpers -------------------------------------------------------------------------
def _vmhwm(pid: int) -> int:
    """Peak resident set (VmHWM) of one live process in bytes, 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


class PeakRSS:
    """Peak memory of this process and its children: the largest sum, over the processes alive at
    one moment, of each process's own peak resident set (VmHWM).

    Every 100 ms a thread reads ``/proc/<pid>/status`` of this process and of its live children
    (a few small reads, no scan of the process table). Children are found in multiprocessing's
    registry of started processes (DataLoader workers), plus a psutil scan of the process table
    once a second for anything started otherwise. VmHWM is kept by the kernel, so a spike between
    two reads still counts; only a child's growth in its last 100 ms can be missed. The figure is
    an upper bound of the tree's simultaneous peak (like summed RSS, it counts shared pages once
    per process). ``ru_maxrss`` is not used: for a child exec'd from a big parent it carries the
    parent's pre-exec size.
    """

    def __init__(self, interval: float = 0.1, scan_every: int = 10) -> None:
        self.interval, self.scan_every = interval, scan_every
        self.pid, self.peak = os.getpid(), 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._found: set[int] = set()

    def _children(self, scan: bool) -> set[int]:
        import multiprocessing.process as mpp

        pids = set()
        try:
            pids.update(p.pid for p in list(mpp._children)  # read only: never polls or reaps
                        if p.pid and getattr(p._popen, "returncode", 0) is None)
        except Exception:
            pass
        if scan:
            try:
                import psutil

                self._found = {c.pid for c in psutil.Process(self.pid).children(recursive=True)}
            except Exception:
                pass
        return pids | self._found

    def _sample(self, scan: bool) -> None:
        self.peak = max(self.peak, sum(_vmhwm(pid) for pid in {self.pid} | self._children(scan)))

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            self._sample(tick % self.scan_every == 0)
            tick += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self._sample(False)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def ensure_peer() -> bool:
    """Install MosaicML Streaming (no deps) into .bench/peer if it is not there; True if usable."""
    if not os.path.isdir(os.path.join(PEER, "streaming")):
        print(f"installing the peer into {PEER} (pip --no-deps) ...", flush=True)
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
               "--target", PEER, "-r", os.path.join(HERE, "requirements-peer.txt")]
        if subprocess.run(cmd).returncode != 0:
            return False
    return subprocess.run([sys.executable, "-c", "import streaming"], env=peer_env(),
                          capture_output=True).returncode == 0


def peer_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(HERE, "peer_shim"), PEER, env.get("PYTHONPATH", "")])
    return env


def sub(kind: str, cfg: dict, peer: bool = False, timeout: float = 900) -> dict:
    """Run one measurement in a fresh interpreter and return its JSON result."""
    out = subprocess.run([sys.executable, __file__, "--run", kind, json.dumps(cfg)], capture_output=True,
                         text=True, env=peer_env() if peer else None, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- measurements (each in its own process) ------------------------------------------
def _tree_cpu() -> float:
    """CPU seconds of this process, its reaped children and its live multiprocessing children
    (DataLoader workers): what the measured item cost the machine, whatever else ran beside it."""
    import multiprocessing.process as mpp
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    live = sum(proc_cpu(p.pid) for p in list(mpp._children)  # read only: never polls or reaps
               if p.pid and getattr(p._popen, "returncode", 0) is None)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime + live


def _epochs(make_iter, count, min_s: float, max_epochs: int = 500) -> dict:
    """Shuffled epochs (epoch r from ``make_iter(r)``) in one process.

    One epoch is the measurement if it lasts ``min_s``; otherwise it was an untimed warm-up, and
    epochs follow until the timed ones last ``min_s`` together. ``rate`` is their samples over
    their seconds; ``cpu_rate`` their samples over the CPU seconds of the process tree (main
    process and workers) in the same epochs, a figure the load of other processes on the machine
    barely moves; ``ttfb`` the median time to the first batch of the timed epochs.
    """
    runs = []  # (samples, seconds, ttfb, tree CPU seconds at the epoch's start) per epoch
    with PeakRSS() as mem:
        for r in range(max_epochs):
            c0 = _tree_cpu()
            t0 = time.perf_counter()
            n, first = 0, None
            for b in make_iter(r):
                if first is None:
                    first = time.perf_counter() - t0
                n += count(b)
            runs.append((n, time.perf_counter() - t0, first, c0))
            if runs[0][1] >= min_s or sum(x[1] for x in runs[1:]) >= min_s:
                break
        cpu_end = _tree_cpu()
    timed = runs if runs[0][1] >= min_s else runs[1:]
    samples = sum(x[0] for x in timed)
    return {"rate": samples / sum(x[1] for x in timed), "cpu_rate": samples / max(cpu_end - timed[0][3], 1e-9),
            "ttfb": statistics.median(x[2] for x in timed), "peak_rss": mem.peak,
            "samples": timed[0][0], "epochs": len(timed), "warmup": len(runs) - len(timed)}


def run_ours(cfg: dict) -> dict:
    from winnow.cache import StreamingDataLoader, StreamingDataset

    ds = StreamingDataset(remote=cfg["remote"], local=cfg["local"], cache_limit="20GB", memory_limit="8GB",
                          columns=["tokens"], shuffle=True, seed=1, batch_size=cfg["batch"],
                          batched=cfg["batched"], storage_options=cfg.get("storage_options"),
                          fetch_workers=cfg.get("fetch_workers", 4), transfer_steps=cfg.get("transfer_steps"))
    # Persistent workers (the usual training setup; set_epoch reaches them through the loader).
    loader = StreamingDataLoader(ds, num_workers=cfg["workers"], persistent_workers=cfg["workers"] > 0)
    B = cfg["batch"]

    def it(r: int):
        ds.set_epoch(r + 1)
        return loader

    def count(b) -> int:
        n = len(b["_index"])
        assert n == B or not cfg["batched"], f"the consumer got a batch of {n}, not {B}"
        return n

    res = _epochs(it, count, cfg["min_s"])
    res["metrics"] = ds.metrics()
    return res


def run_mds(cfg: dict) -> dict:
    import torch
    from streaming import StreamingDataset as MDSDataset

    # One dataset and persistent workers, as MosaicML recommends: each iteration is its next epoch.
    ds = MDSDataset(local=cfg["local"], remote=cfg.get("remote"), shuffle=True, shuffle_seed=1,
                    batch_size=cfg["batch"], predownload=cfg.get("predownload"))
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg["batch"], num_workers=cfg["workers"],
                                         persistent_workers=cfg["workers"] > 0)

    def it(r: int):
        return loader

    def count(b) -> int:
        n = len(b["tokens"])
        assert n == cfg["batch"], f"the consumer got a batch of {n}, not {cfg['batch']}"
        return n

    return _epochs(it, count, cfg["min_s"])


def run_bare(cfg: dict) -> dict:
    import numpy as np
    import pyarrow as pa

    col = pa.ipc.open_file(pa.memory_map(cfg["path"])).read_all().column("tokens").chunk(0)
    vals = col.values.to_numpy().reshape(-1, TOKENS)
    B = cfg["batch"]

    def it(r: int):
        perm = np.random.default_rng(r).permutation(len(vals))
        for a in range(0, len(perm), B):
            yield vals[perm[a:a + B]]

    return _epochs(it, len, cfg["min_s"])


def run_latency(cfg: dict) -> dict:
    """Random ``ds[i]`` per tier, each access with its wall time, this thread's CPU time, its
    involuntary context switches (the kernel took the core away: ``getrusage(RUSAGE_THREAD)``),
    voluntary switches (it blocked: I/O, a lock), minor page faults and time in Python's garbage
    collector, so a tail can be told apart: work of ours (CPU time, faults, GC, blocking) or
    waiting for a core (involuntary switches, wall far above CPU)."""
    import gc
    import resource

    import numpy as np

    from winnow.cache import StreamingDataset

    ds = StreamingDataset(remote=cfg["remote"], local=cfg["local"], cache_limit="20GB", memory_limit="8GB",
                          columns=["tokens"], storage_options=cfg.get("storage_options"))
    rng = np.random.default_rng(0)
    total = ds.manifest.total_rows
    for s in range(len(ds.manifest.shards)):  # map everything: L1
        ds[int(ds.order(0).offsets[s])]
    gc_s = [0.0, 0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_s[1] = time.perf_counter()
        else:
            gc_s[0] += time.perf_counter() - gc_s[1]

    gc.callbacks.append(on_gc)
    perf, cpu, ru, THREAD = time.perf_counter, time.thread_time, resource.getrusage, resource.RUSAGE_THREAD

    def measure(ids: list[int], before) -> dict:
        out: dict[str, list[float]] = {"wall": [], "cpu": [], "ivcsw": [], "vcsw": [], "minflt": [], "gc": []}
        for i in ids:
            before()
            r0 = ru(THREAD)
            g0 = gc_s[0]
            c0 = cpu()
            t0 = perf()
            ds[i]
            t1 = perf()
            c1 = cpu()
            r1 = ru(THREAD)
            out["wall"].append(t1 - t0)
            out["cpu"].append(c1 - c0)
            out["ivcsw"].append(r1.ru_nivcsw - r0.ru_nivcsw)
            out["vcsw"].append(r1.ru_nvcsw - r0.ru_nvcsw)
            out["minflt"].append(r1.ru_minflt - r0.ru_minflt)
            out["gc"].append(gc_s[0] - g0)
        return out

    l1 = measure(rng.integers(0, total, cfg["n"]).tolist(), lambda: None)
    tier = ds._runtime().tier
    l2 = measure(rng.integers(0, total, max(cfg["n"] // 2, 50)).tolist(), tier.drop)  # unmapped, on local disk
    return {"l1": l1, "l2": l2}


def run_latency_mds(cfg: dict) -> dict:
    import numpy as np
    from streaming import StreamingDataset as MDSDataset

    ds = MDSDataset(local=cfg["local"], shuffle=False, batch_size=1)
    rng = np.random.default_rng(0)
    for i in rng.integers(0, ds.num_samples, 200).tolist():
        ds[i]
    lat = []
    for i in rng.integers(0, ds.num_samples, cfg["n"]).tolist():
        t0 = time.perf_counter()
        ds[i]
        lat.append(time.perf_counter() - t0)
    return {"warm": lat}


def run_s3fs(cfg: dict) -> dict:
    """One plain sequential read of every shard object (16 MB reads), bytes/s."""
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True, **cfg["storage_options"])
    t0 = time.perf_counter()
    n = 0
    for p in cfg["paths"]:
        with fs.open(p, "rb", block_size=16 << 20) as f:
            while True:
                chunk = f.read(16 << 20)
                if not chunk:
                    break
                n += len(chunk)
    return {"byte_rate": n / (time.perf_counter() - t0), "bytes": n}


def run_cold(cfg: dict) -> dict:
    """One winnow epoch from S3 into an empty cache (emptied here, before the clock starts)."""
    shutil.rmtree(cfg["local"], ignore_errors=True)
    res = run_ours({**cfg, "min_s": 0.0})  # exactly one epoch
    res["byte_rate"] = res["rate"] * cfg["bytes_per_sample"]
    return res


def run_ipc_floor(cfg: dict) -> dict:
    """DataLoader's own cost: 2 workers yielding ready-made random batches of the same shape."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, IterableDataset, get_worker_info

    B, steps = cfg["batch"], cfg["samples"] // cfg["batch"]
    pool = np.random.default_rng(0).integers(0, 50000, (4096, TOKENS), dtype=np.int32)

    class Ready(IterableDataset):
        def __iter__(self):
            wi = get_worker_info()
            w, n = (wi.id, wi.num_workers) if wi else (0, 1)
            rng = np.random.default_rng(w)
            for _ in range(w, steps, n):
                idx = rng.integers(0, len(pool), B)
                yield {"tokens": torch.from_numpy(pool[idx]), "_index": torch.from_numpy(idx)}

    return _epochs(lambda r: DataLoader(Ready(), batch_size=None, num_workers=2), lambda b: len(b["_index"]),
                   cfg["min_s"])


RUNS = {"ipc_floor": run_ipc_floor, "ours": run_ours, "mds": run_mds, "bare": run_bare, "latency": run_latency,
        "latency_mds": run_latency_mds, "s3fs": run_s3fs, "cold": run_cold}


# --- data ----------------------------------------------------------------------------
def prepare(work: str, samples: int, rows_per_shard: int, peer: bool) -> dict:
    import pyarrow as pa

    from winnow.cache.synth import write_token_shards

    work = os.path.join(work, f"data-{samples}-{rows_per_shard}")
    arrow = os.path.join(work, "arrow")
    if not os.path.exists(os.path.join(arrow, "index.json")):
        write_token_shards(arrow, num_samples=samples, rows_per_shard=rows_per_shard, lengths=(TOKENS, TOKENS))
    one = os.path.join(work, "one.arrow")
    mds = os.path.join(work, "mds")
    manifest = json.load(open(os.path.join(arrow, "index.json")))
    if not os.path.exists(one) or (peer and not os.path.exists(os.path.join(mds, "index.json"))):
        tables = [pa.ipc.open_file(pa.memory_map(os.path.join(arrow, s["path"]))).read_all().select(["tokens"])
                  for s in manifest["shards"]]
        table = pa.concat_tables(tables).combine_chunks()
        with pa.OSFile(one, "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)
        if peer:
            code = ("import sys, numpy as np, pyarrow as pa\n"
                    "from streaming import MDSWriter\n"
                    "t = pa.ipc.open_file(pa.memory_map(sys.argv[1])).read_all()\n"
                    f"v = t.column('tokens').chunk(0).values.to_numpy().reshape(-1, {TOKENS})\n"
                    f"with MDSWriter(out=sys.argv[2], columns={{'tokens': 'ndarray:int32:{TOKENS}'}}, "
                    f"size_limit={rows_per_shard * (TOKENS * 4 + 64)}) as w:\n"
                    "    for row in v: w.write({'tokens': row})\n")
            subprocess.run([sys.executable, "-c", code, one, mds], check=True, env=peer_env())
    return {"arrow": arrow, "one": one, "mds": mds, "manifest": manifest, "work": work}


def start_s3(arrow: str) -> tuple[object, dict, list[str]]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="bench")
    paths = []
    for dirpath, _, files in os.walk(arrow):
        for f in files:
            p = os.path.join(dirpath, f)
            key = "arrow/" + os.path.relpath(p, arrow)
            s3.upload_file(p, "bench", key)
            if key.endswith(".arrow"):
                paths.append(f"bench/{key}")
    opts = {"key": os.environ["AWS_ACCESS_KEY_ID"], "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    return server, opts, sorted(paths)


# --- report --------------------------------------------------------------------------
def rounds(items: list[tuple[str, object]], reps: int, label: str) -> dict[str, list[dict]]:
    """``reps`` rounds of ``items`` ((key, thunk running one fresh process)), back to back, odd
    rounds in reverse order; returns key -> the results of each round."""
    out: dict[str, list[dict]] = {k: [] for k, _ in items}
    for r in range(reps):
        t0 = time.time()
        for key, run in (items if r % 2 == 0 else items[::-1]):
            out[key].append(run())
        print(f"  {label} round {r + 1}/{reps} done in {time.time() - t0:.0f}s", flush=True)
    return out


def per_round(R: dict[str, list[dict]], num: str, den: str, field: str = "rate") -> list[float]:
    return [a[field] / b[field] for a, b in zip(R[num], R[den])]


def spread(xs: list[float], fmt: str) -> str:
    return f"{statistics.median(xs):{fmt}}  [{min(xs):{fmt}}-{max(xs):{fmt}}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=131072)
    ap.add_argument("--rows-per-shard", type=int, default=32768)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5, help="rounds (warm and cold each; default 5)")
    ap.add_argument("--min-seconds", type=float, default=0.6,
                    help="timed seconds per warm process: a shorter first epoch becomes a warm-up")
    ap.add_argument("--per-sample", action="store_true",
                    help="add winnow per-sample with 2 workers to the warm rounds (about 5 s more per round)")
    ap.add_argument("--only", choices=("warm", "cold", "latency"), default=None, help="run one part")
    ap.add_argument("--work", default=os.path.join(ROOT, ".bench", "loader"))
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--busy", type=int, default=2,
                    help="processes spinning on the CPU during the latency part (default 2: both cores busy)")
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--run", nargs=2, metavar=("KIND", "CFG"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.run:
        print(json.dumps(RUNS[a.run[0]](json.loads(a.run[1]))))
        return
    parts = {a.only} if a.only else {"warm", "latency"} | (set() if a.skip_cold else {"cold"})

    os.makedirs(a.work, exist_ok=True)
    peer = not a.skip_peer and parts != {"cold"} and ensure_peer()
    if not a.skip_peer and parts != {"cold"} and not peer:
        print("MosaicML Streaming could not be imported; peer columns are skipped")
    t0 = time.time()
    data = prepare(a.work, a.samples, a.rows_per_shard, peer)
    total_bytes = sum(s["bytes"] for s in data["manifest"]["shards"])
    B = a.batch
    print(f"data: {a.samples} samples x {TOKENS} int32 tokens, {len(data['manifest']['shards'])} shards, "
          f"{total_bytes / 1e6:.0f} MB (prepared in {time.time() - t0:.0f}s); batch {B}, shuffle on; "
          + (f"{a.reps} interleaved rounds per part, each item a fresh process" if parts & {"warm", "cold"}
             else "one process each"), flush=True)
    local = os.path.join(data["work"], "cache-warm")
    base = {"remote": data["arrow"], "local": local, "batch": B, "min_s": a.min_seconds}
    W: dict[str, list[dict]] = {}
    C: dict[str, list[dict]] = {}
    L: dict[str, dict] = {}
    if parts & {"warm", "latency"}:
        sub("ours", {**base, "min_s": 0.0, "workers": 0, "batched": True})  # fill the L2 cache
    if "warm" in parts:
        items = [("bare", lambda: sub("bare", {"path": data["one"], "batch": B, "min_s": a.min_seconds})),
                 ("ours_w0_batched", lambda: sub("ours", {**base, "workers": 0, "batched": True})),
                 ("ours_w2_batched", lambda: sub("ours", {**base, "workers": 2, "batched": True})),  # 8 steps/item
                 ("ours_w2_step1", lambda: sub("ours", {**base, "workers": 2, "batched": True, "transfer_steps": 1})),
                 ("ipc_floor", lambda: sub("ipc_floor", {"samples": a.samples, "batch": B, "min_s": a.min_seconds}))]
        if a.per_sample:
            items.append(("ours_w2_samples", lambda: sub("ours", {**base, "workers": 2, "batched": False})))
        if peer:
            items.insert(4, ("mds_w2", lambda: sub("mds", {"local": data["mds"], "batch": B, "min_s": a.min_seconds,
                                                            "workers": 2}, peer=True)))
        W = rounds(items, a.reps, "warm")
    if "latency" in parts:
        # --busy N: N spinning processes keep the cores busy while the latency is measured
        spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(a.busy)]
        try:
            L["latency"] = sub("latency", {"remote": data["arrow"], "local": local, "n": 5000})
        finally:
            for p in spin:
                p.kill()
                p.wait()
        if peer:
            L["latency_mds"] = sub("latency_mds", {"local": data["mds"], "n": 5000}, peer=True)
    if "cold" in parts:
        server, opts, paths = start_s3(data["arrow"])
        try:
            url = "s3://bench/arrow"
            sub("s3fs", {"storage_options": opts, "paths": paths})  # moto serves first reads slower
            cold = {"remote": url, "local": os.path.join(data["work"], "cache-cold"), "batch": B, "batched": True,
                    "storage_options": opts, "bytes_per_sample": total_bytes / a.samples, "fetch_workers": 4}
            C = rounds([("s3fs", lambda: sub("s3fs", {"storage_options": opts, "paths": paths})),
                        ("cold_w0", lambda: sub("cold", {**cold, "workers": 0})),
                        ("cold_w2", lambda: sub("cold", {**cold, "workers": 2}))], a.reps, "cold")
        finally:
            server.stop()

    n = a.reps
    if W:
        rows = [("winnow batched, 2 workers (8 steps/item)", "ours_w2_batched"),
                ("winnow batched, 2 workers, 1 step/item", "ours_w2_step1"),
                ("winnow batched, in-process", "ours_w0_batched"),
                ("winnow per-sample, 2 workers", "ours_w2_samples"), ("MosaicML Streaming (MDS), 2 workers", "mds_w2"),
                ("bare mmap Arrow gather, 1 process", "bare"),
                ("DataLoader floor: 2 workers, no reading", "ipc_floor")]
        print(f"\nwarm, shuffled, from the local cache (samples/s, median of {n} rounds [min-max]; time to first "
              "batch; peak memory of the tree, max of rounds)")
        for label, key in rows:
            if key in W:
                rs = W[key]
                print(f"  {label:<40} {spread([r['rate'] for r in rs], '>10,.0f')}   ttfb "
                      f"{statistics.median(r['ttfb'] for r in rs) * 1e3:6.1f} ms   "
                      f"peak {max(r['peak_rss'] for r in rs) / 1e6:5.0f} MB")
        print(f"\nratios, each taken within one round against that round's reference (same data, shuffle, "
              f"batch {B}); median of {n} rounds [min-max]")
        lines = []
        if "mds_w2" in W:
            lines += [("winnow batched 2w / MDS 2w", "ours_w2_batched", "mds_w2", ">7.1f", "x", "(target >= 10x)"),
                      ("winnow 2w 1 step/item / MDS 2w", "ours_w2_step1", "mds_w2", ">7.1f", "x", "")]
            if "ours_w2_samples" in W:
                lines.append(("winnow per-sample 2w / MDS 2w", "ours_w2_samples", "mds_w2", ">7.1f", "x", ""))
        lines += [("winnow batched 2w / bare gather", "ours_w2_batched", "bare", ">7.2f", "", "(target >= 0.5)"),
                  ("winnow in-process / bare gather", "ours_w0_batched", "bare", ">7.2f", "", "(target >= 0.5)"),
                  ("winnow 2w 1 step/item / bare", "ours_w2_step1", "bare", ">7.2f", "", ""),
                  ("winnow 2w 1 step/item / DataLoader floor", "ours_w2_step1", "ipc_floor", ">7.2f", "",
                   "(the floor passes each tensor's segment as a descriptor per item; winnow maps its recycled "
                   "segments once)"),
                  ("winnow batched 2w / DataLoader floor", "ours_w2_batched", "ipc_floor", ">7.2f", "",
                   "(and several steps per item amortise the DataLoader's own per-item cost)")]
        for label, num, den, fmt, unit, note in lines:
            xs = per_round(W, num, den)
            p = fmt[fmt.index("."):]
            lo, hi = f"{min(xs):{p}}{unit}", f"{max(xs):{p}}{unit}"
            print(f"  {label:<42} {statistics.median(xs):{fmt}}{unit:1}  [{lo}-{hi}]   {note}".rstrip())
        print(f"\nsamples per CPU-second of the whole process tree (main process and workers, same epochs; what an "
              f"item costs whatever else runs on the machine), median of {n} rounds [min-max]")
        for label, key in rows:
            if key in W:
                print(f"  {label:<40} {spread([r['cpu_rate'] for r in W[key]], '>10,.0f')}")
        for label, num in (("winnow batched 2w / bare gather, per CPU-second", "ours_w2_batched"),
                           ("winnow in-process / bare gather, per CPU-second", "ours_w0_batched")):
            xs = per_round(W, num, "bare", "cpu_rate")
            print(f"  {label:<50} {spread(xs, '.2f')}")
    if C:
        print(f"\ncold epoch from loopback S3 (moto) into an empty cache (median of {n} rounds [min-max]; ratio "
              "per round against that round's plain sequential s3fs read of the same shards)")
        print(f"  plain s3fs sequential read   {spread([r['byte_rate'] / 1e6 for r in C['s3fs']], '>5.0f')} MB/s")
        for key, label in (("cold_w0", "in-process"), ("cold_w2", "2 workers")):
            rs = C[key]
            xs = per_round(C, key, "s3fs", "byte_rate")
            print(f"  winnow {label:<21} {spread([r['byte_rate'] / 1e6 for r in rs], '>5.0f')} MB/s "
                  f"({statistics.median(r['rate'] for r in rs):,.0f} samples/s, ttfb "
                  f"{statistics.median(r['ttfb'] for r in rs) * 1e3:.0f} ms, peak "
                  f"{max(r['peak_rss'] for r in rs) / 1e6:.0f} MB)")
            print(f"    ratio to s3fs {spread(xs, '.2f')}   (target >= 0.8)")
    if L:
        lat = L["latency"]
        print(f"\nrandom-access latency of one sample (ds[i]), one process, {a.busy} spinning processes beside it")
        for tier, key, target in (("L1 (mapped)", "l1", 0.1), ("L2 (local file, unmapped)", "l2", 2.0)):
            d = lat[key]
            xs = d["wall"]
            print(f"  winnow {tier:<28} p50 {pct(xs, .5) * 1e3:7.3f} ms   p99 {pct(xs, .99) * 1e3:7.3f} ms"
                  f"   (target p99 < {target} ms, n={len(xs)})")
            quiet = [w for w, c in zip(xs, d["ivcsw"]) if c == 0]
            slow = [j for j, w in enumerate(xs) if w > target / 1e3]
            print(f"    where the time goes: CPU time p50 {pct(d['cpu'], .5) * 1e3:.3f} / p99 {pct(d['cpu'], .99) * 1e3:.3f}"
                  f" / max {max(d['cpu']) * 1e3:.3f} ms; minor faults p99 {pct(d['minflt'], .99):.0f}; GC max "
                  f"{max(d['gc']) * 1e3:.3f} ms; {sum(c > 0 for c in d['ivcsw'])} of {len(xs)} accesses lost the core "
                  f"(involuntary switch); p99 of the {len(quiet)} that did not: "
                  f"{pct(quiet, .99) * 1e3 if quiet else float('nan'):.3f} ms")
            if slow:
                print(f"    {len(slow)} accesses over {target} ms: {sum(d['ivcsw'][j] > 0 for j in slow)} of them lost the "
                      f"core, {sum(d['vcsw'][j] > 0 for j in slow)} blocked (voluntary switch: I/O, a lock, a thread hop); "
                      f"their CPU time max {max(d['cpu'][j] for j in slow) * 1e3:.3f} ms, wall - CPU median "
                      f"{statistics.median(xs[j] - d['cpu'][j] for j in slow) * 1e3:.3f} ms")
        if "latency_mds" in L:
            xs = L["latency_mds"]["warm"]
            print(f"  MDS warm (local, ds[i])              p50 {pct(xs, .5) * 1e3:7.3f} ms   "
                  f"p99 {pct(xs, .99) * 1e3:7.3f} ms")
    if W:
        m = W["ours_w2_batched"][-1]["metrics"]
        print(f"\nwinnow metrics (last 2-worker warm run): L1 hit rate {m['hit_rate_l1']:.3f}, "
              f"L2 {m['hit_rate_l2']:.3f}, L3 {m['miss_rate_l3']:.3f}, stall {m['stall_s']:.2f}s")
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        ratios = {}
        if W:
            for num, den in (("ours_w2_batched", "mds_w2"), ("ours_w2_step1", "mds_w2"), ("ours_w2_samples", "mds_w2"),
                             ("ours_w2_batched", "bare"), ("ours_w0_batched", "bare"), ("ours_w2_step1", "bare"),
                             ("ours_w2_step1", "ipc_floor"), ("ours_w2_batched", "ipc_floor")):
                if num in W and den in W:
                    ratios[f"{num}/{den}"] = per_round(W, num, den)
        if C:
            for num in ("cold_w0", "cold_w2"):
                ratios[f"{num}/s3fs"] = per_round(C, num, "s3fs", "byte_rate")
        with open(a.json, "w") as f:
            json.dump({"ratios_per_round": ratios, "warm_rounds": W, "cold_rounds": C,
                       "latency_ms": {f"{k}.{t}": {"p50": pct(xs, .5) * 1e3, "p99": pct(xs, .99) * 1e3, "n": len(xs)}
                                      for k, v in L.items() for t, xs in
                                      ((t, x["wall"] if isinstance(x, dict) else x) for t, x in v.items())}},
                      f, indent=1, default=str)
    print(f"\ntotal {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
