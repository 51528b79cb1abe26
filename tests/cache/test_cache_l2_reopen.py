"""L2 re-opens: a shard this process parsed once is mapped and sliced again without the Arrow
parse (the parse waits on a pyarrow I/O thread, the tail of random L2 access on busy cores), and
a footer changed in place is parsed, and so checked, again."""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa
import pytest

from winnow.cache import shard as shard_mod
from winnow.cache.shard import ShardReader
from winnow.cache.synth import expected_tokens, write_token_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("reopen")
    write_token_shards(str(root), num_samples=300, rows_per_shard=100, lengths=(8, 8))
    return sorted(os.path.join(root, "shards", f) for f in os.listdir(os.path.join(root, "shards")))


def rows(rd: ShardReader, picks: list[int]) -> np.ndarray:
    arr, first = rd.direct["tokens"]
    if first is None:
        return arr[picks]
    bi = rd.batch_start.searchsorted(picks, side="right") - 1
    return arr[first[bi] + (np.asarray(picks) - rd.batch_start[bi]) * arr.shape[1]]


def test_reopen_reuses_the_parsed_layout_and_reads_the_same_rows(shards, monkeypatch):
    kinds = {"tokens": "ragged"}
    path = shards[1]
    first = ShardReader(path, kinds, compressed=False)
    want = rows(first, [0, 7, 99])
    first.close()

    def no_parse(*a, **k):
        raise AssertionError("the Arrow footer was parsed again")

    monkeypatch.setattr(pa.ipc, "open_file", no_parse)
    again = ShardReader(path, kinds, compressed=False)
    got = rows(again, [0, 7, 99])
    assert np.array_equal(got, want)
    ids = [100 + k for k in (0, 7, 99)]  # shard 1 holds samples 100..199
    assert all(np.array_equal(r, expected_tokens(i, 8)) for r, i in zip(got, ids))
    assert again.rows == first.rows and again.row_counts == first.row_counts
    again.close()


def test_footer_changed_in_place_is_parsed_again(shards, tmp_path):
    kinds = {"tokens": "ragged"}
    path = str(tmp_path / "victim.arrow")
    with open(shards[0], "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data)
    ShardReader(path, kinds, compressed=False).close()
    with open(path, "r+b") as f:  # same file, same size: damage the footer's magic
        f.seek(len(data) - 6)
        f.write(b"XXXXXX")
    with pytest.raises(pa.ArrowInvalid):
        ShardReader(path, kinds, compressed=False)


def test_layout_cache_is_bounded(shards, monkeypatch):
    monkeypatch.setattr(shard_mod, "_LAYOUTS_MAX", 2)
    for p in shards:
        ShardReader(p, {"tokens": "ragged"}, compressed=False).close()
    assert len(shard_mod._LAYOUTS) <= 2


def test_prefetch_parses_layouts_ahead_of_the_reader(shards, tmp_path, monkeypatch):
    """Shards the prefetcher finds (or puts) in L2 have their layout parsed in its threads, so the
    reader's first open of each only maps and slices it."""
    from winnow.cache import StreamingDataset

    remote = os.path.dirname(os.path.dirname(shards[0]))
    monkeypatch.setattr(shard_mod, "_LAYOUTS", type(shard_mod._LAYOUTS)())
    ds = StreamingDataset(remote=remote, local=str(tmp_path), cache_limit="16MB", columns=["tokens"], batch_size=10,
                          batched=True, shuffle_block=100)
    rt = ds._runtime()
    blocks = ds.order(0).blocks
    rt.prefetcher.start([list(b) for b in blocks])
    deadline = time.monotonic() + 30
    want = {rt.tier.cache.object_path(ds.manifest.shards[s].xxh3_128) for b in blocks for s in b}
    while time.monotonic() < deadline and {k[0] for k in shard_mod._LAYOUTS} != want:
        time.sleep(0.01)
    rt.prefetcher.stop()
    assert {k[0] for k in shard_mod._LAYOUTS} == want and not rt.tier.open  # parsed, none mapped by the reader

    def no_parse(*a, **k):
        raise AssertionError("the reader parsed a shard the prefetcher had parsed")

    monkeypatch.setattr(pa.ipc, "open_file", no_parse)
    got = sorted(i for b in ds for i in b["_index"].tolist())
    assert got == list(range(300))
