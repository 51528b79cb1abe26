"""Tokens/s into GPU memory per worker count, against the bare gather and two peers, and the
data-wait share of a synthetic training step.

Usage (on a CUDA machine, from the repository root; runs on CPU too, slowly, as a smoke test)::

    python bench/loader/gpu_step.py                                  # full sweep
    python bench/loader/gpu_step.py --workers 1,2 --steps 20 --seqs 32 --peer-steps 10 --ranks 2 \
        --rank-workers 1 --step-workers 2 --train-steps 4 --dim 64 --hidden 128   # CPU smoke, ~40 s

On a GPU host without network, the peers come as wheels fetched here beforehand::

    python bench/loader/gpu_step.py --fetch-wheels .whl/loader-peers            # here (PyPI)
    python3 bench/loader/gpu_step.py --peer-wheels .whl/loader-peers            # there

Pipeline measured: synthetic ragged documents written as winnow shards -> StreamingDataset
(batched, shuffled, L2 cache on local disk) -> TokenPacker (fixed 4096-token sequences,
``boundaries=True``: tokens plus per-row document starts, packed straight into the workers'
recycled shared-memory segments) -> StreamingDataLoader -> CudaPrefetcher (host-to-device copies
on a side stream) -> ``document_masks`` on the GPU (doc ids and positions). A batch counts once
its masks exist in GPU memory.

Transfer path (``--transfer``, for the sweep, the cold run, the rounds against the peers, the rank
processes and the training step): ``register`` (default, the loader's own default) copies each
batch straight from the worker's recycled segment, page-locked in place once
(``StreamingDataLoader(pin_memory=False)``, ``CudaPrefetcher(register=True)``); ``pin`` lets the
DataLoader's pin thread copy each batch into pinned memory first (``pin_memory=True``,
``register=False``). Every window reports how many of its prefetcher's batches went each way. On
CUDA an A/B (``--ab-workers``, ``--ab-rounds``) times both paths in alternating order.

Peers, in the same run and over the same documents written in their own formats: MosaicML
Streaming (MDS) and LitData, each through its own loader with the same worker count, their
batches concatenated and copied to the GPU (no packing for them: that favours the peers).
The bare gather: one process, shuffled documents gathered from the memory-mapped shards into
one buffer, no loader at all.

Data wait: host time in ``next()`` for the next batch while the GPU is idle (the step syncs
through ``loss.item()``), as a share of the step time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import time

from procstat import proc_cpu, proc_minflt, thread_cpu

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def import_winnow_cache() -> None:
    """Import winnow.cache from this checkout even where winnow is not pip-installed."""
    try:
        import winnow.cache  # noqa: F401
        return
    except ImportError:
        pass
    sys.path.insert(0, ROOT)
    import winnow

    for sub in ("cache",):
        spec = importlib.util.spec_from_file_location(f"winnow.{sub}", os.path.join(ROOT, sub, "__init__.py"),
                                                      submodule_search_locations=[os.path.join(ROOT, sub)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[f"winnow.{sub}"] = mod
        setattr(winnow, sub, mod)
        spec.loader.exec_module(mod)  # type: ignore[union-attr]


PEER_REQUIREMENTS = os.path.join(HERE, "requirements-gpu-peers.txt")


def fetch_wheels(dest: str, python: str) -> None:
    """Download (here, where PyPI is reachable) the wheels of ``requirements-gpu-peers.txt`` for
    CPython ``python`` on x86_64 Linux, without their dependencies, into ``dest``."""
    import subprocess

    os.makedirs(dest, exist_ok=True)
    tag = python.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
           "--only-binary=:all:", "--python-version", python, "--implementation", "cp", "--abi", f"cp{tag}",
           "--abi", "abi3", "--abi", "none", "-d", dest, "-r", PEER_REQUIREMENTS]
    for plat in ("manylinux1_x86_64", "manylinux_2_5_x86_64", "manylinux2014_x86_64", "manylinux_2_17_x86_64",
                 "manylinux_2_28_x86_64", "any"):
        cmd += ["--platform", plat]
    subprocess.run(cmd, check=True)
    size = sum(os.path.getsize(os.path.join(dest, f)) for f in os.listdir(dest))
    print(f"{len(os.listdir(dest))} wheels, {size / 1e6:.1f} MB in {dest}")


def install_wheels(src: str, target: str, quiet: bool = False) -> None:
    """Unpack every wheel in ``src`` into ``target`` (no pip, no network) and append it to
    ``sys.path``: packages the image already has keep precedence. torchvision, which MosaicML
    Streaming imports, is replaced by ``peer_shim`` if the image's cannot be imported."""
    import zipfile

    wheels = sorted(f for f in os.listdir(src) if f.endswith(".whl"))
    stamp = os.path.join(target, ".installed")
    if not (os.path.exists(stamp) and open(stamp).read().split() == wheels):
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(target)
        for w in wheels:
            with zipfile.ZipFile(os.path.join(src, w)) as z:
                for m in z.infolist():
                    name = m.filename
                    parts = name.split("/")
                    if len(parts) > 2 and parts[0].endswith(".data") and parts[1] in ("purelib", "platlib"):
                        name = "/".join(parts[2:])
                    elif parts[0].endswith(".data"):
                        continue  # scripts and headers: not needed to import
                    out = os.path.join(target, name)
                    if m.is_dir():
                        os.makedirs(out, exist_ok=True)
                        continue
                    os.makedirs(os.path.dirname(out), exist_ok=True)
                    with z.open(m) as f, open(out, "wb") as g:
                        shutil.copyfileobj(f, g)
        with open(stamp, "w") as f:
            f.write("\n".join(wheels))
    sys.path.append(target)
    try:
        import torchvision  # noqa: F401
    except Exception:  # missing, or a build that does not match the image's torch
        sys.modules.pop("torchvision", None)
        sys.path.insert(0, os.path.join(HERE, "peer_shim"))
    if not quiet:
        print(f"peers: {len(wheels)} wheels from {src} unpacked in {target} (after the image's own packages)",
              flush=True)


def sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def _worker_pids() -> list[int]:
    """The DataLoader worker processes alive now (the measured loader's: each measurement closes
    its iterator, and with it its workers, before the next starts)."""
    import multiprocessing

    return [p.pid for p in multiprocessing.active_children()]


def timed(it, dev, warmup: int, steps: int, count) -> dict:
    """Tokens/s over ``steps`` batches after ``warmup`` (the clock starts once warm-up batches are
    in), with the CPU seconds per batch of this process (all its threads: the DataLoader's pin
    thread, the prefetch thread) and of the loader's worker processes over the same window.
    Closes ``it`` (its thread and workers) before returning."""
    import resource

    n, t0, k, c0, w0, f0, pids = 0, None, -1, 0.0, 0.0, 0, []
    arrivals: list[float] = []  # when each timed batch was handed out (stalls show as long gaps)
    try:
        for k, b in enumerate(it):
            if t0 is not None:
                arrivals.append(time.perf_counter())
            if k == warmup:
                sync(dev)
                t0 = time.perf_counter()
                wall0 = time.time()
                r = resource.getrusage(resource.RUSAGE_SELF)
                c0 = r.ru_utime + r.ru_stime
                pids = _worker_pids()
                w0 = sum(proc_cpu(p) for p in pids)
                f0 = sum(proc_minflt(p) for p in pids)
                th0 = thread_cpu()
            if k >= warmup:
                n += count(b)
            if k + 1 >= warmup + steps:
                break
        sync(dev)
        dt = time.perf_counter() - t0 if t0 is not None else 0.0
        r = resource.getrusage(resource.RUSAGE_SELF)
        w1 = sum(proc_cpu(p) for p in pids)
        f1 = sum(proc_minflt(p) for p in pids)
        th1 = thread_cpu() if t0 is not None else {}
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
    if t0 is None or n == 0:
        return {"rate": 0.0, "batches": 0, "seconds": 0.0}
    nb = k + 1 - warmup
    gaps = sorted(y - x for x, y in zip([t0, *arrivals], arrivals))
    med = gaps[len(gaps) // 2] if gaps else 0.0
    stalls = [g for g in gaps if g > max(4 * med, 1e-3)]
    threads = {_short(name): (c - th0.get(name, 0.0)) / nb * 1e3 for name, c in th1.items()}
    return {"rate": n / dt, "batches": nb, "seconds": dt, "tokens": n, "t_start": wall0, "t_end": wall0 + dt,
            "main_cpu_ms_per_batch": (r.ru_utime + r.ru_stime - c0) / nb * 1e3,
            "workers_cpu_ms_per_batch": (w1 - w0) / nb * 1e3 if pids else None,
            "workers_minor_faults_per_batch": (f1 - f0) / nb if pids else None,
            "gap_ms": {"p50": med * 1e3, "p99": gaps[int(0.99 * (len(gaps) - 1))] * 1e3 if gaps else 0.0,
                       "max": gaps[-1] * 1e3 if gaps else 0.0, "stalls": len(stalls),
                       "stalled_share": sum(stalls) / dt if dt > 0 else 0.0},
            "threads_cpu_ms_per_batch": {k: round(v, 3) for k, v in sorted(threads.items(), key=lambda kv: -kv[1])
                                         if v >= 0.005}}


def _short(name: str) -> str:
    """A thread's name without the running number threading gives it ("Thread-3 (_pin_memory_loop)")."""
    if name.startswith("Thread-") and "(" in name:
        return name[name.index("(") + 1:].rstrip(")")
    return name


def _path(pf, transfer: str) -> dict:
    """How a window's batches reached the GPU: the path asked for and the prefetcher's counts."""
    st = dict(pf.stats)
    return {"transfer": transfer if pf.on_cuda else "cpu (no device copy)", "prefetcher": st,
            "direct_share": st["direct"] / max(1, st["direct"] + st["pinned"] + st["fallback"])}


def _diag(r: dict) -> str:
    w = r.get("workers_cpu_ms_per_batch")
    th = r.get("threads_cpu_ms_per_batch") or {}
    top = ", ".join(f"{k} {v:.2f}" for k, v in list(th.items())[:4])
    path = r.get("path") or {}
    st = path.get("prefetcher") or {}
    way = ""
    if sum(st.get(k, 0) for k in ("direct", "pinned", "fallback")):
        way = (f"{path['transfer']}: {st['direct']} direct, {st['pinned']} pinned, {st['fallback']} fallback, "
               f"{st['register_failed']} registrations failed; ")
    return (f"[{way}{r['batches']} batches in {r['seconds']:.2f}s; CPU per batch: trainer process "
            f"{r.get('main_cpu_ms_per_batch', float('nan')):.2f} ms" + (f" ({top})" if top else "")
            + ("" if w is None else f", workers {w:.2f} ms, {r.get('workers_minor_faults_per_batch', 0):.0f} minor faults")
            + (f"; gaps p50 {g['p50']:.2f} ms, p99 {g['p99']:.2f} ms, max {g['max']:.1f} ms, {g['stalls']} stalls "
               f"(> 4x p50) holding {g['stalled_share'] * 100:.0f}% of the window" if (g := r.get("gap_ms")) else "")
            + "]")


def bare_gather(remote: str, seconds: float = 3.0) -> float:
    """Tokens/s of a shuffled gather of whole documents from memory-mapped shards (one process)."""
    import numpy as np
    import pyarrow as pa

    vals, offs = [], []
    for name in sorted(os.listdir(os.path.join(remote, "shards"))):
        t = pa.ipc.open_file(pa.memory_map(os.path.join(remote, "shards", name))).read_all()
        col = t.column("tokens").combine_chunks()
        o = col.offsets.to_numpy().astype(np.int64)
        vals.append(col.values.to_numpy(zero_copy_only=True))
        offs.append(o)
    rng = np.random.default_rng(0)
    docs = [(s, i) for s in range(len(vals)) for i in range(len(offs[s]) - 1)]
    ids = rng.permutation(len(docs))
    n, t0, k = 0, time.perf_counter(), 0
    out = np.empty(1 << 22, dtype=np.int32)
    while time.perf_counter() - t0 < seconds:
        for j in ids[k:k + 256]:
            s, i = docs[j]
            a, b = offs[s][i], offs[s][i + 1]
            m = min(b - a, len(out))
            out[:m] = vals[s][a:a + m]
            n += m
        k = (k + 256) % len(ids)
    return n / (time.perf_counter() - t0)


def write_peers(remote: str, work: str, docs_limit: int) -> dict[str, str]:
    """The same documents in MDS and LitData formats (whatever is installed); name -> dir or error."""
    import numpy as np
    import pyarrow as pa

    def docs():
        k = 0
        for name in sorted(os.listdir(os.path.join(remote, "shards"))):
            col = pa.ipc.open_file(pa.memory_map(os.path.join(remote, "shards", name))).read_all()
            col = col.column("tokens").combine_chunks()
            o = col.offsets.to_numpy()
            v = col.values.to_numpy(zero_copy_only=True)
            for i in range(len(o) - 1):
                yield np.asarray(v[o[i]:o[i + 1]])
                k += 1
                if k >= docs_limit:
                    return

    out: dict[str, str] = {}
    try:
        from streaming import MDSWriter

        d = os.path.join(work, "mds")
        shutil.rmtree(d, ignore_errors=True)
        with MDSWriter(out=d, columns={"tokens": "ndarray:int32"}, size_limit=1 << 26) as w:
            for t in docs():
                w.write({"tokens": t})
        out["mosaicml-streaming"] = d
    except Exception as e:  # reported, not fatal: the peer may be missing
        out["mosaicml-streaming"] = f"ERROR {type(e).__name__}: {e}"
    try:
        from litdata.streaming.writer import BinaryWriter

        d = os.path.join(work, "litdata")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        w = BinaryWriter(d, chunk_bytes="64MB")
        for i, t in enumerate(docs()):
            w[i] = {"tokens": t}
        w.done()
        w.merge(1)
        out["litdata"] = d
    except Exception as e:
        out["litdata"] = f"ERROR {type(e).__name__}: {e}"
    return out


def _cat_collate(items):
    import numpy as np
    import torch

    toks = [np.asarray(it["tokens"]) for it in items]
    return torch.from_numpy(np.concatenate(toks))


def peer_loader(name: str, path: str, workers: int, dev, docs_per_batch: int):
    import torch

    from winnow.cache import CudaPrefetcher

    if name == "mosaicml-streaming":
        from streaming import StreamingDataset as MDS

        ds = MDS(local=path, shuffle=True, batch_size=docs_per_batch, shuffle_seed=1)
        dl = torch.utils.data.DataLoader(ds, batch_size=docs_per_batch, num_workers=workers,
                                         collate_fn=_cat_collate, pin_memory=dev.type == "cuda",
                                         prefetch_factor=4 if workers else None)
    else:
        import litdata

        ds = litdata.StreamingDataset(path, shuffle=True, seed=1)
        dl = litdata.StreamingDataLoader(ds, batch_size=docs_per_batch, num_workers=workers,
                                         collate_fn=_cat_collate, pin_memory=dev.type == "cuda",
                                         prefetch_factor=4 if workers else None)
    return CudaPrefetcher(dl, device=dev, depth=2, register=False)  # their DataLoaders pin (pin_memory=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/winnow-gpu-bench")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--seqs", type=int, default=256, help="sequences per step (256 x 4096 = 1,048,576 tokens)")
    ap.add_argument("--steps", type=int, default=600,
                    help="timed batches per worker count (at 1B tokens/s, 600 batches of 1M tokens are ~0.6 s; "
                         "the first H200 figures in docs/loader.md were taken with 60, a window short enough to be "
                         "noisy)")
    ap.add_argument("--peer-steps", type=int, default=200, help="timed batches per peer window")
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds against the peers: each times winnow and every peer once (fresh "
                         "loaders, rotated order); ratios per round, median reported")
    ap.add_argument("--sweep-rounds", type=int, default=3,
                    help="rounds of the worker sweep, each count once per round in a rotated order; medians reported")
    ap.add_argument("--no-warm-pass", dest="warm_pass", action="store_false",
                    help="skip the untimed epoch after the cold window that puts every shard in L2")
    ap.add_argument("--warmup", type=int, default=6,
                    help="untimed batches first (at least 2 per worker, so every worker has started)")
    ap.add_argument("--workers", default="1,2,4,8,16")
    ap.add_argument("--step-workers", type=int, default=8, help="workers for the synthetic training step")
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--ranks", type=int, default=8, help="rank processes sharing one cache and one GPU (0: skip)")
    ap.add_argument("--rank-workers", type=int, default=2)
    ap.add_argument("--rank-steps", type=int, default=24, help="timed batches per rank process")
    ap.add_argument("--as-rank", type=int, default=-1, help=argparse.SUPPRESS)
    ap.add_argument("--transfer", choices=("register", "pin"), default="register",
                    help="how winnow's batches reach the GPU everywhere but the A/B: straight from the workers' "
                         "segments page-locked in place (register), or through the DataLoader's pin copy (pin)")
    ap.add_argument("--ab-workers", type=int, default=8,
                    help="CUDA only: an A/B of the two transfer paths with this many workers (0: skip)")
    ap.add_argument("--ab-rounds", type=int, default=2, help="A/B rounds, each times both paths, order alternating")
    ap.add_argument("--check-batches", type=int, default=64,
                    help="before the A/B: the first batches of both paths (same seed) must be equal on the GPU")
    ap.add_argument("--json", default=None)
    ap.add_argument("--peer-wheels", default=None, metavar="DIR",
                    help="unpack the wheels in DIR (see --fetch-wheels) and import the peers from there")
    ap.add_argument("--fetch-wheels", default=None, metavar="DIR",
                    help="download the peers' wheels for the GPU host into DIR (needs PyPI) and exit")
    ap.add_argument("--python", default="3.12", help="the GPU host's Python version, for --fetch-wheels")
    a = ap.parse_args()
    if a.fetch_wheels:
        fetch_wheels(a.fetch_wheels, a.python)
        return
    if a.peer_wheels:
        install_wheels(a.peer_wheels, os.path.join(a.work, "peer-site"), quiet=a.as_rank >= 0)
    try:
        import_winnow_cache()
    except ImportError as e:
        sys.exit(f"winnow.cache cannot be imported on this host ({e}); add a wheel of the missing package "
                 f"(CPython {sys.version_info.major}.{sys.version_info.minor}) to the --peer-wheels directory")
    import numpy as np
    import torch

    from winnow.cache import CudaPrefetcher, StreamingDataLoader, StreamingDataset, TokenPacker, document_masks
    from winnow.cache.synth import sample_length, write_token_shards

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cpu":  # smoke runs: the masks' CPU kernels must not spin threads against the workers
        torch.set_num_threads(1)
    workers = [int(w) for w in a.workers.split(",") if w]
    tokens_per_step = a.seq_len * a.seqs
    lengths = (256, 2048)
    batches = max(a.steps + max(a.warmup, 2 * max(workers)), max(a.warmup, 2 * a.step_workers) + a.train_steps) + 8
    need_tokens = tokens_per_step * batches * 5 // 4
    docs = int(need_tokens / np.mean(lengths)) + 1
    remote = os.path.join(a.work, f"shards-{docs}")
    t0 = time.time()
    if not os.path.exists(os.path.join(remote, "index.json")):
        write_token_shards(remote, num_samples=docs, rows_per_shard=8192, lengths=lengths)
    written = int(sample_length(np.arange(docs), lengths).sum())
    import winnow.cache as wc

    print(f"winnow.cache from {os.path.dirname(wc.__file__)}", flush=True)
    print(f"device {torch.cuda.get_device_name(0) if dev.type == 'cuda' else 'cpu'}; torch {torch.__version__}; "
          f"{os.cpu_count()} cores; {docs} documents, {written / 1e6:.0f}M tokens written in {time.time() - t0:.0f}s",
          flush=True)
    cache = os.path.join(a.work, "cache")
    if a.as_rank < 0:  # the sub-processes share the parent's cache: never empty it
        shutil.rmtree(cache, ignore_errors=True)

    def loader(seed: int, w: int, transfer: str = a.transfer):
        ds = StreamingDataset(remote=remote, local=cache, cache_limit="50GB", memory_limit="8GB", columns=["tokens"],
                              shuffle=True, seed=seed, batch_size=256, batched=True)
        packer = TokenPacker(ds, seq_len=a.seq_len, batch_size=a.seqs, eos_id=0, boundaries=True)
        dl = StreamingDataLoader(packer, num_workers=w, pin_memory=dev.type == "cuda" and transfer == "pin",
                                 prefetch_factor=4 if w else None)
        return CudaPrefetcher(dl, device=dev, depth=3, register=transfer == "register")

    def with_masks(b) -> int:
        doc, pos = document_masks(b["doc_starts"], a.seq_len)
        return b["input_ids"].numel()

    def window(seed: int, w: int, steps: int, warmup: int | None = None, transfer: str = a.transfer) -> dict:
        pf = loader(seed, w, transfer)
        r = timed(iter(pf), dev, max(a.warmup, 2 * w) if warmup is None else warmup, steps, with_masks)
        return {**r, "path": _path(pf, transfer)}

    if a.as_rank >= 0:  # one of --ranks processes: its own tokens/s as JSON on the last line
        os.environ.update(RANK=str(a.as_rank), WORLD_SIZE=str(a.ranks))
        t0 = time.perf_counter()
        r = window(7, a.rank_workers, a.rank_steps, warmup=4)
        print(json.dumps({**r, "wall": time.perf_counter() - t0}))
        return

    res: dict = {"tokens_per_step": tokens_per_step, "workers": {},
                 "transfer": a.transfer if dev.type == "cuda" else "cpu (no device copy)"}
    w0 = max(workers)
    wc = min(w0, 8)
    res["cold"] = window(1, wc, a.steps)
    print(f"cold (L2 filling), {wc} workers: {res['cold']['rate'] / 1e6:.1f}M tokens/s into GPU memory "
          f"{_diag(res['cold'])}", flush=True)
    if a.warm_pass:  # the rest of the shards into L2 (the cold window read ~4/5 of them): the sweep is warm
        t0 = time.perf_counter()
        pf = loader(2, min(w0, 16))
        n = sum(1 for _ in iter(pf))
        res["warm_pass"] = {"batches": n, "seconds": time.perf_counter() - t0}
        print(f"warm pass: one untimed epoch, {n} batches in {res['warm_pass']['seconds']:.1f}s", flush=True)
    # The sweep in --sweep-rounds rounds, each worker count once per round in an order rotated
    # from round to round (a fresh loader each time): host noise at one moment hits one window of
    # each count, not every window of one count. Each count's median is its rate.
    runs: dict[int, list[dict]] = {w: [] for w in workers}
    for rnd in range(a.sweep_rounds):
        k = rnd % len(workers)
        for w in workers[k:] + workers[:k]:
            r = window(3 + w + 1000 * rnd, w, a.steps)
            runs[w].append(r)
            print(f"sweep round {rnd + 1}: winnow, {w:2d} workers: {r['rate'] / 1e6:8.1f}M tokens/s into GPU memory "
                  f"(packed, boundaries, masks on GPU) {_diag(r)}", flush=True)
    for w in workers:
        rs = [r["rate"] for r in runs[w]]
        mid = sorted(runs[w], key=lambda r: r["rate"])[(len(rs) - 1) // 2]  # the median window (lower middle)
        res["workers"][w] = {**mid, "rate": statistics.median(rs), "rates": rs}
        print(f"winnow, {w:2d} workers: median {statistics.median(rs) / 1e6:8.1f}M tokens/s "
              f"[{min(rs) / 1e6:.0f}-{max(rs) / 1e6:.0f}] over {len(rs)} rounds", flush=True)
    rate = {w: r["rate"] for w, r in res["workers"].items()}
    res["monotone_to_8"] = all(rate[y] >= rate[x] for x, y in zip(workers, workers[1:]) if y <= 8)
    res["monotone_to_8_per_round"] = [all(runs[y][i]["rate"] >= runs[x][i]["rate"]
                                          for x, y in zip(workers, workers[1:]) if y <= 8)
                                      for i in range(a.sweep_rounds)]
    res["bare_gather"] = bare_gather(remote)
    print(f"bare shuffled gather from mmap (1 process, no loader): {res['bare_gather'] / 1e6:.1f}M tokens/s", flush=True)

    if not a.no_peers:
        t0 = time.time()
        per_batch = max(1, int(tokens_per_step / np.mean(lengths)))  # a step's tokens in documents
        peers = write_peers(remote, a.work, min(docs, per_batch * (max(a.warmup, 16) + a.peer_steps + 40)))
        print(f"peers written in {time.time() - t0:.0f}s", flush=True)
        pw = 8 if 8 in workers else w0
        res["peers"] = {}
        live = {}
        for name, path in peers.items():
            if path.startswith("ERROR"):
                print(f"{name}: {path}", flush=True)
                res["peers"][name] = path
            else:
                live[name] = path
        # Interleaved rounds: each round times winnow and every peer with pw workers, each in a fresh
        # loader (the same warm-up of 2 batches per worker), in an order rotated from round to round;
        # each ratio is taken against the same round's winnow window, and the median is reported, so
        # host noise at one moment hits one round of every loader, not one loader.
        rounds: list[dict] = []
        names = ["winnow", *live]
        for rnd in range(a.rounds):
            row: dict = {}
            for name in names[rnd % len(names):] + names[:rnd % len(names)]:
                try:
                    if name == "winnow":
                        r = window(100 + rnd, pw, a.steps)
                    else:
                        r = timed(iter(peer_loader(name, live[name], pw, dev, per_batch)), dev,
                                  max(a.warmup, 2 * pw), a.peer_steps, lambda b: b.numel())
                except Exception as e:  # noqa: BLE001 - a peer's failure is reported, not fatal
                    r = {"error": f"{type(e).__name__}: {e}"}
                row[name] = r
                if "error" in r:
                    print(f"round {rnd + 1}: {name}: ERROR {r['error']}", flush=True)
                else:
                    what = "packed, masks on GPU" if name == "winnow" else f"{per_batch} documents a batch, unpacked"
                    print(f"round {rnd + 1}: {name}, {pw} workers: {r['rate'] / 1e6:.1f}M tokens/s into GPU memory "
                          f"({what}) {_diag(r)}", flush=True)
            ours = row["winnow"].get("rate", 0.0)
            row["ratios"] = {n: ours / row[n]["rate"] for n in live if row[n].get("rate") and ours}
            print(f"round {rnd + 1}: winnow {pw} workers / " + ", ".join(f"{n} {x:.1f}x" for n, x in row["ratios"].items()),
                  flush=True)
            rounds.append(row)
        res["rounds"] = rounds
        for name in live:
            xs = [r["ratios"][name] for r in rounds if name in r["ratios"]]
            rs = [r[name]["rate"] for r in rounds if r[name].get("rate")]
            res["peers"][name] = {"rate_median": statistics.median(rs) if rs else None,
                                  "ratio_median": statistics.median(xs) if xs else None,
                                  "ratio_min": min(xs) if xs else None, "ratio_max": max(xs) if xs else None,
                                  "rounds": len(xs)}
            if xs:
                print(f"{name}, {pw} workers: median {statistics.median(rs) / 1e6:.1f}M tokens/s; winnow {pw} workers is "
                      f"{statistics.median(xs):.1f}x (per round {', '.join(f'{x:.1f}' for x in xs)}; "
                      f"{len(xs)} rounds)", flush=True)
        wr = [r["winnow"]["rate"] for r in rounds if r["winnow"].get("rate")]
        if wr:
            res["winnow_rounds_median"] = statistics.median(wr)
            print(f"winnow, {pw} workers, in the rounds: median {statistics.median(wr) / 1e6:.1f}M tokens/s "
                  f"({', '.join(f'{x / 1e6:.0f}' for x in wr)})", flush=True)

    if a.ranks > 0:  # N rank processes on one host, one shared L2 cache, all into the one GPU
        import subprocess

        # the same corpus arguments as this process (they name the shard directory), its own timing
        args = [sys.executable, os.path.abspath(__file__), "--work", a.work, "--seq-len", str(a.seq_len),
                "--seqs", str(a.seqs), "--steps", str(a.steps), "--warmup", str(a.warmup), "--workers", a.workers,
                "--step-workers", str(a.step_workers), "--train-steps", str(a.train_steps),
                "--ranks", str(a.ranks), "--rank-workers", str(a.rank_workers), "--rank-steps", str(a.rank_steps),
                "--transfer", a.transfer]
        if a.peer_wheels:  # the ranks import winnow.cache's dependencies from there too, if the image lacks them
            args += ["--peer-wheels", a.peer_wheels]
        procs = [subprocess.Popen(args + ["--as-rank", str(r)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for r in range(a.ranks)]
        outs, errs = [], []
        for r, p in enumerate(procs):
            so, se = p.communicate()
            try:
                o = json.loads(so.strip().splitlines()[-1])
                if o.get("batches"):
                    outs.append(o)
                else:
                    errs.append(f"rank {r}: no timed batches")
            except (IndexError, ValueError):
                errs.append(f"rank {r} failed (exit {p.returncode}): {se.strip()[-800:]}")
        for e in errs:
            print(e, flush=True)
        if outs:
            agg = sum(o["rate"] for o in outs)
            span = max(o["t_end"] for o in outs) - min(o["t_start"] for o in outs)
            together = sum(o["tokens"] for o in outs) / span if span > 0 else float("nan")
            res["ranks"] = {"ranks": a.ranks, "ok": len(outs), "workers_each": a.rank_workers,
                            "sum_tokens_per_s": agg, "tokens_per_s_over_union_of_windows": together,
                            "per_rank_min": min(o["rate"] for o in outs), "per_rank_max": max(o["rate"] for o in outs),
                            "paths": [o.get("path") for o in outs]}
            print(f"{len(outs)} of {a.ranks} ranks x {a.rank_workers} workers, one shared cache, one GPU: sum of rank "
                  f"rates {agg / 1e6:.1f}M tokens/s, all tokens over the union of their windows {together / 1e6:.1f}M "
                  f"(per rank {res['ranks']['per_rank_min'] / 1e6:.1f}-{res['ranks']['per_rank_max'] / 1e6:.1f}M)",
                  flush=True)

    # synthetic training step on tokens_per_step tokens
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    emb = torch.nn.Embedding(50021, a.dim, device=dev, dtype=dtype)
    w1 = torch.nn.Linear(a.dim, a.hidden, device=dev, dtype=dtype)
    w2 = torch.nn.Linear(a.hidden, a.dim, device=dev, dtype=dtype)
    params = [*emb.parameters(), *w1.parameters(), *w2.parameters()]
    opt = torch.optim.SGD(params, lr=1e-4)

    def step(batch: dict) -> float:
        doc, pos = document_masks(batch["doc_starts"], a.seq_len)
        x = emb(batch["input_ids"].long())
        h = torch.nn.functional.gelu(w1(x))
        y = w2(h)
        loss = (y.float().mean(-1) * (doc >= 0) + 1e-6 * pos.float()).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    step_pf = loader(2, a.step_workers)
    it = iter(step_pf)
    waits, totals = [], []
    warm = max(a.warmup, 2 * a.step_workers)
    for k in range(warm + a.train_steps):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        step(batch)
        t2 = time.perf_counter()
        if k >= warm:
            waits.append(t1 - t0)
            totals.append(t2 - t0)
    it.close()  # its workers and prefetch thread stop here
    share = sum(waits) / sum(totals)
    res.update({"step_s_median": statistics.median(totals), "data_wait_s_median": statistics.median(waits),
                "data_wait_s_max": max(waits), "data_wait_share": share, "step_path": _path(step_pf, a.transfer)})
    print(f"synthetic step of {tokens_per_step:,} tokens ({a.step_workers} workers): median "
          f"{res['step_s_median'] * 1e3:.1f} ms; data wait median {res['data_wait_s_median'] * 1e3:.3f} ms, max "
          f"{res['data_wait_s_max'] * 1e3:.2f} ms; data-wait share {share * 100:.2f}% (target < 0.5%)", flush=True)
    print("monotone in workers 1..8 (medians):", res["monotone_to_8"], "; per round:", res["monotone_to_8_per_round"])
    if dev.type == "cuda" and a.ab_workers > 0:  # the two transfer paths, interleaved, same worker count
        zw, ab = a.ab_workers, []
        # First, that both paths deliver the same bytes: the same seed gives the same batches in the
        # same order, so the first --check-batches of each must be equal on the GPU.
        got: dict = {}
        how: dict = {}
        for transfer in ("register", "pin"):
            pf = loader(300, zw, transfer)
            it, got[transfer] = iter(pf), []
            for b in it:
                got[transfer].append((b["input_ids"], b["doc_starts"]))
                if len(got[transfer]) == a.check_batches:
                    break
            it.close()
            how[transfer] = _path(pf, transfer)
        sync(dev)
        bad = sum(1 for x, y in zip(got["register"], got["pin"])
                  if x[0].shape != y[0].shape or x[1].shape != y[1].shape
                  or not (torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])))
        n = min(len(got["register"]), len(got["pin"]))
        res["transfer_check"] = {"workers": zw, "batches": n, "differing": bad, "paths": how}
        print(f"check, {zw} workers: the first {n} batches through register ({how['register']['prefetcher']['direct']} "
              f"direct) and through pin: {bad} differ", flush=True)
        del got
        paths = ["register", "pin"]
        for rnd in range(a.ab_rounds):
            row = {}
            for transfer in (paths if rnd % 2 == 0 else paths[::-1]):
                r = window(200 + rnd, zw, a.steps, transfer=transfer)
                row[transfer] = r
                print(f"A/B round {rnd + 1}: {zw} workers, transfer {transfer:8s}: {r['rate'] / 1e6:8.1f}M tokens/s "
                      f"{_diag(r)}", flush=True)
            row["ratio"] = row["register"]["rate"] / row["pin"]["rate"] if row["pin"]["rate"] else None
            ab.append(row)
        xs = [r["ratio"] for r in ab if r["ratio"]]
        res["transfer_ab"] = {"workers": zw, "rounds": ab, "register_over_pin_median": statistics.median(xs) if xs else None}
        if xs:
            print(f"A/B, {zw} workers: register / pin median {statistics.median(xs):.2f}x (per round "
                  f"{', '.join(f'{x:.2f}' for x in xs)})", flush=True)
    elif a.ab_workers > 0:
        print("A/B of the transfer paths: CUDA only (no device copy here)", flush=True)
    pw = 8 if 8 in workers else max(workers)
    ab = res.get("transfer_ab") or {}
    direct = (f", {res['workers'][pw]['path']['direct_share'] * 100:.0f}% of its batches direct"
              if dev.type == "cuda" else "")
    print(f"\nsummary (issue 16 must-show; winnow's transfer path: {res['transfer']}): winnow {pw} workers "
          f"{rate[pw] / 1e6:.0f}M tokens/s{direct} (target >= 500M); "
          + "; ".join(f"{name} {r['ratio_median']:.1f}x [{r['ratio_min']:.1f}-{r['ratio_max']:.1f}]"
                      if isinstance(r, dict) and r.get("ratio_median") else f"{name} n/a"
                      for name, r in res.get("peers", {}).items())
          + f" (target >= 5x, median of interleaved rounds [range]); monotone 1..8 {res['monotone_to_8']}; "
          f"data-wait share {share * 100:.2f}% (target < 0.5%)"
          + (f"; A/B register / pin {ab['register_over_pin_median']:.2f}x" if ab.get("register_over_pin_median") else "")
          + (f"; register/pin check: {res['transfer_check']['differing']} of {res['transfer_check']['batches']} "
             "batches differ" if "transfer_check" in res else ""),
          flush=True)
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
