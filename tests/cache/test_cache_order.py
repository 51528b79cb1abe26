"""The sample order: a pure function of (seed, epoch, manifest), split evenly over ranks and workers."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.cache.order import EpochOrder, RankPlan, worker_steps
from winnow.units import format_size, parse_size
from winnow.errors import CacheError, ConfigError

ROWS = [100, 37, 250, 64, 1, 180, 90, 128]  # uneven shards, 850 rows


@pytest.mark.parametrize(
    "text, expected",
    [("50GB", 50 * 10**9), ("1.5 GiB", int(1.5 * 2**30)), ("800mb", 800 * 10**6), ("1000", 1000),
     (4096, 4096), ("2TiB", 2 * 2**40), ("7 kB", 7000), ("0", 0)],
)
def test_parse_size_accepts_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["fifty", "-1GB", "12 parsecs", "", True, -5, None])
def test_parse_size_rejects_with_config_error(bad):
    with pytest.raises(ConfigError) as e:
        parse_size(bad, "cache_limit")
    assert "cache_limit" in str(e.value)


def test_format_size_round_trips_roughly():
    assert format_size(1_234_567_890) == "1.23 GB"
    assert format_size(999) == "999 B"


def test_order_is_a_permutation_and_deterministic():
    a = EpochOrder(ROWS, seed=7, epoch=3, shuffle=True, block_samples=200).all_ids()
    b = EpochOrder(ROWS, seed=7, epoch=3, shuffle=True, block_samples=200).all_ids()
    assert np.array_equal(a, b)
    assert np.array_equal(np.sort(a), np.arange(sum(ROWS)))
    c = EpochOrder(ROWS, seed=7, epoch=4, shuffle=True, block_samples=200).all_ids()
    d = EpochOrder(ROWS, seed=8, epoch=3, shuffle=True, block_samples=200).all_ids()
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_unshuffled_order_is_manifest_order():
    o = EpochOrder(ROWS, seed=0, epoch=0, shuffle=False, block_samples=10)
    assert np.array_equal(o.all_ids(), np.arange(sum(ROWS)))


def test_blocks_are_whole_shards_and_samples_stay_in_their_block():
    o = EpochOrder(ROWS, seed=1, epoch=0, shuffle=True, block_samples=200)
    offsets = np.concatenate([[0], np.cumsum(ROWS)])
    assert sorted(int(s) for b in o.blocks for s in b) == list(range(len(ROWS)))
    for b, shards in enumerate(o.blocks):
        ids = o.block_ids(b)
        owner = np.searchsorted(offsets, ids, side="right") - 1
        assert set(owner.tolist()) == set(int(s) for s in shards)
        assert len(ids) >= 200 or b == len(o.blocks) - 1


def test_ids_wrap_and_match_all_ids():
    o = EpochOrder(ROWS, seed=2, epoch=0, shuffle=True, block_samples=150)
    full = o.all_ids()
    assert np.array_equal(o.ids(0, len(full)), full)
    assert np.array_equal(o.ids(840, 20), np.concatenate([full[840:], full[:10]]))


def _collect(total, world, batch, workers, drop_last=False, partition="interleave"):
    per_rank = []
    for r in range(world):
        plan = RankPlan(total, world, r, batch, drop_last, partition)
        got = []
        for w in range(workers):
            for s in worker_steps(plan.steps, w, workers):
                got.append((s, plan.position(s)))
        per_rank.append([p for _, p in sorted(got)])
    return per_rank


@pytest.mark.parametrize("world, batch, workers", [(1, 10, 1), (2, 5, 2), (4, 5, 3), (5, 17, 2), (8, 8, 4)])
@pytest.mark.parametrize("partition", ["interleave", "contiguous"])
def test_every_position_once_with_drop_last_and_equal_steps(world, batch, workers, partition):
    total = 850
    ranks = _collect(total, world, batch, workers, drop_last=True, partition=partition)
    steps = {len(r) for r in ranks}
    assert len(steps) == 1
    pos = np.concatenate([np.arange(p, p + batch) for r in ranks for p in r]) if ranks[0] else np.array([])
    assert len(pos) == len(set(pos.tolist()))
    assert (pos < total).all()
    assert total - len(pos) < world * batch * (1 if partition == "interleave" else 2)


@pytest.mark.parametrize("world, batch", [(2, 5), (3, 7), (4, 64)])
def test_padding_covers_every_position_and_repeats_only_the_pad(world, batch):
    total = 850
    ranks = _collect(total, world, batch, 2)
    assert len({len(r) for r in ranks}) == 1
    pos = np.concatenate([np.arange(p, p + batch) % total for r in ranks for p in r])
    counts = np.bincount(pos, minlength=total)
    assert (counts >= 1).all()
    assert counts.sum() - total < world * batch


def test_global_steps_do_not_depend_on_world_size():
    """With interleave, the samples of global step s are the same for 1, 2 or 4 ranks."""
    g = 64
    seen = {}
    for world in (1, 2, 4):
        plans = [RankPlan(850, world, r, g // world) for r in range(world)]
        seen[world] = [sorted(sum((list(range(p.position(s), p.position(s) + p.batch_size)) for p in plans), []))
                       for s in range(plans[0].steps)]
    assert seen[1] == seen[2] == seen[4]


def test_resume_continues_at_the_next_global_position_with_any_world_size():
    plan = RankPlan(850, 2, 0, 10).resumed(7)
    assert plan.start == 140
    other = RankPlan(850, 4, 3, 5, start=plan.start)
    assert other.position(0) == 140 + 15


def test_bad_partition_and_rank_raise():
    with pytest.raises(CacheError):
        RankPlan(10, 2, 0, 1, partition="striped")
    with pytest.raises(CacheError):
        RankPlan(10, 2, 2, 1)
