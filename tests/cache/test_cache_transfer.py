"""Transfer chunks: workers ship ``transfer_steps`` steps per DataLoader item, the loader splits them.

The trainer must see exactly what ``num_workers=0`` gives (same steps, same order, same tensors),
resume must count single steps, and a plain DataLoader must never receive chunks as batches.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from winnow.cache import INDEX_KEY, StreamingDataLoader, StreamingDataset
from winnow.cache import loader as loader_mod
from winnow.cache.loader import POOL_SLOTS, TransferChunk
from winnow.cache.order import worker_chunks, worker_steps
from winnow.cache.synth import expected_tokens, sample_length
from winnow.errors import ConfigError


def make(remote, local, **kw):
    args = dict(remote=remote, local=str(local), cache_limit="64MB", memory_limit="64MB", shuffle=True, seed=5,
                batch_size=48, shuffle_block=600, columns=["tokens"], batched=True)
    args.update(kw)
    return StreamingDataset(**args)


def steps_of(loader):
    return [{k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in b.items()} for b in loader]


def assert_same(ref, got):
    assert len(got) == len(ref)
    for s, (a, b) in enumerate(zip(ref, got)):
        assert list(a) == list(b), f"step {s}: keys {list(a)} != {list(b)}"
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), f"step {s}, {key}"
            else:
                assert a[key] == b[key], f"step {s}, {key}"


def check_content(batch, lengths):
    offs = batch.get("tokens_offsets")
    for j, i in enumerate(batch[INDEX_KEY].tolist()):
        got = batch["tokens"][j] if offs is None else batch["tokens"][offs[j]:offs[j + 1]]
        assert np.array_equal(got.numpy(), expected_tokens(i, int(sample_length(i, lengths))))


@pytest.fixture
def split_calls(monkeypatch):
    """Counts the chunks the main process split (proves chunks really travelled)."""
    calls = []
    orig = TransferChunk.split

    def spy(self):
        calls.append(len(self))
        return orig(self)

    monkeypatch.setattr(TransferChunk, "split", spy)
    return calls


def test_worker_chunks_deal_every_step_once_in_dataloader_order():
    for steps in (0, 1, 7, 50, 64):
        for W in (1, 2, 3):
            for k in (1, 3, 8):
                per = [worker_chunks(steps, w, W, k) for w in range(W)]
                # a DataLoader takes one item per worker, round-robin, skipping exhausted workers
                seq, i = [], [0] * W
                while any(i[w] < len(per[w]) for w in range(W)):
                    for w in range(W):
                        if i[w] < len(per[w]):
                            seq += list(per[w][i[w]])
                            i[w] += 1
                assert seq == list(range(steps))
                assert all(len(c) == k for p in per for c in p[:-1]) or k == 1
                for w in range(W):
                    assert list(worker_steps(steps, w, W, k)) == [s for c in per[w] for s in c]
    assert worker_steps(10, 1, 3) == range(1, 10, 3)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("k", [1, 3, 8])
def test_global_order_equals_in_process(fixed, tmp_path, workers, k, split_calls):
    ref = steps_of(StreamingDataLoader(make(fixed, tmp_path), num_workers=0))
    ds = make(fixed, tmp_path, transfer_steps=k)
    loader = StreamingDataLoader(ds, num_workers=workers)
    got = steps_of(loader)
    assert_same(ref, got)
    assert len(got) == len(loader) == 50 and all(len(b[INDEX_KEY]) == 48 for b in got)
    for b in got:
        check_content(b, (32, 32))
    # 50 steps in chunks of k (k=1 too: single steps also travel in recycled segments); the last
    # chunk is short unless k divides 50
    assert sorted(split_calls) == sorted([k] * (50 // k) + ([50 % k] if 50 % k else []))
    m = ds.metrics()
    assert m["steps"] == 50 and m["samples"] == 2400


@pytest.mark.timeout(240)
@pytest.mark.parametrize("workers,k", [(2, 3), (3, 8)])
def test_ragged_and_list_columns(ragged_zstd, tmp_path, workers, k, split_calls):
    cols = ["id", "tokens", "modality"]
    ref = steps_of(StreamingDataLoader(make(ragged_zstd, tmp_path, columns=cols), num_workers=0))
    got = steps_of(StreamingDataLoader(make(ragged_zstd, tmp_path, columns=cols, transfer_steps=k), num_workers=workers))
    assert_same(ref, got)
    assert "tokens_offsets" in got[0] and isinstance(got[0]["id"], list)
    for b in got:
        assert b["tokens_offsets"][0] == 0 and b["tokens_offsets"][-1] == len(b["tokens"])
        assert b["id"] == [f"s{i:09d}" for i in b[INDEX_KEY].tolist()]
        check_content(b, (3, 60))
    assert sum(split_calls) == len(ref) == 32 and max(split_calls) == k


@pytest.mark.timeout(240)
def test_default_chunks_through_streaming_loader_and_in_process_is_unchanged(fixed, tmp_path, split_calls):
    ref = steps_of(StreamingDataLoader(make(fixed, tmp_path), num_workers=0))
    assert split_calls == []  # no workers: no chunks, whatever transfer_steps says
    assert_same(ref, steps_of(StreamingDataLoader(make(fixed, tmp_path, transfer_steps=8), num_workers=0)))
    assert_same(ref, steps_of(make(fixed, tmp_path, transfer_steps=8)))  # iterated directly
    assert split_calls == []
    assert_same(ref, steps_of(StreamingDataLoader(make(fixed, tmp_path), num_workers=2)))
    assert split_calls and max(split_calls) == 8  # transfer_steps=None: 8 per item


@pytest.mark.timeout(240)
@pytest.mark.parametrize("before,after", [((2, 8), (3, 3)), ((3, 3), (2, 8)), ((2, 8), (0, 8))])
@pytest.mark.parametrize("stop", [13, 5])
def test_resume_at_a_step_inside_a_chunk_with_another_worker_count(fixed, tmp_path, before, after, stop):
    full = [i for b in StreamingDataLoader(make(fixed, tmp_path, batch_size=24)) for i in b[INDEX_KEY].tolist()]
    (w0, k0), (w1, k1) = before, after
    loader = StreamingDataLoader(make(fixed, tmp_path, batch_size=24, transfer_steps=k0), num_workers=w0)
    consumed = []
    for n, b in enumerate(loader):
        consumed += b[INDEX_KEY].tolist()
        if n + 1 == stop:  # not a multiple of k0: the rest of that chunk was received but not handed out
            break
    state = loader.state_dict()
    assert consumed == full[:stop * 24]
    ds2 = make(fixed, tmp_path, batch_size=24, transfer_steps=k1)
    l2 = StreamingDataLoader(ds2, num_workers=w1)
    l2.load_state_dict(state)
    assert len(l2) == 100 - stop
    rest = []
    for n, b in enumerate(l2):
        rest += b[INDEX_KEY].tolist()
        if n + 1 == 7:  # a second save/resume, again inside a chunk
            break
    state2 = l2.state_dict()
    l3 = StreamingDataLoader(make(fixed, tmp_path, batch_size=24, transfer_steps=k0), num_workers=w0)
    l3.load_state_dict(state2)
    rest += [i for b in l3 for i in b[INDEX_KEY].tolist()]
    assert consumed + rest == full
    ds2.set_epoch(1)
    assert len(ds2) == 100


@pytest.mark.timeout(240)
def test_plain_dataloader_never_gets_chunks(fixed, tmp_path):
    ref = steps_of(StreamingDataLoader(make(fixed, tmp_path), num_workers=0))
    # default transfer_steps: a plain DataLoader just gets single steps, in order
    got = steps_of(DataLoader(make(fixed, tmp_path), batch_size=None, num_workers=2))
    assert all(isinstance(b, dict) for b in got)
    assert_same(ref, got)
    # explicit transfer_steps > 1: still single steps (the worker warns that it cannot chunk)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = steps_of(DataLoader(make(fixed, tmp_path, transfer_steps=8), batch_size=None, num_workers=2))
    assert_same(ref, got)
    # and the same dataset then used through a StreamingDataLoader chunks again
    assert_same(ref, steps_of(StreamingDataLoader(make(fixed, tmp_path, transfer_steps=8), num_workers=2)))


@pytest.mark.timeout(120)
def test_per_sample_mode_ignores_transfer_steps(fixed, tmp_path, split_calls):
    ref = [b[INDEX_KEY].tolist() for b in StreamingDataLoader(make(fixed, tmp_path), num_workers=0)]
    ds = make(fixed, tmp_path, batched=False, transfer_steps=8)
    got = [b[INDEX_KEY].tolist() for b in StreamingDataLoader(ds, num_workers=2)]
    assert got == ref and split_calls == []


def test_bad_transfer_steps(fixed, tmp_path):
    for bad in (0, -1, 2.0, True, "8"):
        with pytest.raises(ConfigError):
            make(fixed, tmp_path, transfer_steps=bad)


def test_pack_split_round_trip_every_kind():
    def step(n, base, width):
        ids = np.arange(base, base + n, dtype=np.int64)
        lens = (ids % 5).astype(np.int64)
        offs = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lens, out=offs[1:])
        return {INDEX_KEY: ids, "fixed": (ids * 2).astype(np.int32),
                "grid": np.repeat(ids[:, None], 4, axis=1).astype(np.int16),
                "rag": (np.arange(offs[-1], dtype=np.int32) + base, offs),
                "txt": [f"t{i}" for i in ids.tolist()],
                "odd": np.zeros((n, width), dtype=np.float32)}  # width differs between steps

    steps = [step(5, 0, 2), step(5, 5, 3), step(3, 10, 3)]
    chunk = TransferChunk.pack(steps)
    assert len(chunk) == 3 and chunk.rows == (5, 5, 3)
    kinds = {n: k for n, k, _ in chunk.fields}
    assert kinds == {INDEX_KEY: "cat", "fixed": "cat", "grid": "cat", "rag": "ragged", "txt": "list", "odd": "each"}
    # every fixed-type array travels in the one buffer: one shared-memory segment per item
    assert chunk.buf.dtype == torch.uint8 and chunk.buf.numel() >= 13 * (8 + 4 + 8) + 14 * 8
    back = chunk.split()
    for s, b in zip(steps, back):
        assert list(b) == [INDEX_KEY, "fixed", "grid", "rag", "rag_offsets", "txt", "odd"]
        assert torch.equal(b[INDEX_KEY], torch.from_numpy(s[INDEX_KEY]))
        assert torch.equal(b["fixed"], torch.from_numpy(s["fixed"]))
        assert torch.equal(b["grid"], torch.from_numpy(s["grid"]))
        assert torch.equal(b["rag"], torch.from_numpy(s["rag"][0]))
        assert torch.equal(b["rag_offsets"], torch.from_numpy(s["rag"][1]))
        assert b["txt"] == s["txt"] and b["odd"].shape == s["odd"].shape
    # the steps' arrays are views of the chunk's buffer, not copies
    base = chunk.buf.untyped_storage().data_ptr()
    for b in back:
        for key in (INDEX_KEY, "fixed", "grid", "rag"):
            assert b[key].untyped_storage().data_ptr() == base
    assert torch.equal(back[2]["rag_offsets"], torch.from_numpy(steps[2]["rag"][1]))


@pytest.mark.timeout(240)
def test_recycled_buffers_never_overwrite_steps_the_trainer_holds(fixed, tmp_path):
    """Hold every step of an epoch (more chunks than a worker has slots): none may be overwritten."""
    ds = make(fixed, tmp_path, transfer_steps=2)
    held = list(StreamingDataLoader(ds, num_workers=2))  # 50 steps = 25 chunks, about 13 per worker > 8 slots
    assert len(held) == 50
    for b in held:
        check_content(b, (32, 32))
    assert sorted(i for b in held for i in b[INDEX_KEY].tolist()) == list(range(2400))
    m = ds.metrics()
    assert m["transfer_fresh"] > 0 and m["transfer_recycled"] + m["transfer_fresh"] == 25


@pytest.mark.timeout(240)
def test_steps_dropped_by_the_trainer_free_their_buffers_for_reuse(fixed, tmp_path):
    ds = make(fixed, tmp_path, transfer_steps=2)
    loader = StreamingDataLoader(ds, num_workers=2)
    for epoch in range(2):
        ds.set_epoch(epoch)
        n = 0
        for b in loader:  # each step is checked, then dropped
            check_content(b, (32, 32))
            n += 1
        assert n == 50
    m = ds.metrics()
    # in flight per worker: prefetch_factor (2) queued + 1 being split + 1 being packed < 8 slots
    assert m["transfer_recycled"] == 50 and m["transfer_fresh"] == 0


@pytest.mark.timeout(240)
def test_views_derived_from_steps_keep_their_buffer_busy(fixed, tmp_path):
    """Only NumPy views of slices survive the loop: they alone must keep the chunk's segment busy."""
    ds = make(fixed, tmp_path, transfer_steps=2)
    kept = [(b[INDEX_KEY][1:].numpy(), b["tokens"][1:, 3:9].numpy()) for b in StreamingDataLoader(ds, num_workers=2)]
    for ids, toks in kept:
        for i, row in zip(ids.tolist(), toks):
            assert np.array_equal(row, expected_tokens(i, 32)[3:9]), f"sample {i} overwritten"
    assert len({i for ids, _ in kept for i in ids.tolist()}) == 50 * 47


@pytest.mark.timeout(240)
@pytest.mark.parametrize("batched", [True, False])
def test_persistent_workers_follow_set_epoch_and_resume(fixed, tmp_path, batched):
    """Persistent workers keep their copy of the dataset: epoch and resume point must still reach them."""
    def ref(epoch):
        ds0 = make(fixed, tmp_path, batched=batched)
        ds0.set_epoch(epoch)
        return [b[INDEX_KEY].tolist() for b in StreamingDataLoader(ds0, num_workers=0)]

    ds = make(fixed, tmp_path, batched=batched)
    loader = StreamingDataLoader(ds, num_workers=2, persistent_workers=True)
    seen = {}
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        seen[epoch] = [b[INDEX_KEY].tolist() for b in loader]
        assert seen[epoch] == ref(epoch), f"epoch {epoch} differs from num_workers=0"
    assert seen[0] != seen[1]
    workers = loader._iterator._workers
    # resume 37% into epoch 2 with the same (still running) workers
    ds.set_epoch(2)
    it = iter(loader)
    first = [next(it)[INDEX_KEY].tolist() for _ in range(18)]
    state = loader.state_dict()
    del it
    loader.load_state_dict(state)
    rest = [b[INDEX_KEY].tolist() for b in loader]
    assert loader._iterator._workers == workers  # the same processes served every iteration
    assert first + rest == ref(2)


@pytest.mark.timeout(240)
def test_a_recycled_segment_is_mapped_once_then_sent_by_reference(fixed, tmp_path, monkeypatch):
    """One step per item (50 items, 2 workers): each worker's segments cross as descriptors once;
    every other item names a segment the main process already maps, and still holds its own data."""
    monkeypatch.setattr(loader_mod, "RECEIVED", {"mapped": 0, "by_reference": 0})
    ds = make(fixed, tmp_path, transfer_steps=1)
    before = set(loader_mod._SEGS)
    n = 0
    for b in StreamingDataLoader(ds, num_workers=2):
        check_content(b, (32, 32))
        n += 1
    got = loader_mod.RECEIVED
    assert n == 50 and got["mapped"] + got["by_reference"] == 50
    assert 2 <= got["mapped"] <= 2 * POOL_SLOTS and got["by_reference"] >= 50 - 2 * POOL_SLOTS
    assert set(loader_mod._SEGS) <= before  # the finished iterator's mappings were dropped
