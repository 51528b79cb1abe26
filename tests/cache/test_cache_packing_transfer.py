"""TokenPacker's boundaries mode, GPU-side masks (on CPU here), packing straight into the
workers' recycled transfer segments, synthetic shards through winnow.shardio, L2 read-ahead."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pytest
import torch

from winnow.cache import StreamingDataLoader, TokenPacker, document_masks
from winnow.cache.loader import TransferChunk
from winnow.cache.packing import _row_starts, pack_positions
from winnow.cache.synth import expected_tokens, sample_length, write_token_shards
from winnow.errors import ConfigError

from .datasets import ds
from winnow.format import xxh3_128_hex


@pytest.fixture(scope="module")
def ragged(tmp_path_factory):
    root = tmp_path_factory.mktemp("pt")
    write_token_shards(str(root), num_samples=600, rows_per_shard=150, lengths=(3, 90))
    return str(root)


def test_document_masks_match_the_cpu_masks_for_random_boundaries():
    rng = np.random.default_rng(3)
    for rows, seq in [(1, 7), (3, 64), (8, 256)]:
        total = rows * seq
        starts = np.unique(np.concatenate([[0], rng.integers(0, total, size=rng.integers(0, total // 3 + 1))]))
        bounds = _row_starts(starts, rows, seq)
        assert bounds.shape[1] % 16 == 0 and (bounds[:, 0] == 0).all()
        doc, pos = document_masks(torch.from_numpy(bounds), seq)
        want_doc, want_pos = pack_positions(np.union1d(starts, np.arange(0, total, seq)), total)
        want_doc = want_doc.reshape(rows, seq)
        assert doc.dtype == torch.int32 and pos.dtype == torch.int32
        assert doc.numpy().tolist() == (want_doc - want_doc[:, :1]).tolist()
        assert pos.numpy().reshape(-1).tolist() == want_pos.tolist()


def test_boundaries_mode_equals_cpu_masks(ragged, tmp_path):
    a = list(TokenPacker(ds(ragged, tmp_path / "a"), seq_len=64, batch_size=4, eos_id=0, doc_mask=True))
    b = list(TokenPacker(ds(ragged, tmp_path / "b"), seq_len=64, batch_size=4, eos_id=0, boundaries=True))
    assert len(a) == len(b) > 10
    for x, y in zip(a, b):
        assert torch.equal(x["input_ids"], y["input_ids"]) and "doc_ids" not in y
        doc, pos = document_masks(y["doc_starts"], 64)
        assert torch.equal(doc, x["doc_ids"]) and torch.equal(pos, x["position_ids"])
    with pytest.raises(ConfigError):
        TokenPacker([], seq_len=4, batch_size=1, doc_mask=True, boundaries=True)


class _Steps:
    """The dataset's steps through a plain iterable: the packer then gets gathered (copied) steps."""

    def __init__(self, inner):
        self.inner = inner

    def __iter__(self):
        return iter(self.inner)


@pytest.mark.parametrize("eos,mode", [(None, "boundaries"), (50999, "boundaries"), (7, "doc_mask"), (None, "doc_mask")])
def test_packer_copies_documents_once_from_the_shards_with_the_same_batches(ragged, tmp_path, monkeypatch, eos, mode):
    """Over a StreamingDataset the packer takes each step's documents where they lie in the mapped
    shards (RaggedRefs) and copies them once into its batch: the batches equal those packed from
    gathered steps, documents straddling rows and batches included."""
    from winnow.cache.memory import RaggedRefs

    used = []
    orig = RaggedRefs.rows

    def spy(self):
        used.append(len(self))
        return orig(self)

    monkeypatch.setattr(RaggedRefs, "rows", spy)
    kw = dict(seq_len=32, batch_size=3, eos_id=eos, drop_remainder=False, **{mode: True})
    src = ds(ragged, tmp_path / "a")
    direct = list(TokenPacker(src, **kw))
    assert sum(used) == 600 and src._ragged_refs is False  # every document by reference; flag reset after
    used.clear()
    copied = list(TokenPacker(_Steps(ds(ragged, tmp_path / "b")), **kw))
    assert not used and len(direct) == len(copied) > 100
    for a, b in zip(direct, copied):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k


@pytest.mark.timeout(120)
def test_packer_ships_whole_batches_in_recycled_segments(ragged, tmp_path, monkeypatch):
    """Under StreamingDataLoader with workers a packed batch crosses as one TransferChunk in a
    recycled segment, and every document's tokens arrive exactly once, intact."""
    shipped = []
    orig = TransferChunk.split

    def spy(self):
        shipped.append(self.slot is not None or self.buf.is_shared())
        return orig(self)

    monkeypatch.setattr(TransferChunk, "split", spy)
    packer = TokenPacker(ds(ragged, tmp_path), seq_len=32, batch_size=8, eos_id=50999, boundaries=True,
                         drop_remainder=False)
    loader = StreamingDataLoader(packer, num_workers=2)
    batches = list(loader)
    assert shipped and all(shipped) and len(shipped) == len(batches)
    eos, ids = 0, []
    first = {int(expected_tokens(k, 1)[0]): k for k in range(600)}  # 31 * k mod 50021: unique here
    for b in batches:
        assert b["input_ids"].shape == (8, 32) and b["doc_starts"].shape[0] == 8
        flat = b["input_ids"].reshape(-1).numpy()
        cut = np.flatnonzero(flat == 50999)
        eos += len(cut)
        for lo, hi in zip(cut[:-1] + 1, cut[1:]):  # whole documents inside one batch
            k = first[int(flat[lo])]
            assert np.array_equal(flat[lo:hi], expected_tokens(k, int(sample_length(k, (3, 90)))))
            ids.append(k)
    assert eos == 600  # every document ended exactly once (drop_remainder=False keeps all)
    assert len(ids) == len(set(ids)) > 300


def test_synth_shards_are_written_by_shardio(tmp_path):
    m = write_token_shards(str(tmp_path), num_samples=50, rows_per_shard=20, lengths=(4, 9), rows_per_batch=7)
    idx = json.loads(open(tmp_path / "index.json").read())
    assert len(m.shards) == 3 and len(idx["shards"]) == 3
    for info in m.shards:
        data = open(tmp_path / info.path, "rb").read()
        assert len(data) == info.bytes and xxh3_128_hex(data) == info.xxh3_128
        r = pa.ipc.open_file(pa.py_buffer(data))
        assert r.num_record_batches == -(-info.rows // 7)
    assert not [f for f in os.listdir(tmp_path / "shards") if not f.endswith(".arrow")]


def test_l2_shard_is_read_ahead_on_first_touch(ragged, tmp_path, monkeypatch):
    calls = []
    real = os.posix_fadvise

    def spy(fd, off, length, advice):
        calls.append(advice)
        return real(fd, off, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    d = ds(ragged, tmp_path)
    d.step(0)
    assert os.POSIX_FADV_WILLNEED in calls
