"""Configurations the loader refuses or accepts with a clear message: a global step larger than
the dataset, ``columns`` given as one string, and the advice of ``CacheFullError``."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from winnow.cache import INDEX_KEY, StreamingDataLoader, StreamingDataset
from winnow.cache.order import RankPlan, worker_steps
from winnow.cache.synth import write_token_shards
from winnow.errors import CacheFullError, ConfigError
from winnow.units import parse_size

SMALL = 207  # samples of the small run: six shards of 35 rows, the last one short


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    write_token_shards(str(root), num_samples=SMALL, rows_per_shard=35, lengths=(8, 8))
    return str(root)


@pytest.fixture(scope="module")
def one_shard(tmp_path_factory):
    root = tmp_path_factory.mktemp("one_shard")
    write_token_shards(str(root), num_samples=600, rows_per_shard=600, lengths=(64, 64))
    return str(root)


def make(remote, local, **kw):
    args = dict(remote=remote, local=str(local), cache_limit="64MB", columns=["tokens"], seed=9, batch_size=16,
                batched=True, shuffle_block=64)
    args.update(kw)
    return StreamingDataset(**args)


def epoch_ids(remote, local, world, **kw):
    """Every sample id all ranks of ``world`` read in one epoch (in-process, no workers)."""
    ids = []
    for r in range(world):
        ds = make(remote, local, rank=r, world_size=world, **kw)
        for b in StreamingDataLoader(ds, num_workers=0):
            ids += b[INDEX_KEY].tolist()
    return ids


# --- a global step larger than the dataset ------------------------------------------------------

@pytest.mark.parametrize("partition", ["interleave", "contiguous"])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("total, world, batch", [(207, 1, 1000), (207, 3, 100), (5, 8, 1), (1, 1, 2)])
def test_plan_refuses_an_epoch_below_one_global_step(total, world, batch, drop_last, partition):
    with pytest.raises(ConfigError) as e:
        RankPlan(total, world, 0, batch, drop_last, partition)
    msg = str(e.value)
    assert f"{batch} x {world} = {world * batch}" in msg and f"{total} samples" in msg
    assert ("no step" in msg) == drop_last


@pytest.mark.parametrize("partition", ["interleave", "contiguous"])
@pytest.mark.parametrize("world, batch", [(1, 7), (2, 5), (3, 4), (4, 16), (8, 3)])
def test_padding_at_the_edge_repeats_a_sample_at_most_once(world, batch, partition):
    """From one global step up: every sample is read, none more than twice, and (interleave) the
    wrap pads less than one global step."""
    g = world * batch
    for total in (g, g + 1, g + batch - 1, 2 * g - 1, 2 * g + 3):
        per_rank = []
        for r in range(world):
            plan = RankPlan(total, world, r, batch, False, partition)
            per_rank.append(plan.steps)
            for w in range(2):
                for s in worker_steps(plan.steps, w, 2):
                    per_rank.append(np.arange(plan.position(s), plan.position(s) + batch) % total)
        steps = [x for x in per_rank if isinstance(x, int)]
        pos = np.concatenate([x for x in per_rank if not isinstance(x, int)])
        assert len(set(steps)) == 1 and steps[0] >= 1
        counts = np.bincount(pos, minlength=total)
        assert (counts >= 1).all() and counts.max() <= 2, (total, counts.max())
        if partition == "interleave":
            assert len(pos) - total < g


def test_resume_into_the_last_global_step_is_not_refused():
    """The check is on the epoch, not on what is left of it after a resume."""
    plan = RankPlan(207, 3, 1, 50).resumed(4)  # 4 global steps of 150 reach the end
    assert plan.start == 207 and plan.steps == 0
    last = RankPlan(207, 3, 2, 50, start=150)
    assert last.steps == 1 and last.position(0) == 250


@pytest.mark.parametrize("kw", [dict(batch_size=1000), dict(batch_size=1000, drop_last=True),
                                dict(batch_size=1000, batched=False), dict(batch_size=100, world_size=3)])
def test_dataset_refuses_a_batch_larger_than_the_dataset(small, tmp_path, kw):
    with pytest.raises(ConfigError) as e:
        make(small, tmp_path, **kw)
    msg = str(e.value)
    world = kw.get("world_size", 1)
    assert f"{SMALL} samples of {small}" in msg
    assert f"use batch_size <= {SMALL // world} with world_size={world}" in msg


def test_more_ranks_than_samples_says_so(small, tmp_path):
    with pytest.raises(ConfigError, match=f"fewer samples than ranks: use at most {SMALL} ranks"):
        make(small, tmp_path, batch_size=1, world_size=SMALL + 1, rank=0)


def test_the_largest_batch_the_message_offers_reads_each_sample_once(small, tmp_path):
    ids = epoch_ids(small, tmp_path, 3, batch_size=SMALL // 3)  # 207 = 3 x 69: one global step
    assert sorted(ids) == list(range(SMALL))


def test_wrap_padding_of_the_last_global_step_is_kept(small, tmp_path):
    ids = epoch_ids(small, tmp_path, 3, batch_size=50)  # 2 global steps of 150: 93 samples padded
    c = collections.Counter(ids)
    assert len(ids) == 300 and set(c) == set(range(SMALL)) and max(c.values()) == 2
    ids = epoch_ids(small, tmp_path, 3, batch_size=50, drop_last=True)
    assert len(ids) == 150 and len(set(ids)) == 150


# --- columns as one string -----------------------------------------------------------------------

def test_one_column_as_a_string(small, tmp_path):
    ds = make(small, tmp_path, columns="tokens")
    assert ds.columns == ["tokens"]
    b = next(iter(StreamingDataLoader(ds, num_workers=0)))
    assert set(b) - {INDEX_KEY} <= {"tokens", "tokens_offsets"} and "tokens" in b
    with pytest.raises(ConfigError) as e:
        make(small, tmp_path, columns="tokenz")
    assert "['tokenz']" in str(e.value) and "'t'" not in str(e.value)


# --- CacheFullError's advice ---------------------------------------------------------------------

def _sizes(remote, local, **kw):
    ds = make(remote, local, **kw)
    shard_bytes = [s.bytes for s in ds.manifest.shards]
    return ds, shard_bytes, ds.cache_needed(0)


def _advice(msg):
    """The size after "raise cache_limit to at least", in bytes."""
    text = msg.split("raise cache_limit to at least ", 1)[1]
    return parse_size(" ".join(text.split()[:2]).rstrip(",;"))


def test_a_shard_above_the_limit_says_so_and_offers_no_shuffle_block(one_shard, tmp_path):
    _, shard_bytes, need = _sizes(one_shard, tmp_path, shuffle_block=1)
    assert len(shard_bytes) == 1 and need == shard_bytes[0]
    with pytest.raises(CacheFullError) as e:
        make(one_shard, tmp_path, shuffle_block=1, cache_limit=shard_bytes[0] // 5)
    msg = str(e.value)
    assert "largest shard" in msg and "no shuffle_block can help" in msg and "smaller shards" in msg
    assert "lower shuffle_block" not in msg and "two consecutive" not in msg
    assert _advice(msg) >= need
    make(one_shard, tmp_path, shuffle_block=1, cache_limit=_advice(msg))  # the advice works


def test_blocks_of_several_shards_offer_a_lower_shuffle_block(small, tmp_path):
    ds, shard_bytes, need = _sizes(small, tmp_path, shuffle_block=100)  # blocks of 3 shards
    assert max(len(b) for b in ds.order(0).blocks) > 1
    two_largest = sum(sorted(shard_bytes)[-2:])
    limit = (two_largest + need) // 2
    assert two_largest < limit < need
    with pytest.raises(CacheFullError) as e:
        make(small, tmp_path, shuffle_block=100, cache_limit=limit)
    msg = str(e.value)
    one = min(s.rows for s in ds.manifest.shards)
    assert "two consecutive shuffle blocks" in msg and f"or lower shuffle_block to {one} samples or less" in msg
    assert "largest shard" not in msg
    assert _advice(msg) >= need
    make(small, tmp_path, shuffle_block=100, cache_limit=_advice(msg))  # either advice works
    for epoch in range(4):
        make(small, tmp_path, shuffle_block=one, cache_limit=limit).cache_needed(epoch)


def test_two_shards_above_the_limit_do_not_offer_a_lower_shuffle_block(small, tmp_path):
    _, shard_bytes, need = _sizes(small, tmp_path, shuffle_block=1)
    limit = max(shard_bytes) + min(shard_bytes) // 2  # each shard fits, no two of them do
    assert limit < need
    with pytest.raises(CacheFullError) as e:
        make(small, tmp_path, shuffle_block=1, cache_limit=limit)
    msg = str(e.value)
    assert "lowering shuffle_block is not enough" in msg and "largest shard" not in msg
    assert "or lower shuffle_block" not in msg
    make(small, tmp_path, shuffle_block=1, cache_limit=_advice(msg))
