"""Exact mid-epoch resume of TokenPacker through a StreamingDataLoader (in-process and with
workers) and through a CudaPrefetcher (with a CPU stand-in for the CUDA calls); TokenPacker's
argument checks."""

from __future__ import annotations

import logging
import time

import pytest
import torch

from winnow.cache import INDEX_KEY, CudaPrefetcher, StreamingDataLoader, TokenPacker
from winnow.errors import CacheError, ConfigError

from tests.cache.datasets import ds


class _Ops:
    """CudaPrefetcher's CUDA calls as no-ops: the same feed-thread bookkeeping as on a GPU."""

    def thread_start(self): pass
    def pin(self, t): return t
    def register(self, ptr, nbytes): return None
    def copy(self, b): return b, None
    def hand_over(self, g, e): pass
    def done(self, e): return True
    def sync(self): pass


def _packer(root, tmp_path, **kw):
    args = dict(seq_len=64, batch_size=4, eos_id=2)
    args.update(kw)
    return TokenPacker(ds(root, tmp_path / "c"), **args)


def _ids(loader, key="input_ids"):
    return [b[key].clone() for b in loader]


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("nw", [0, 2])
def test_packer_resume_is_exact(ragged_zstd, tmp_path, nw):
    full = _ids(StreamingDataLoader(_packer(ragged_zstd, tmp_path), num_workers=nw))
    assert len(full) > 20
    ks = [1, 2, 5, 13, len(full) - 1]
    mid_step = 0
    for k in ks:
        loader = StreamingDataLoader(_packer(ragged_zstd, tmp_path), num_workers=nw)
        it = iter(loader)
        got = [next(it)["input_ids"].clone() for _ in range(k)]
        state = loader.state_dict()
        del it
        mid_step += any(t for _, t in state["pos"])  # a worker stopped inside a source step
        again = StreamingDataLoader(_packer(ragged_zstd, tmp_path), num_workers=nw)
        again.load_state_dict(state)
        rest = _ids(again)
        assert _same(got + rest, full), (nw, k)
        # a second resume from the resumed run's state is exact too
        if k == 5:
            third = StreamingDataLoader(_packer(ragged_zstd, tmp_path), num_workers=nw)
            third.load_state_dict(state)
            it = iter(third)
            more = [next(it)["input_ids"].clone() for _ in range(3)]
            st2 = third.state_dict()
            del it
            fourth = StreamingDataLoader(_packer(ragged_zstd, tmp_path), num_workers=nw)
            fourth.load_state_dict(st2)
            assert _same(got + more + _ids(fourth), full)
    assert mid_step  # the cases cover a position inside a source step


def test_packer_resume_needs_same_workers(ragged_zstd, tmp_path):
    loader = StreamingDataLoader(_packer(ragged_zstd, tmp_path), num_workers=2)
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    del it
    other = StreamingDataLoader(_packer(ragged_zstd, tmp_path), num_workers=0)
    other.load_state_dict(state)
    with pytest.raises(CacheError, match="num_workers"):
        iter(other)


@pytest.mark.parametrize("nw", [0, 2])
@pytest.mark.parametrize("pack", [False, True])
def test_prefetcher_state_is_what_it_handed_out(ragged_zstd, tmp_path, nw, pack):
    make = (lambda: _packer(ragged_zstd, tmp_path)) if pack else (lambda: ds(ragged_zstd, tmp_path / "c"))
    key = "input_ids" if pack else INDEX_KEY
    full = _ids(StreamingDataLoader(make(), num_workers=nw), key)
    loader = StreamingDataLoader(make(), num_workers=nw)
    pf = CudaPrefetcher(loader, device="cpu", depth=3, ops=_Ops())
    seen = []
    for i, b in enumerate(pf):
        seen.append(b[key].clone())
        time.sleep(0.01)  # the training step: the feed thread runs ahead meanwhile
        if i == 9:
            state = pf.state_dict()
            assert loader._yielded > 10  # the loader itself is ahead
            break
    again = StreamingDataLoader(make(), num_workers=nw)
    again.load_state_dict(state)
    assert _same(seen + _ids(CudaPrefetcher(again, device="cpu", ops=_Ops()), key), full)


def test_loader_state_after_resumed_epoch_is_its_end(ragged_zstd, tmp_path):
    d = ds(ragged_zstd, tmp_path / "c")
    loader = StreamingDataLoader(d, num_workers=0)
    it = iter(loader)
    for _ in range(4):
        next(it)
    state = loader.state_dict()
    del it
    again = StreamingDataLoader(ds(ragged_zstd, tmp_path / "c"), num_workers=0)
    again.load_state_dict(state)
    list(again)
    end = again.state_dict()
    assert end["start"] == d.plan().total  # the whole epoch, not the remainder counted from 0


def test_packer_checks(ragged_zstd, tmp_path, caplog):
    per_sample = ds(ragged_zstd, tmp_path / "c", batched=False)
    with pytest.raises(ConfigError, match="batched"):
        TokenPacker(per_sample, seq_len=64, batch_size=4)
    with pytest.raises(ConfigError, match="input_ids"):
        TokenPacker(ds(ragged_zstd, tmp_path / "c"), seq_len=64, batch_size=4, column="input_ids")
    p = _packer(ragged_zstd, tmp_path)
    with pytest.raises(TypeError, match="not known before packing"):
        len(p)
    huge = _packer(ragged_zstd, tmp_path, seq_len=1 << 16, batch_size=64)
    with caplog.at_level(logging.WARNING, logger="winnow.cache.packing"):
        assert list(huge) == []
        assert list(huge) == []
    assert sum("no batch" in r.getMessage() for r in caplog.records) == 1
