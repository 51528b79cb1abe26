"""StreamingDataset over a local (file://) store: content, exactly-once, workers, resume, limits."""

from __future__ import annotations

import os
import urllib.request

import numpy as np
import psutil
import pytest
import torch

from winnow.cache import INDEX_KEY, StreamingDataLoader, StreamingDataset, serve_prometheus
from winnow.cache.synth import expected_tokens, sample_length, write_token_shards
from winnow.errors import CacheError, CacheFullError, ConfigError


def check_batch(batch, lengths=(32, 32)):
    """Every sample's tokens equal what was written for its id; returns the ids."""
    ids = batch[INDEX_KEY].numpy()
    toks = batch["tokens"]
    offs = batch.get("tokens_offsets")
    for k, i in enumerate(ids.tolist()):
        got = toks[k].numpy() if offs is None else toks[offs[k]:offs[k + 1]].numpy()
        assert np.array_equal(got, expected_tokens(i, int(sample_length(i, lengths)))), f"sample {i} corrupted"
    return ids.tolist()


def make(remote, local, **kw):
    args = dict(remote=remote, local=str(local), cache_limit="64MB", memory_limit="64MB", shuffle=True, seed=5,
                batch_size=48, shuffle_block=600, columns=["tokens"])
    args.update(kw)
    return StreamingDataset(**args)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 2])
def test_batched_epoch_every_sample_once_and_intact(fixed, tmp_path, workers):
    ds = make(fixed, tmp_path, batched=True)
    loader = StreamingDataLoader(ds, num_workers=workers)
    ids = [i for b in loader for i in check_batch(b)]
    assert sorted(ids) == list(range(2400))  # 2400 = 50 steps of 48
    assert len(loader) == 50
    m = ds.metrics()
    assert m["samples"] == 2400 and m["steps"] == 50
    assert m["l2_hits"] + m["l3_fetches"] >= 8 and m["hit_rate_l1"] > 0.5


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 2])
def test_per_sample_with_dataloader_batches_matches_batched_order(fixed, tmp_path, workers):
    batched = [b[INDEX_KEY].tolist() for b in StreamingDataLoader(make(fixed, tmp_path, batched=True))]
    ds = make(fixed, tmp_path)
    loader = StreamingDataLoader(ds, num_workers=workers)
    got = []
    for b in loader:
        assert b["tokens"].shape == (48, 32) and b["tokens"].dtype == torch.int32
        got.append(check_batch(b))
    assert got == batched


def test_order_independent_of_workers_and_epoch_changes_it(fixed, tmp_path):
    a = [b[INDEX_KEY].tolist() for b in StreamingDataLoader(make(fixed, tmp_path, batched=True), num_workers=0)]
    ds = make(fixed, tmp_path, batched=True)
    b = [x[INDEX_KEY].tolist() for x in StreamingDataLoader(ds, num_workers=3)]
    assert a == b
    ds.set_epoch(1)
    c = [x[INDEX_KEY].tolist() for x in StreamingDataLoader(ds, num_workers=0)]
    assert c != a and sorted(sum(c, [])) == sorted(sum(a, []))


def test_two_ranks_split_an_epoch_evenly(fixed, tmp_path):
    per_rank = []
    for rank in range(2):
        ds = make(fixed, tmp_path, batched=True, batch_size=40, rank=rank, world_size=2, drop_last=True)
        per_rank.append([i for b in StreamingDataLoader(ds) for i in check_batch(b)])
    assert len(per_rank[0]) == len(per_rank[1]) == 1200
    assert sorted(per_rank[0] + per_rank[1]) == list(range(2400))


def test_compressed_ragged_multibatch_shards(ragged_zstd, tmp_path):
    ds = make(ragged_zstd, tmp_path, batched=True, batch_size=50, memory_limit="2MB")
    ids = []
    for b in StreamingDataLoader(ds, num_workers=0):
        assert b["tokens_offsets"].shape == (51,)
        ids += check_batch(b, lengths=(3, 60))
    assert sorted(ids) == list(range(1500))
    m = ds.metrics()
    assert m["batch_decodes"] > 0 and m["batch_hits"] > 0
    one = ds[1234]
    assert one[INDEX_KEY] == 1234
    assert np.array_equal(one["tokens"], expected_tokens(1234, int(sample_length(1234, (3, 60)))))


def test_random_access_and_string_columns(fixed, tmp_path):
    ds = make(fixed, tmp_path, columns=["id", "tokens", "text", "modality"])
    for i in (0, 299, 300, 2399, 1717):
        s = ds[i]
        assert s["id"] == f"s{i:09d}" and s["text"] is None and s["modality"] == "text"
        assert np.array_equal(s["tokens"], expected_tokens(i, 32))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers_before, workers_after, world_after", [(2, 3, 1), (0, 2, 2)])
def test_resume_after_37_percent_yields_exactly_the_rest(fixed, tmp_path, workers_before, workers_after, world_after):
    full = [i for b in StreamingDataLoader(make(fixed, tmp_path, batched=True, batch_size=24)) for i in b[INDEX_KEY].tolist()]
    ds = make(fixed, tmp_path, batched=True, batch_size=24)
    loader = StreamingDataLoader(ds, num_workers=workers_before)
    steps = len(loader)  # 100
    stop = round(0.37 * steps)
    consumed = []
    for k, b in enumerate(loader):
        consumed += check_batch(b)
        if k + 1 == stop:
            break
    state = loader.state_dict()
    assert len(consumed) == stop * 24 and consumed == full[:len(consumed)]

    rest = []
    for rank in range(world_after):
        ds2 = make(fixed, tmp_path, batched=True, batch_size=24 // world_after, rank=rank, world_size=world_after)
        l2 = StreamingDataLoader(ds2, num_workers=workers_after)
        l2.load_state_dict(state)
        rest.append([i for b in l2 for i in check_batch(b)])
        ds2.set_epoch(1)  # the following epoch is whole again
        assert len(ds2) == 100
    remaining = sorted(sum(rest, []))
    assert remaining == sorted(set(range(2400)) - set(consumed))
    if world_after == 1:
        assert rest[0] == full[len(consumed):]


def test_resume_rejects_a_state_of_another_dataset(fixed, ragged_zstd, tmp_path):
    state = make(fixed, tmp_path).state_dict(num_batches=3)
    with pytest.raises(CacheError):
        make(ragged_zstd, tmp_path).load_state_dict(state)
    with pytest.raises(CacheError):
        make(fixed, tmp_path, seed=6).load_state_dict(state)


def test_cache_limit_below_two_blocks_is_a_clear_error(fixed, tmp_path):
    with pytest.raises(CacheFullError) as e:
        make(fixed, tmp_path, cache_limit="100kB")
    assert "raise cache_limit to at least" in str(e.value)


def test_bad_arguments_raise_config_error(fixed, tmp_path):
    with pytest.raises(ConfigError):
        make(fixed, tmp_path, columns=["nope"])
    with pytest.raises(ConfigError):
        make(fixed, tmp_path, batch_size=0)
    with pytest.raises(ConfigError):
        make(fixed, tmp_path, cache_limit="lots")
    with pytest.raises(TypeError):
        StreamingDataset(fixed, str(tmp_path))  # keyword-only
    with pytest.raises(ConfigError):
        StreamingDataLoader(make(fixed, tmp_path, batched=True), batch_size=4)


@pytest.mark.timeout(120)
def test_memory_limit_bounds_mapped_bytes_and_rss(tmp_path):
    root = tmp_path / "ds"
    write_token_shards(str(root), num_samples=40 * 2000, rows_per_shard=2000, lengths=(256, 256))  # 40 x ~2 MB
    ds = StreamingDataset(remote=str(root), local=str(tmp_path / "c"), cache_limit="1GB", memory_limit="8MB",
                          columns=["tokens"], batch_size=200, batched=True, shuffle_block=2000)
    for _ in ds:  # fill L2 and the page cache
        pass
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak, peak_mapped = 0, 0
    ds.set_epoch(1)
    for b in ds:
        peak_mapped = max(peak_mapped, ds._runtime().tier.mapped)
        peak = max(peak, proc.memory_info().rss - base)
    shard = os.path.getsize(root / "shards" / "part-00000-of-00040.arrow")
    assert peak_mapped <= 8_000_000 + shard
    assert peak < 8_000_000 + shard + 16_000_000, f"RSS grew by {peak} bytes"
    assert ds.metrics()["l1_evictions"] > 0


@pytest.mark.timeout(60)
def test_two_datasets_share_one_cache_directory(fixed, ragged_zstd, tmp_path):
    a = make(fixed, tmp_path, batched=True, seed=1)
    b = make(ragged_zstd, tmp_path, batched=True, seed=2, batch_size=50)
    c = make(fixed, tmp_path, batched=True, seed=3)  # same shards as a: stored once
    ia, ib, ic = iter(a), iter(b), iter(c)
    seen = {"a": [], "b": [], "c": []}
    for _ in range(30):
        for key, it, lengths in (("a", ia, (32, 32)), ("b", ib, (3, 60)), ("c", ic, (32, 32))):
            batch = next(it, None)
            if batch is not None:
                seen[key] += check_batch(batch, lengths)
    assert len(set(seen["a"])) == len(set(seen["c"])) == 30 * 48 and seen["a"] != seen["c"]
    assert sorted(seen["b"]) == list(range(1500))
    objects = [f for _, _, fs in os.walk(tmp_path / "objects") for f in fs]
    assert len(objects) == 8 + 6
    assert c.metrics()["l3_fetches"] == 0


@pytest.mark.timeout(60)
def test_metrics_from_workers_and_prometheus_endpoint(fixed, tmp_path):
    ds = make(fixed, tmp_path, batched=True)
    for _ in StreamingDataLoader(ds, num_workers=2):
        pass
    m = ds.metrics()
    assert m["samples"] == 2400 and m["bytes_fetched_total"] > 0
    server, thread = serve_prometheus(ds.metrics, port=0)
    try:
        port = server.server_address[1]
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    assert 'winnow_loader_samples_total{rank="0"} 2400.0' in text
    assert 'winnow_loader_hit_rate_l1{rank="0"} ' in text


def _numeric_shards(root, batches=(70, 1, 129, 40), shards=3, ragged_shard=-1):
    """Shards of several record batches with a fixed-width int32 list, an int16 and a float64 column."""
    import pyarrow as pa

    from winnow.format import Manifest, ShardInfo, output_schema, shard_name, xxh3_128_hex

    fields = [pa.field("tokens", pa.list_(pa.int32())), pa.field("n16", pa.int16()), pa.field("score", pa.float64())]
    schema = output_schema(fields)
    os.makedirs(os.path.join(root, "shards"), exist_ok=True)
    infos, base = [], 0
    for k in range(shards):
        rows = sum(batches)
        ids = np.arange(base, base + rows)
        cols = {
            "id": pa.array([str(i) for i in ids]), "source": pa.array(["t"] * rows), "modality": pa.array(["text"] * rows),
            "text": pa.nulls(rows, pa.large_string()), "image": pa.nulls(rows, pa.large_binary()),
            "audio": pa.nulls(rows, pa.large_binary()), "meta": pa.array(["{}"] * rows),
            "tokens": pa.array([expected_tokens(int(i), 5 + (k == ragged_shard) * int(i % 2)).tolist() for i in ids],
                               pa.list_(pa.int32())),
            "n16": pa.array((ids % 30000).astype(np.int16)), "score": pa.array(ids * 0.5),
        }
        table = pa.table([cols[f.name] for f in schema], schema=schema)
        rel = f"shards/{shard_name(k, shards)}"
        with pa.OSFile(os.path.join(root, rel), "wb") as sink, pa.ipc.new_file(sink, schema) as w:
            a = 0
            for nb in batches:
                w.write_batch(table.slice(a, nb).combine_chunks().to_batches()[0])
                a += nb
        data = open(os.path.join(root, rel), "rb").read()
        infos.append(ShardInfo(rel, rows, len(data), xxh3_128_hex(data)))
        base += rows
    with open(os.path.join(root, "index.json"), "w") as f:
        f.write(Manifest(schema=schema, shards=tuple(infos), counts={"kept": base}).dumps())
    return base


@pytest.mark.parametrize("block", [100, 500])  # steps within one shard / across shards
def test_multibatch_numeric_shards_gather_in_one_index_per_shard(tmp_path, block):
    total = _numeric_shards(str(tmp_path / "store"))
    ds = make(str(tmp_path / "store"), tmp_path / "cache", batched=True, batch_size=64,
              columns=["tokens", "n16", "score"], shuffle_block=block)
    seen = []
    for b in StreamingDataLoader(ds, num_workers=0):
        ids = b[INDEX_KEY].numpy()
        assert b["tokens"].shape == (64, 5) and b["n16"].dtype == torch.int16
        for k, i in enumerate(ids.tolist()):
            assert np.array_equal(b["tokens"][k].numpy(), expected_tokens(i, 5)), f"sample {i} corrupted"
        assert np.array_equal(b["n16"].numpy(), (ids % 30000).astype(np.int16))
        assert np.array_equal(b["score"].numpy(), ids * 0.5)
        seen += ids.tolist()
    assert set(seen) == set(range(total)) and len(seen) == -(-total // 64) * 64  # the tail step wraps
    rd = ds._runtime().tier.reader(0)
    assert not rd.single and rd.direct is not None  # the one-fancy-index path served these steps


@pytest.mark.timeout(120)
def test_workers_fall_back_when_a_shard_cannot_be_gathered_in_place(tmp_path):
    """A shard with ragged tokens among fixed-width ones: chunks gathered in place must give way to
    packed ones mid-epoch, with the same steps as num_workers=0."""
    total = _numeric_shards(str(tmp_path / "store"), shards=4, ragged_shard=0)  # block order 3,1,2,0: last

    def steps(workers):
        ds = make(str(tmp_path / "store"), tmp_path / "cache", batched=True, batch_size=40,
                  columns=["tokens", "score"], shuffle_block=100, transfer_steps=2)
        assert [b.tolist() for b in ds.order(0).blocks][-1] == [0]  # the ragged shard comes after fixed ones
        out = []
        for b in StreamingDataLoader(ds, num_workers=workers):
            ids = b[INDEX_KEY].tolist()
            toks, offs = b["tokens"], b.get("tokens_offsets")
            rows = [toks[k] if offs is None else toks[offs[k]:offs[k + 1]] for k in range(len(ids))]
            for i, row in zip(ids, rows):
                want = expected_tokens(i, 5 + (i < 240) * (i % 2))
                assert np.array_equal(row.numpy(), want), f"sample {i} corrupted"
            assert np.array_equal(b["score"].numpy(), np.asarray(ids) * 0.5)
            out.append(ids)
        return out, ds.metrics()

    ref, _ = steps(0)
    got, m = steps(2)
    assert got == ref and sorted(i for s in got for i in s) == sorted(i for s in ref for i in s)
    assert {i for s in got for i in s} == set(range(total))
    assert m["transfer_recycled"] > 0
