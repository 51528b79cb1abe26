"""Eight ranks on one node sharing one local cache (simulated: 8 processes on this host)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from winnow.cache.synth import write_token_shards

HERE = os.path.dirname(os.path.abspath(__file__))
RANKS = 8


def _start(cfg: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, os.path.join(HERE, "cache_rank_main.py"), json.dumps(cfg)])


def _cfg(remote: str, local: str, rank: int, out: str, **extra) -> dict:
    return {"dataset": dict(remote=remote, local=local, cache_limit="64MB", memory_limit="8MB", columns=["tokens"],
                            shuffle=True, seed=5, batch_size=10, batched=True, shuffle_block=400, rank=rank,
                            world_size=RANKS),
            "workers": 1, "lengths": [4, 40], "out": out, **extra}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_eight_ranks_share_one_cache_every_sample_once_each_shard_fetched_once(tmp_path):
    remote = str(tmp_path / "remote")
    m = write_token_shards(remote, num_samples=3200, rows_per_shard=200, lengths=(4, 40))
    shards = len(m.shards)

    # 1) a clean epoch: 8 ranks x 1 worker, one cache
    local = str(tmp_path / "cache1")
    outs = [str(tmp_path / f"a{r}.json") for r in range(RANKS)]
    procs = [_start(_cfg(remote, local, r, outs[r])) for r in range(RANKS)]
    assert all(p.wait(timeout=240) == 0 for p in procs)
    res = [json.load(open(o)) for o in outs]
    ids = [i for r in res for i in r["ids"]]
    assert sorted(ids) == list(range(3200)), "every sample exactly once per epoch across 8 ranks"
    assert all(len(r["ids"]) == 400 for r in res) and sum(r["corrupt"] for r in res) == 0
    fetched = sum(r["metrics"]["l3_fetches"] + r["metrics"]["prefetched_shards"] for r in res)
    assert fetched == shards, f"each shard fetched once per node, got {fetched} fetches of {shards} shards"

    # 2) rank 3 is SIGKILLed mid-epoch and restarted; the others run on
    local = str(tmp_path / "cache2")
    outs = [str(tmp_path / f"b{r}.json") for r in range(RANKS)]
    mark = str(tmp_path / "rank3.started")
    procs = [_start(_cfg(remote, local, r, outs[r], **({"delay": 0.2, "progress": mark} if r == 3 else {})))
             for r in range(RANKS)]
    deadline = time.monotonic() + 120
    while not os.path.exists(mark):
        assert time.monotonic() < deadline and procs[3].poll() is None
        time.sleep(0.01)
    procs[3].send_signal(signal.SIGKILL)
    assert procs[3].wait(timeout=30) == -signal.SIGKILL
    assert not os.path.exists(outs[3])
    procs[3] = _start(_cfg(remote, local, 3, outs[3]))
    assert all(p.wait(timeout=240) == 0 for p in procs)
    res = [json.load(open(o)) for o in outs]
    ids = [i for r in res for i in r["ids"]]
    assert sorted(ids) == list(range(3200)), "after the kill and restart: every sample exactly once"
    assert sum(r["corrupt"] for r in res) == 0
    fetched = sum(r["metrics"]["l3_fetches"] + r["metrics"]["prefetched_shards"] for r in res)
    assert fetched <= shards, "no shard fetched twice by the ranks that finished"
    objects = [f for _, _, fs in os.walk(os.path.join(local, "objects")) for f in fs]
    assert len(objects) == shards
    assert not [f for f in os.listdir(os.path.join(local, "tmp")) if f.endswith(".part")]
