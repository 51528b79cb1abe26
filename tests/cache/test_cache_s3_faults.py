"""Against a real S3 server (moto) on loopback, behind a proxy that injects faults."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from winnow.cache import INDEX_KEY, StreamingDataLoader, StreamingDataset
from winnow.cache.remote import RetryPolicy
from winnow.cache.synth import expected_tokens, sample_length
from winnow.errors import FetchError, ManifestError

from .conftest import s3_options

HERE = os.path.dirname(os.path.abspath(__file__))
FAST_RETRY = RetryPolicy(attempts=12, base_delay=0.02, max_delay=0.5)


def verify(batch, lengths):
    toks, offs = batch["tokens"], batch.get("tokens_offsets")
    bad = 0
    for k, i in enumerate(batch[INDEX_KEY].tolist()):
        got = toks[k].numpy() if offs is None else toks[offs[k]:offs[k + 1]].numpy()
        bad += not np.array_equal(got, expected_tokens(i, int(sample_length(i, lengths))))
    return batch[INDEX_KEY].tolist(), bad


@pytest.mark.timeout(240)
def test_two_ranks_two_workers_under_faults_every_sample_once_and_intact(upload, proxy, tmp_path):
    url = upload(num_samples=3200, rows_per_shard=200, lengths=(8, 48), rows_per_batch=64)
    p = proxy(rate=0.25, seed=11)
    opts = s3_options(p.url, read_timeout=1.0)
    procs, outs = [], []
    for rank in range(2):
        out = tmp_path / f"rank{rank}.json"
        cfg = {"dataset": dict(remote=url, local=str(tmp_path / "cache"), cache_limit="50MB", memory_limit="16MB",
                               columns=["tokens"], shuffle=True, seed=3, batch_size=40, batched=True,
                               shuffle_block=800, rank=rank, world_size=2, storage_options=opts,
                               chunk_bytes="6kB", fetch_workers=2),
               "workers": 2, "lengths": [8, 48], "out": str(out), "s3fs_retries": 1}
        procs.append(subprocess.Popen([sys.executable, os.path.join(HERE, "cache_rank_main.py"), json.dumps(cfg)]))
        outs.append(out)
    for proc in procs:
        assert proc.wait(timeout=200) == 0
    results = [json.loads(o.read_text()) for o in outs]
    ids = results[0]["ids"] + results[1]["ids"]
    assert len(results[0]["ids"]) == len(results[1]["ids"]) == 1600
    assert sorted(ids) == list(range(3200)), "every sample exactly once per epoch over 2 ranks x 2 workers"
    assert sum(r["corrupt"] for r in results) == 0
    assert p.requests > 50
    assert p.faulted / p.requests >= 0.10, p.counts
    assert all(p.counts[f] > 0 for f in ("500", "503", "reset", "truncate")), p.counts
    retries = sum(r["metrics"]["fetch_retries"] + r["metrics"]["prefetch_retries"] for r in results)
    assert retries > 0
    assert not os.listdir(tmp_path / "cache" / "tmp")


@pytest.mark.timeout(120)
def test_single_process_under_faults_and_permanent_errors(upload, proxy, tmp_path, monkeypatch):
    import s3fs

    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)  # leave the retrying to the loader
    url = upload(num_samples=600, rows_per_shard=100, lengths=(16, 16))
    p = proxy(rate=0.3, seed=5)
    ds = StreamingDataset(remote=url, local=str(tmp_path), cache_limit="10MB", columns=["tokens"], batch_size=30,
                          batched=True, shuffle_block=200, storage_options=s3_options(p.url), retry=FAST_RETRY,
                          chunk_bytes="8kB")
    ids, bad = [], 0
    for b in StreamingDataLoader(ds, num_workers=0):
        i, k = verify(b, (16, 16))
        ids += i
        bad += k
    assert sorted(ids) == list(range(600)) and bad == 0
    m = ds.metrics()
    assert m["fetch_retries"] + m["prefetch_retries"] > 0 and p.faulted > 0
    with pytest.raises(ManifestError):  # a missing manifest is not retried forever
        StreamingDataset(remote=url + "-missing", local=str(tmp_path), storage_options=s3_options(p.url),
                         retry=FAST_RETRY)


@pytest.mark.timeout(60)
def test_missing_shard_object_fails_fast_with_fetch_error(upload, moto_server, tmp_path):
    import s3fs

    url = upload(num_samples=300, rows_per_shard=100, lengths=(16, 16))
    opts = s3_options("http://%s:%d" % moto_server)
    s3fs.S3FileSystem(**opts).rm(url[len("s3://"):] + "/shards/part-00001-of-00003.arrow")
    ds = StreamingDataset(remote=url, local=str(tmp_path), cache_limit="10MB", columns=["tokens"], batch_size=30,
                          batched=True, shuffle=False, storage_options=opts, retry=FAST_RETRY)
    t0 = time.monotonic()
    with pytest.raises(FetchError) as e:
        for _ in ds:
            pass
    assert "part-00001-of-00003.arrow" in str(e.value) and time.monotonic() - t0 < 20


@pytest.mark.timeout(120)
@pytest.mark.parametrize("damage", ["flip", "truncate", "footer"])
def test_corrupted_cached_file_is_detected_and_fetched_again(upload, moto_server, tmp_path, damage):
    url = upload(num_samples=400, rows_per_shard=100, lengths=(16, 16))
    opts = s3_options("http://%s:%d" % moto_server)
    kw = dict(remote=url, local=str(tmp_path), cache_limit="10MB", columns=["tokens"], batch_size=20,
              batched=True, shuffle_block=100, storage_options=opts, retry=FAST_RETRY)
    first = StreamingDataset(**kw)
    for _ in first:
        pass
    first.close()
    objs = sorted(os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "objects") for f in fs)
    victim = objs[1]
    size = os.path.getsize(victim)
    with open(victim, "r+b") as f:
        if damage == "flip":  # same size, valid structure: only a hash finds it
            f.seek(size // 2)
            byte = f.read(1)
            f.seek(size // 2)
            f.write(bytes([byte[0] ^ 0xFF]))
        elif damage == "truncate":
            f.truncate(size - 100)
        else:  # same size, broken Arrow footer magic
            f.seek(size - 6)
            f.write(b"XXXXXX")
    second = StreamingDataset(verify="open" if damage == "flip" else "fetch", **kw)
    ids, bad = [], 0
    for b in second:
        i, k = verify(b, (16, 16))
        ids += i
        bad += k
    assert sorted(ids) == list(range(400)) and bad == 0
    m = second.metrics()
    assert m["l3_fetches"] + m["prefetched_shards"] >= 1
    assert m["corrupt_refetches"] >= (0 if damage == "truncate" else 1)
    assert os.path.getsize(victim) == size


def _lock_is_free(path):
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@pytest.mark.timeout(180)
def test_dataloader_worker_sigkilled_mid_download_then_restart(upload, proxy, tmp_path):
    url = upload(num_samples=1200, rows_per_shard=150, lengths=(64, 64))  # 8 shards of ~40 kB
    slow = proxy(rate=0.0, latency_s=0.25, path_filter="/shards/")  # every shard chunk takes 0.25 s
    kw = dict(remote=url, local=str(tmp_path / "cache"), cache_limit="20MB", columns=["tokens"], batch_size=50,
              batched=True, shuffle_block=300, storage_options=s3_options(slow.url, read_timeout=5.0),
              retry=FAST_RETRY, chunk_bytes="4kB", fetch_workers=1, wait_timeout=60)
    ds = StreamingDataset(**kw)
    loader = StreamingDataLoader(ds, num_workers=2, timeout=60)
    it = iter(loader)
    tmpdir = tmp_path / "cache" / "tmp"
    deadline = time.monotonic() + 30
    while not (tmpdir.exists() and any(n.endswith(".part") for n in os.listdir(tmpdir))):
        assert time.monotonic() < deadline, "no download started"
        time.sleep(0.01)
    part = next(n for n in os.listdir(tmpdir) if n.endswith(".part"))
    owner = int(part.split(".")[1])
    workers = [w.pid for w in it._workers]
    assert owner in workers
    os.kill(owner, signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError):
        for _ in it:  # the DataLoader notices the dead worker instead of hanging
            pass
    assert time.monotonic() - t0 < 60
    del it
    digest = part.split(".")[0]
    assert _lock_is_free(tmp_path / "cache" / "locks" / f"{digest}.lock"), "the kernel released the dead worker's lock"

    slow.latency_s = 0.0
    ds2 = StreamingDataset(**kw)
    ids, bad = [], 0
    for b in StreamingDataLoader(ds2, num_workers=2, timeout=60):
        i, k = verify(b, (64, 64))
        ids += i
        bad += k
    assert sorted(ids) == list(range(1200)) and bad == 0
    assert not [n for n in os.listdir(tmpdir) if n.endswith(".part")], "the stale partial download was removed"


@pytest.mark.timeout(120)
def test_rank_process_sigkilled_mid_download_leaves_no_stale_lock(upload, proxy, tmp_path):
    url = upload(num_samples=400, rows_per_shard=100, lengths=(64, 64))
    slow = proxy(rate=0.0, latency_s=0.3, path_filter="/shards/")
    cfg = {"dataset": dict(remote=url, local=str(tmp_path / "cache"), cache_limit="20MB", columns=["tokens"],
                           batch_size=20, batched=True, shuffle_block=100,
                           storage_options=s3_options(slow.url, read_timeout=5.0), chunk_bytes="4kB"),
           "workers": 0, "lengths": [64, 64], "out": str(tmp_path / "never.json")}
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "cache_rank_main.py"), json.dumps(cfg)])
    tmpdir = tmp_path / "cache" / "tmp"
    deadline = time.monotonic() + 60
    while not (tmpdir.exists() and any(n.endswith(".part") for n in os.listdir(tmpdir))):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    for name in os.listdir(tmp_path / "cache" / "locks"):
        assert _lock_is_free(tmp_path / "cache" / "locks" / name)
    slow.latency_s = 0.0
    ds = StreamingDataset(**{**cfg["dataset"], "storage_options": s3_options(slow.url)})
    ids = [i for b in ds for i in verify(b, (64, 64))[0]]
    assert sorted(ids) == list(range(400))
    assert not [n for n in os.listdir(tmpdir) if n.endswith(".part")]
