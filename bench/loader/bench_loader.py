"""Loader benchmark: winnow.cache side by side with MosaicML Streaming, in one run.

Usage (from the repository root)::

    .venv/bin/python bench/loader/bench_loader.py            # default, a few minutes on 2 cores
    .venv/bin/python bench/loader/bench_loader.py --samples 262144 --reps 5 --json out/bench.json

The same rows (``--samples`` x 256 int32 tokens) are written once as winnow shards (Arrow IPC
+ index.json), once as one Arrow file (the bare-gather reference) and once as MDS for the
peer. Every measurement runs in a fresh subprocess (peak memory is that process tree's RSS)
and is repeated ``--reps`` times; the medians are printed with ratios:

* warm: shuffled epoch from the local cache, batch 256, DataLoader with 2 workers, for
  winnow (batched path through StreamingDataLoader: workers ship ``transfer_steps`` steps per
  item, default 8, and the consumer still receives single batches of 256; also shown with one
  step per item) and MDS (per-sample dicts collated by DataLoader(batch_size=256)), plus winnow
  per-sample and in-process (0 workers);
* bare: a shuffled ``take`` of 256-row batches from one memory-mapped Arrow file, one process;
* cold: an epoch from a moto S3 server on loopback into an empty cache, against a plain
  sequential s3fs read of the same shard bytes;
* time to first batch, and random-access latency p50/p99 per tier.

The peer is installed by this script with ``pip --no-deps`` into ``.bench/peer`` from
``requirements-peer.txt`` (never into ``.venv``).
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PEER = os.path.join(ROOT, ".bench", "peer")
TOKENS = 256


# --- helpers -------------------------------------------------------------------------
class PeakRSS:
    """Samples the RSS of this process and its children every 20 ms."""

    def __init__(self) -> None:
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(), 0, False
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop:
            try:
                total = self.proc.memory_info().rss + sum(
                    c.memory_info().rss for c in self.proc.children(recursive=True))
                self.peak = max(self.peak, total)
            except Exception:
                pass
            time.sleep(0.02)

    def __enter__(self) -> "PeakRSS":
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._t.join()


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
def _epochs(make_iter, reps: int, count) -> dict:
    rates, ttfb = [], []
    with PeakRSS() as mem:
        for r in range(reps):
            t0 = time.perf_counter()
            n, first = 0, None
            for b in make_iter(r):
                if first is None:
                    first = time.perf_counter() - t0
                n += count(b)
            rates.append(n / (time.perf_counter() - t0))
            ttfb.append(first)
    return {"rates": rates, "ttfb": ttfb, "peak_rss": mem.peak, "samples": n}


def run_ours(cfg: dict) -> dict:
    from winnow.cache import StreamingDataLoader, StreamingDataset

    ds = StreamingDataset(remote=cfg["remote"], local=cfg["local"], cache_limit="20GB", memory_limit="8GB",
                          columns=["tokens"], shuffle=True, seed=1, batch_size=cfg["batch"],
                          batched=cfg["batched"], storage_options=cfg.get("storage_options"),
                          fetch_workers=cfg.get("fetch_workers", 4), transfer_steps=cfg.get("transfer_steps"))
    loader = StreamingDataLoader(ds, num_workers=cfg["workers"])
    B = cfg["batch"]

    def it(r: int):
        ds.set_epoch(r + 1)
        return loader

    def count(b) -> int:
        n = len(b["_index"])
        assert n == B or not cfg["batched"], f"the consumer got a batch of {n}, not {B}"
        return n

    res = _epochs(it, cfg["reps"], count)
    res["metrics"] = ds.metrics()
    return res


def run_mds(cfg: dict) -> dict:
    import torch
    from streaming import StreamingDataset as MDSDataset

    def it(r: int):
        ds = MDSDataset(local=cfg["local"], remote=cfg.get("remote"), shuffle=True, shuffle_seed=r + 1,
                        batch_size=cfg["batch"], predownload=cfg.get("predownload"))
        return torch.utils.data.DataLoader(ds, batch_size=cfg["batch"], num_workers=cfg["workers"])

    return _epochs(it, cfg["reps"], lambda b: len(b["tokens"]))


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

    return _epochs(it, cfg["reps"], len)


def run_latency(cfg: dict) -> dict:
    import numpy as np

    from winnow.cache import StreamingDataset

    ds = StreamingDataset(remote=cfg["remote"], local=cfg["local"], cache_limit="20GB", memory_limit="8GB",
                          columns=["tokens"], storage_options=cfg.get("storage_options"))
    rng = np.random.default_rng(0)
    total = ds.manifest.total_rows
    for s in range(len(ds.manifest.shards)):  # map everything: L1
        ds[int(ds.order(0).offsets[s])]
    l1 = []
    for i in rng.integers(0, total, cfg["n"]).tolist():
        t0 = time.perf_counter()
        ds[i]
        l1.append(time.perf_counter() - t0)
    l2 = []
    tier = ds._runtime().tier
    for i in rng.integers(0, total, max(cfg["n"] // 10, 50)).tolist():
        tier.drop()  # unmapped, but on the local disk: L2
        t0 = time.perf_counter()
        ds[i]
        l2.append(time.perf_counter() - t0)
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
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True, **cfg["storage_options"])
    paths = cfg["paths"]
    rates = []
    for _ in range(cfg["reps"]):
        t0 = time.perf_counter()
        n = 0
        for p in paths:
            with fs.open(p, "rb", block_size=16 << 20) as f:
                while True:
                    chunk = f.read(16 << 20)
                    if not chunk:
                        break
                    n += len(chunk)
        rates.append(n / (time.perf_counter() - t0))
    return {"rates": rates, "bytes": n}


def run_cold(cfg: dict) -> dict:
    rates, ttfb, byte_rates, peaks = [], [], [], []
    for r in range(cfg["reps"]):
        shutil.rmtree(cfg["local"], ignore_errors=True)
        one = run_ours({**cfg, "reps": 1})
        rates += one["rates"]
        ttfb += one["ttfb"]
        peaks.append(one["peak_rss"])
        byte_rates.append(one["rates"][0] * cfg["bytes_per_sample"])
    return {"rates": rates, "ttfb": ttfb, "byte_rates": byte_rates, "peak_rss": max(peaks)}


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

    return _epochs(lambda r: DataLoader(Ready(), batch_size=None, num_workers=2), cfg["reps"],
                   lambda b: len(b["_index"]))


RUNS = {"ipc_floor": run_ipc_floor, "ours": run_ours, "mds": run_mds, "bare": run_bare, "latency": run_latency,
        "latency_mds": run_latency_mds, "s3fs": run_s3fs, "cold": run_cold}


# --- data ----------------------------------------------------------------------------
def prepare(work: str, samples: int, rows_per_shard: int, peer: bool) -> dict:
    import numpy as np
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
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=131072)
    ap.add_argument("--rows-per-shard", type=int, default=32768)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--work", default=os.path.join(ROOT, ".bench", "loader"))
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--run", nargs=2, metavar=("KIND", "CFG"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.run:
        print(json.dumps(RUNS[a.run[0]](json.loads(a.run[1]))))
        return

    os.makedirs(a.work, exist_ok=True)
    peer = not a.skip_peer and ensure_peer()
    if not a.skip_peer and not peer:
        print("MosaicML Streaming could not be imported; peer columns are skipped")
    t0 = time.time()
    data = prepare(a.work, a.samples, a.rows_per_shard, peer)
    total_bytes = sum(s["bytes"] for s in data["manifest"]["shards"])
    print(f"data: {a.samples} samples x {TOKENS} int32 tokens, {len(data['manifest']['shards'])} shards, "
          f"{total_bytes / 1e6:.0f} MB (prepared in {time.time() - t0:.0f}s); batch {a.batch}, shuffle on, "
          f"{a.reps} reps, medians")
    local = os.path.join(data["work"], "cache-warm")
    base = {"remote": data["arrow"], "local": local, "batch": a.batch, "reps": a.reps}
    R: dict[str, dict] = {}
    sub("ours", {**base, "reps": 1, "workers": 0, "batched": True})  # fill the L2 cache
    R["ours_w2_batched"] = sub("ours", {**base, "workers": 2, "batched": True})  # transfer_steps default (8)
    R["ours_w2_step1"] = sub("ours", {**base, "workers": 2, "batched": True, "transfer_steps": 1})
    R["ours_w0_batched"] = sub("ours", {**base, "workers": 0, "batched": True})
    R["ours_w2_samples"] = sub("ours", {**base, "workers": 2, "batched": False})
    R["bare"] = sub("bare", {"path": data["one"], "batch": a.batch, "reps": a.reps})
    R["ipc_floor"] = sub("ipc_floor", {"samples": a.samples, "batch": a.batch, "reps": a.reps})
    if peer:
        R["mds_w2"] = sub("mds", {"local": data["mds"], "batch": a.batch, "reps": a.reps, "workers": 2}, peer=True)
    R["latency"] = sub("latency", {"remote": data["arrow"], "local": local, "n": 5000})
    if peer:
        R["latency_mds"] = sub("latency_mds", {"local": data["mds"], "n": 5000}, peer=True)
    if not a.skip_cold:
        server, opts, paths = start_s3(data["arrow"])
        try:
            url = "s3://bench/arrow"
            sub("s3fs", {"storage_options": opts, "paths": paths, "reps": 1})  # moto serves first reads slower
            R["s3fs"] = sub("s3fs", {"storage_options": opts, "paths": paths, "reps": a.reps})
            for key, workers in (("cold_w0", 0), ("cold", 2)):
                R[key] = sub("cold", {"remote": url, "local": os.path.join(data["work"], "cache-cold"), "batch": a.batch,
                                      "reps": a.reps, "workers": workers, "batched": True, "storage_options": opts,
                                      "bytes_per_sample": total_bytes / a.samples, "fetch_workers": 4})
        finally:
            server.stop()

    med = {k: statistics.median(v["rates"]) for k, v in R.items() if "rates" in v}
    rows = [("winnow batched, 2 workers (8 steps/item)", "ours_w2_batched"),
            ("winnow batched, 2 workers, 1 step/item", "ours_w2_step1"),
            ("winnow batched, in-process", "ours_w0_batched"),
            ("winnow per-sample, 2 workers", "ours_w2_samples"), ("MosaicML Streaming (MDS), 2 workers", "mds_w2"),
            ("bare mmap Arrow gather, 1 process", "bare"),
            ("DataLoader floor: 2 workers, no reading", "ipc_floor")]
    print("\nwarm, shuffled, from the local cache (samples/s, median; time to first batch; peak RSS of the tree)")
    for label, key in rows:
        if key in R:
            r = R[key]
            print(f"  {label:<40} {med[key]:>12,.0f}   ttfb {statistics.median(r['ttfb']) * 1e3:7.1f} ms"
                  f"   peak {r['peak_rss'] / 1e6:7.0f} MB")
    print("\nratios (same data, shuffle, batch size, same run)")
    if "mds_w2" in med:
        print(f"  winnow batched 2w / MDS 2w         {med['ours_w2_batched'] / med['mds_w2']:8.1f}x   (target >= 10x)")
        print(f"  winnow 2w 1 step/item / MDS 2w     {med['ours_w2_step1'] / med['mds_w2']:8.1f}x")
        print(f"  winnow per-sample 2w / MDS 2w      {med['ours_w2_samples'] / med['mds_w2']:8.1f}x")
    print(f"  winnow batched 2w / bare gather    {med['ours_w2_batched'] / med['bare']:8.2f}    (target >= 0.5)")
    print(f"  winnow 2w 1 step/item / bare       {med['ours_w2_step1'] / med['bare']:8.2f}")
    print(f"  winnow in-process / bare gather    {med['ours_w0_batched'] / med['bare']:8.2f}")
    print(f"  winnow 2w 1 step/item / DataLoader floor {med['ours_w2_step1'] / med['ipc_floor']:6.2f}    "
          "(what worker-to-main transfer of one step per item allows on this machine)")
    print(f"  winnow batched 2w / DataLoader floor {med['ours_w2_batched'] / med['ipc_floor']:6.2f}    "
          "(above 1: several steps per item amortise the transfer)")
    if "cold" in R:
        print(f"\ncold epoch from loopback S3 (moto) into an empty cache; plain sequential s3fs read of the same "
              f"shards {med['s3fs'] / 1e6:.0f} MB/s")
        for key, label in (("cold_w0", "in-process"), ("cold", "2 workers")):
            c = R[key]
            cold_b = statistics.median(c["byte_rates"])
            print(f"  winnow {label:<11} {cold_b / 1e6:6.0f} MB/s ({med[key]:,.0f} samples/s, ttfb "
                  f"{statistics.median(c['ttfb']) * 1e3:.0f} ms, peak {c['peak_rss'] / 1e6:.0f} MB); "
                  f"ratio to s3fs {cold_b / med['s3fs']:.2f} (target >= 0.8)")
    lat = R["latency"]
    print("\nrandom-access latency of one sample (ds[i])")
    for tier, key, target in (("L1 (mapped)", "l1", 0.1), ("L2 (local file, unmapped)", "l2", 2.0)):
        xs = lat[key]
        print(f"  winnow {tier:<28} p50 {pct(xs, .5) * 1e3:7.3f} ms   p99 {pct(xs, .99) * 1e3:7.3f} ms"
              f"   (target p99 < {target} ms, n={len(xs)})")
    if "latency_mds" in R:
        xs = R["latency_mds"]["warm"]
        print(f"  MDS warm (local, ds[i])              p50 {pct(xs, .5) * 1e3:7.3f} ms   p99 {pct(xs, .99) * 1e3:7.3f} ms")
    m = R["ours_w2_batched"]["metrics"]
    print(f"\nwinnow metrics (2-worker warm run): L1 hit rate {m['hit_rate_l1']:.3f}, L2 {m['hit_rate_l2']:.3f}, "
          f"L3 {m['miss_rate_l3']:.3f}, stall {m['stall_s']:.2f}s")
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"medians": med, "runs": {k: {kk: vv for kk, vv in v.items() if kk not in ("l1", "l2", "warm")}
                                                for k, v in R.items()}}, f, indent=1, default=str)
    print(f"\ntotal {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
