"""StreamingDataset(curriculum=...): bucket shares per step window follow the schedule, ranks and
workers split global steps, each bucket pass is exactly once, resume at 37% continues exactly."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from winnow.cache import INDEX_KEY, StreamingDataLoader, StreamingDataset
from winnow.cache.synth import write_token_shards
from winnow.curriculum import CurriculumPlan, Schedule, main, plan_curriculum, simple_to_complex, write_curriculum
from winnow.errors import CacheError, ConfigError

from .conftest import s3_options

N, B, WORLD = 2400, 4, 2  # global batch 8: 300 steps an epoch
G = B * WORLD
S = N // G
#: The spec's schedule over three epochs: epoch 0 simple only, epoch 1 70/30, epoch 2 complex only.
SCHEDULE = simple_to_complex(3 * S)


def score(ids: np.ndarray) -> np.ndarray:
    return ((np.asarray(ids, dtype=np.int64) * 2654435761) % 1000003) / 1000003.0


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("scored"))
    write_token_shards(root, num_samples=N, rows_per_shard=150, lengths=(8, 8), computed={"score": score})
    return root


def make(remote, local, curriculum, **kw):
    args = dict(remote=remote, local=str(local), cache_limit="64MB", columns=["tokens"], batch_size=B, batched=True,
                shuffle_block=600, seed=7, rank=0, world_size=WORLD, curriculum=curriculum)
    args.update(kw)
    return StreamingDataset(**args)


def the_plan():
    return plan_curriculum(score(np.arange(N)), "score", SCHEDULE, G)


def epoch_steps(remote, local, curriculum, epoch, workers=0, **kw):
    """Per rank, the sample ids of each step of ``epoch``."""
    out = []
    for rank in range(kw.pop("world_size", WORLD)):
        ds = make(remote, local, curriculum, rank=rank, world_size=WORLD, **kw)
        ds.set_epoch(epoch)
        out.append([b[INDEX_KEY].tolist() for b in StreamingDataLoader(ds, num_workers=workers)])
    return out


def tolerance(p: float, n: int, tests: int, alpha: float = 1e-6) -> float:
    """Half-width of the two-sided band a binomial share of ``n`` draws stays in, except with
    probability ``alpha`` over all ``tests`` windows (Bonferroni, normal approximation)."""
    z = NormalDist().inv_cdf(1 - alpha / (2 * tests))
    return z * np.sqrt(p * (1 - p) / n)


@pytest.mark.timeout(180)
def test_bucket_shares_per_window_follow_the_schedule_and_passes_are_exactly_once(scored, tmp_path):
    plan = the_plan()
    bucket_of = plan.bucket_of
    steps = []  # per global step: its G sample ids
    for epoch in range(3):
        ranks = epoch_steps(scored, tmp_path, plan, epoch)
        assert [len(r) for r in ranks] == [S, S]
        for a, b in zip(*ranks):
            assert len(a) == len(b) == B
            steps.append(a + b)
    buckets = []
    for ids in steps:
        assert len(set(ids)) == G  # the two ranks' slices are disjoint
        bs = set(bucket_of[ids].tolist())
        assert len(bs) == 1, "a global step mixes buckets"
        buckets.append(bs.pop())
    buckets = np.asarray(buckets)
    assert (buckets[:S] == 0).all()  # epoch 0: simple only
    assert (buckets[2 * S:] == 1).all()  # epoch 2: complex only
    window = 100
    mid = buckets[S:2 * S]
    tests = len(mid) // window
    band = tolerance(0.7, window, tests)
    shares = [float((mid[w * window:(w + 1) * window] == 0).mean()) for w in range(tests)]
    assert all(abs(s - 0.7) <= band for s in shares), (shares, band)
    whole = float((mid == 0).mean())
    assert abs(whole - 0.7) <= tolerance(0.7, len(mid), 1), whole

    # Each pass over a bucket holds every sample of the bucket exactly once.
    for b in (0, 1):
        members = set(plan.members(b).tolist())
        per_pass = len(members) // G  # 1200 // 8 = 150 steps
        seq = [ids for ids, k in zip(steps, buckets) if k == b]
        assert len(seq) >= per_pass
        for p in range(len(seq) // per_pass):
            seen = sum(seq[p * per_pass:(p + 1) * per_pass], [])
            assert len(seen) == len(set(seen)) == len(members) and set(seen) == members


@pytest.mark.timeout(180)
def test_workers_per_sample_and_the_json_beside_the_manifest_give_the_same_order(scored, tmp_path):
    plan = the_plan()
    ref = epoch_steps(scored, tmp_path, plan, 1)[0]
    ds = make(scored, tmp_path, plan)
    ds.set_epoch(1)
    assert [b[INDEX_KEY].tolist() for b in StreamingDataLoader(ds, num_workers=2)] == ref
    ds = make(scored, tmp_path, plan, batched=False)
    ds.set_epoch(1)
    assert [b[INDEX_KEY].tolist() for b in StreamingDataLoader(ds, num_workers=2)] == ref

    written = write_curriculum(scored, "score", SCHEDULE)
    assert written.fingerprint() == plan.fingerprint()
    assert main([scored, "--column", "score", "--steps", str(3 * S)]) == 0
    for spec in ("curriculum.json", ("score", SCHEDULE)):
        ds = make(scored, tmp_path, spec)
        ds.set_epoch(1)
        assert [b[INDEX_KEY].tolist() for b in StreamingDataLoader(ds)] == ref
        assert ds.curriculum.fingerprint() == plan.fingerprint() and ds.curriculum.batch_size == G


@pytest.mark.timeout(180)
@pytest.mark.parametrize("workers_before,workers_after", [(2, 0), (0, 2)])
def test_resume_at_37_percent_of_an_epoch_continues_exactly(scored, tmp_path, workers_before, workers_after):
    plan = the_plan()
    full1 = epoch_steps(scored, tmp_path, plan, 1)[0]  # the mixed phase
    full2 = epoch_steps(scored, tmp_path, plan, 2)[0]
    ds = make(scored, tmp_path, plan)
    ds.set_epoch(1)
    loader = StreamingDataLoader(ds, num_workers=workers_before)
    stop = round(0.37 * len(loader))
    got = []
    for b in loader:
        got.append(b[INDEX_KEY].tolist())
        if len(got) == stop:
            break
    state = loader.state_dict()
    assert got == full1[:stop]

    ds2 = make(scored, tmp_path, plan)
    l2 = StreamingDataLoader(ds2, num_workers=workers_after)
    l2.load_state_dict(state)
    rest = [b[INDEX_KEY].tolist() for b in l2]
    assert rest == full1[stop:]  # exactly the uninterrupted run's remaining steps
    ds2.set_epoch(2)
    assert [b[INDEX_KEY].tolist() for b in l2] == full2


def test_resume_with_another_world_size_keeps_the_global_steps(scored, tmp_path):
    plan = the_plan()
    ranks = epoch_steps(scored, tmp_path, plan, 1)
    ds = make(scored, tmp_path, plan)
    ds.set_epoch(1)
    state = ds.state_dict(num_batches=111)
    one = make(scored, tmp_path, plan, batch_size=G, world_size=1)
    one.load_state_dict(state)  # same global batch on one rank
    rest = [sorted(b[INDEX_KEY].tolist()) for b in StreamingDataLoader(one)]
    assert rest == [sorted(a + b) for a, b in zip(ranks[0][111:], ranks[1][111:])]


def test_curriculum_errors_say_what_to_do(scored, tmp_path):
    plan = the_plan()
    with pytest.raises(ConfigError, match="interleave"):
        make(scored, tmp_path, plan, partition="contiguous")
    small = plan_curriculum(np.arange(100.0), "score", SCHEDULE, G)
    with pytest.raises(ConfigError, match="one bucket per sample"):
        make(scored, tmp_path, small)
    lopsided = CurriculumPlan("score", np.zeros(1), (np.arange(N) >= 4).astype(np.int32), SCHEDULE, G)
    with pytest.raises(ConfigError, match="at least one global step"):
        make(scored, tmp_path, lopsided)
    with pytest.raises(ConfigError, match="CurriculumPlan"):
        make(scored, tmp_path, 42)
    state = make(scored, tmp_path, plan).state_dict(num_batches=3)
    other = plan_curriculum(score(np.arange(N)), "score", Schedule([(0, [0.5, 0.5])]), G)
    with pytest.raises(CacheError, match="curriculum"):
        make(scored, tmp_path, other).load_state_dict(state)
    with pytest.raises(CacheError, match="curriculum"):
        make(scored, tmp_path, None).load_state_dict(state)
    with pytest.raises(CacheError, match="global batch"):
        make(scored, tmp_path, plan, batch_size=2).load_state_dict(state)


@pytest.mark.timeout(120)
def test_curriculum_json_read_from_the_object_store(upload, moto_server, tmp_path):
    remote = upload(num_samples=N, rows_per_shard=150, lengths=(8, 8), computed={"score": score})
    host, port = moto_server
    opts = s3_options(f"http://{host}:{port}")
    plan = write_curriculum(remote, "score", SCHEDULE, storage_options=opts)
    ds = make(remote, tmp_path, "curriculum.json", storage_options=opts)
    assert ds.curriculum.fingerprint() == plan.fingerprint()
    ids = [b[INDEX_KEY].tolist() for b in StreamingDataLoader(ds)]
    assert len(ids) == S and set(plan.bucket_of[sum(ids, [])].tolist()) == {0}  # epoch 0: simple only
