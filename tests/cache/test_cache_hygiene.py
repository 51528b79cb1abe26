"""What a new user hit (issue 15): metrics files piling up in the cache directory, and a plain
DataLoader over the ragged ``tokens`` column failing inside torch."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from winnow.cache import INDEX_KEY, StreamingDataLoader, StreamingDataset
from winnow.cache.metrics import ORPHAN_AGE_S, sweep
from winnow.errors import CacheError


def make(remote, local, **kw):
    args = dict(remote=remote, local=str(local), cache_limit="64MB", columns=["tokens"], batch_size=48,
                shuffle_block=600, seed=5)
    args.update(kw)
    return StreamingDataset(**args)


def files(local) -> list[str]:
    d = os.path.join(str(local), "metrics")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


@pytest.mark.timeout(180)
def test_metrics_files_stay_one_per_worker_and_go_with_the_dataset(fixed, tmp_path):
    ds = make(fixed, tmp_path, batched=True)
    loader = StreamingDataLoader(ds, num_workers=2)
    for epoch in range(3):
        ds.set_epoch(epoch)
        assert sum(len(b[INDEX_KEY]) for b in loader) == 2400
        snaps = [f for f in files(tmp_path) if f.endswith(".json")]
        assert len(snaps) <= 2, snaps  # one per worker slot, not one per worker per epoch
    assert ds.metrics()["samples"] == 3 * 2400  # earlier epochs' workers still count
    ds.close()  # folds the exited workers' files into the dataset
    assert not [f for f in files(tmp_path) if f.endswith(".json")]
    assert ds.metrics()["samples"] == 3 * 2400
    del loader, ds
    gc.collect()
    assert files(tmp_path) == []  # nothing left of the run

    second = make(fixed, tmp_path, batched=True)  # the next run starts clean too
    assert sum(len(b[INDEX_KEY]) for b in StreamingDataLoader(second, num_workers=2)) == 2400
    assert second.metrics()["samples"] == 2400


@pytest.mark.timeout(180)
def test_files_of_a_killed_run_are_removed_by_the_next_one(fixed, tmp_path):
    script = textwrap.dedent(f"""
        import os, signal
        from winnow.cache import StreamingDataLoader, StreamingDataset
        ds = StreamingDataset(remote={fixed!r}, local={str(tmp_path)!r}, cache_limit="64MB", columns=["tokens"],
                              batch_size=48, shuffle_block=600, batched=True)
        for _ in StreamingDataLoader(ds, num_workers=2):
            pass
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=150)
    assert r.returncode == -9, r.stderr
    left = files(tmp_path)
    assert any(f.endswith(".json") for f in left), left  # a killed run cannot clean up after itself
    ds = make(fixed, tmp_path)
    assert files(tmp_path) == [f"{ds.session}.lock"]

    # A worker's file written after its session ended (no session lock beside it) goes once old.
    d = os.path.join(str(tmp_path), "metrics")
    stale, fresh = os.path.join(d, "0123456789ab-w0.json"), os.path.join(d, "ba9876543210-w0.json")
    for p in (stale, fresh):
        with open(p, "w") as f:
            f.write("{}")
    old = time.time() - ORPHAN_AGE_S - 5
    os.utime(stale, (old, old))
    assert sweep(d) == 1
    assert not os.path.exists(stale) and os.path.exists(fresh)
    assert f"{ds.session}.lock" in files(tmp_path)  # a live session is never swept


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 2])
def test_plain_dataloader_over_ragged_tokens_says_what_to_use(ragged_zstd, tmp_path, workers):
    ds = make(ragged_zstd, tmp_path, batch_size=8)
    with pytest.raises(CacheError) as e:
        next(iter(torch.utils.data.DataLoader(ds, batch_size=8, num_workers=workers)))
    msg = str(e.value)
    assert "'tokens'" in msg and "batched=True" in msg and "TokenPacker" in msg
    assert "resize storage" not in msg

    steps = make(ragged_zstd, tmp_path, batch_size=8, batched=True)
    with pytest.raises(CacheError, match="batch_size=None"):
        next(iter(torch.utils.data.DataLoader(steps, batch_size=8, num_workers=workers)))


def test_ragged_samples_still_work_where_they_did(ragged_zstd, tmp_path):
    ds = make(ragged_zstd, tmp_path, batch_size=8)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, collate_fn=list)))
    assert len(batch) == 8 and all(isinstance(s, dict) and isinstance(s["tokens"], np.ndarray) for s in batch)
    lens = {len(s["tokens"]) for s in batch}
    assert len(lens) > 1  # the rows really are ragged
    step = next(iter(torch.utils.data.DataLoader(make(ragged_zstd, tmp_path, batch_size=8, batched=True),
                                                 batch_size=None)))
    assert step["tokens_offsets"].shape == (9,) and step["tokens"].numel() == int(step["tokens_offsets"][-1])
