"""Token packing, pinned collation and the CUDA prefetcher (CPU fallback here), and mixing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from winnow.cache import (INDEX_KEY, SOURCE_KEY, CudaPrefetcher, MixedDataset, StreamingDataLoader,
                          TokenPacker, WeightSchedule, pinned_collate)
from winnow.cache.gpu import cuda_ready, to_device
from winnow.cache.packing import pack_positions
from winnow.cache.synth import expected_tokens, sample_length, write_token_shards
from winnow.errors import ConfigError

from .datasets import ds


@pytest.fixture(scope="module")
def ragged(tmp_path_factory):
    root = tmp_path_factory.mktemp("pk")
    write_token_shards(str(root), num_samples=600, rows_per_shard=150, lengths=(5, 40))
    return str(root)


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("fx")
    write_token_shards(str(root), num_samples=480, rows_per_shard=120, lengths=(16, 16))
    return str(root)


class Recording:
    """A batched source that remembers what it handed out."""

    def __init__(self, inner):
        self.inner, self.batches = inner, []

    def __iter__(self):
        for b in self.inner:
            self.batches.append(b)
            yield b


def test_pack_positions_restart_per_document():
    doc, pos = pack_positions(np.array([0, 3, 4]), 7)
    assert doc.tolist() == [0, 0, 0, 1, 2, 2, 2]
    assert pos.tolist() == [0, 1, 2, 0, 0, 1, 2]


@pytest.mark.parametrize("eos", [None, 50999])
def test_packer_preserves_the_token_stream_and_masks_documents(ragged, tmp_path, eos):
    src = Recording(ds(ragged, tmp_path))
    packer = TokenPacker(src, seq_len=64, batch_size=4, eos_id=eos, doc_mask=True, drop_remainder=False)
    out = list(packer)
    stream = []
    for b in src.batches:
        for k, i in enumerate(b[INDEX_KEY].tolist()):
            o = b["tokens_offsets"]
            toks = b["tokens"][o[k]:o[k + 1]].numpy()
            assert np.array_equal(toks, expected_tokens(i, int(sample_length(i, (5, 40)))))
            stream += toks.tolist() + ([eos] if eos is not None else [])
    flat = torch.cat([b["input_ids"].reshape(-1) for b in out]).numpy()
    assert all(b["input_ids"].shape == (4, 64) and b["input_ids"].dtype == torch.int32 for b in out)
    assert flat[:len(stream)].tolist() == stream
    assert (flat[len(stream):] == 0).all() and len(flat) - len(stream) < 4 * 64
    last = out[-1]["doc_ids"].reshape(-1)
    assert (last[len(stream) - (len(out) - 1) * 256:] == -1).all()
    for b in out:  # a position restarts exactly where a new document (or row) starts
        d, p = b["doc_ids"].numpy(), b["position_ids"].numpy()
        assert np.isin(d[:, 0], [0, -1]).all() and (p[:, 0] == 0).all()
        same = d[:, 1:] == d[:, :-1]
        valid = d[:, 1:] >= 0
        assert ((p[:, 1:] == p[:, :-1] + 1) == same)[valid].all()


def test_packer_accepts_fixed_length_batches_and_drops_remainder(fixed, tmp_path):
    out = list(TokenPacker(ds(fixed, tmp_path), seq_len=100, batch_size=2))
    assert len(out) == (480 * 16) // 200 and "doc_ids" not in out[0]
    with pytest.raises(ConfigError):
        TokenPacker([], seq_len=0, batch_size=1)


@pytest.mark.timeout(60)
def test_packer_in_dataloader_workers(ragged, tmp_path):
    packer = TokenPacker(ds(ragged, tmp_path), seq_len=32, batch_size=8, eos_id=0)
    n = sum(b["input_ids"].numel() for b in torch.utils.data.DataLoader(packer, batch_size=None, num_workers=2))
    total = int(sample_length(np.arange(600), (5, 40)).sum()) + 600
    assert total - 2 * 8 * 32 < n <= total


def test_pinned_collate_falls_back_without_cuda(fixed, tmp_path):
    d = ds(fixed, tmp_path, batched=False, batch_size=12)
    loader = StreamingDataLoader(d, collate_fn=pinned_collate)
    b = next(iter(loader))
    assert b["tokens"].shape == (12, 16)
    assert b["tokens"].is_pinned() == cuda_ready()
    for k, i in enumerate(b[INDEX_KEY].tolist()):
        assert np.array_equal(b["tokens"][k].numpy(), expected_tokens(i, 16))


def test_cuda_prefetcher_yields_the_same_batches_on_cpu(fixed, tmp_path):
    ref = [b[INDEX_KEY].tolist() for b in StreamingDataLoader(ds(fixed, tmp_path))]
    pf = CudaPrefetcher(StreamingDataLoader(ds(fixed, tmp_path)), device="cpu", depth=3)
    got = []
    for b in pf:
        assert b["tokens"].device.type == "cpu"
        got.append(b[INDEX_KEY].tolist())
    assert got == ref and len(pf) == len(ref)
    nested = to_device({"a": torch.ones(2), "b": [torch.zeros(1)], "c": "x"}, torch.device("cpu"))
    assert nested["c"] == "x" and nested["b"][0].shape == (1,)


def test_weight_schedule_interpolates_and_validates():
    s = WeightSchedule([(0, [1, 0]), (100, [0, 1])])
    w = s(np.array([0, 50, 100, 1000]))
    assert np.allclose(w[:, 1], [0, 0.5, 1, 1])
    st = WeightSchedule([(0, [3, 1]), (10, [1, 1])], mode="step")
    assert np.allclose(st(np.array([9, 10])), [[0.75, 0.25], [0.5, 0.5]])
    with pytest.raises(ConfigError):
        WeightSchedule([(0, [1, -1])])
    with pytest.raises(ConfigError):
        WeightSchedule([(5, [1]), (5, [1])])


@pytest.mark.timeout(90)
def test_mixing_follows_weights_is_deterministic_and_resumes(fixed, ragged, tmp_path):
    def build(**kw):
        return MixedDataset([ds(fixed, tmp_path), ds(ragged, tmp_path, seed=2)], steps=300, seed=9, **kw)

    sched = WeightSchedule([(0, [0.9, 0.1]), (300, [0.1, 0.9])])
    a = [(int(b[SOURCE_KEY]), b[INDEX_KEY].tolist()) for b in StreamingDataLoader(build(schedule=sched))]
    b = [(int(x[SOURCE_KEY]), x[INDEX_KEY].tolist())
         for x in StreamingDataLoader(build(schedule=sched), num_workers=2)]
    assert a == b and len(a) == 300
    src = np.array([k for k, _ in a])
    assert src[:100].mean() < 0.35 and src[-100:].mean() > 0.65  # the curriculum moves the mix
    fixed_ids = [i for k, ids in a if k == 0 for i in ids]
    per_epoch = 480
    assert sorted(fixed_ids[:per_epoch]) == list(range(480))  # a source's epoch is still exactly once
    loader = StreamingDataLoader(build(schedule=sched))
    it = iter(loader)
    for _ in range(111):
        next(it)
    state = loader.state_dict()
    resumed = build(schedule=sched)
    resumed.load_state_dict(state)
    rest = [(int(x[SOURCE_KEY]), x[INDEX_KEY].tolist()) for x in StreamingDataLoader(resumed, num_workers=2)]
    assert rest == a[111:]
    const = [int(x[SOURCE_KEY]) for x in build(weights=[1, 3])]
    assert 0.65 < np.mean(const) < 0.85
    with pytest.raises(ConfigError):
        build(weights=[1, 1, 1])


@pytest.mark.timeout(90)
def test_mixing_resume_reaches_persistent_workers(fixed, ragged, tmp_path):
    def build():
        return MixedDataset([ds(fixed, tmp_path), ds(ragged, tmp_path, seed=2)], steps=120, seed=9, weights=[1, 1])

    ref = [(int(b[SOURCE_KEY]), b[INDEX_KEY].tolist()) for b in StreamingDataLoader(build())]
    mixed = build()
    loader = StreamingDataLoader(mixed, num_workers=2, persistent_workers=True)
    assert [(int(b[SOURCE_KEY]), b[INDEX_KEY].tolist()) for b in loader] == ref
    mixed.load_state_dict({"version": 1, "step": 45, "seed": 9})
    rest = [(int(b[SOURCE_KEY]), b[INDEX_KEY].tolist()) for b in loader]  # the same worker processes
    assert rest == ref[45:]
