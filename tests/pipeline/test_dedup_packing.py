"""Packed LSH buckets: the same candidate edges as one shuffle element per band key."""

import random
from collections import defaultdict

from winnow.filters.dedup.cluster import star_edges
from winnow.pipeline.stages.dedup_graph import BucketPacker, _PackedBucketsFn

WIDTH = 18


def _key(band: int, h: int) -> bytes:
    return band.to_bytes(2, "little") + h.to_bytes(16, "little")


def test_packed_buckets_give_the_star_edges_of_every_bucket():
    rng = random.Random(7)
    nodes = [(0.0, f"id{i:04d}", f"src{i % 3}") for i in range(400)]
    pool = [rng.getrandbits(128) for _ in range(150)]  # few hashes: many shared buckets
    batches = [nodes[i:i + 37] for i in range(0, len(nodes), 37)]
    expected: dict[bytes, list] = defaultdict(list)
    grouped: dict[int, list[bytes]] = defaultdict(list)
    for batch in batches:
        packer = BucketPacker(partitions=5, key_width=WIDTH)
        for node in batch:
            keys = [_key(b, rng.choice(pool)) for b in range(6)]
            packer.add(node, keys)
            for k in keys:
                expected[k].append((node, None))
        for part, blob in packer.drain():
            assert 0 <= part < 5 and isinstance(blob, bytes)
            grouped[part].append(blob)
        assert list(packer.drain()) == []  # drained
    want = {e for members in expected.values() if len(members) >= 2 for e in star_edges(members)}
    fn = _PackedBucketsFn("t", WIDTH)
    fn.setup()
    got = [e for part, blobs in grouped.items() for e in fn.process((part, blobs))]
    assert want and set(got) == want


def test_packing_is_compact():
    packer = BucketPacker(partitions=16, key_width=WIDTH)
    rng = random.Random(1)
    for i in range(1000):
        packer.add((0.0, f"doc-{i:06d}", "corpus/part-0001.jsonl.gz"), [_key(b, rng.getrandbits(128)) for b in range(18)])
    blobs = list(packer.drain())
    assert len(blobs) == 16
    # 18,000 keys of 18 bytes and 1,000 nodes: well under a per-key element's ~500 bytes
    assert sum(len(b) for _, b in blobs) < 18_000 * 40


class _Close:
    """Payloads are numbers; an edge holds when they differ by at most 1."""

    def prepare(self, p):
        return p

    def __call__(self, pu, pv):
        return pu is not None and pv is not None and abs(pu - pv) <= 1


def test_verify_edges_with_packed_payloads_keeps_only_edges_that_pass():
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from winnow.pipeline.stages.dedup_graph import VerifyEdges, pack_payloads

    nodes = [(0.0, f"n{i}", "s") for i in range(30)]
    value = {n: i * (1 if i < 15 else 3) for i, n in enumerate(nodes)}
    edges = [(nodes[i + 1], nodes[i]) for i in range(29)]
    want = [e for e in edges if abs(value[e[0]] - value[e[1]]) <= 1]
    assert 0 < len(want) < len(edges)
    batches = [list(value.items())[i:i + 8] for i in range(0, 30, 8)]
    with beam.Pipeline(runner="FnApiRunner") as p:
        blobs = p | "B" >> beam.Create(batches) | beam.FlatMap(lambda b: pack_payloads(b, 4))
        kept = p | "E" >> beam.Create(edges) | VerifyEdges(blobs, _Close(), 4)
        assert_that(kept, equal_to(want))


class _SlowClose(_Close):
    """``_Close`` that spends measurable CPU per comparison (so its step's time is not zero)."""

    def __call__(self, pu, pv):
        x = 0
        for i in range(20000):
            x += i
        return super().__call__(pu, pv)


def test_verify_edges_steps_count_toward_their_stage():
    """With ``stage``, the attach and check steps report CPU time for that stage on
    ``timings`` (what ClusterAndPick wires into the stage's time); without, there is none."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to, is_not_empty

    from winnow.pipeline.stages.dedup_graph import VerifyEdges, pack_payloads

    nodes = [(0.0, f"n{i}", "s") for i in range(30)]
    value = {n: i for i, n in enumerate(nodes)}
    edges = [(nodes[i + 1], nodes[i]) for i in range(29)]
    batches = [list(value.items())[i:i + 8] for i in range(0, 30, 8)]
    with beam.Pipeline(runner="FnApiRunner") as p:
        blobs = p | "B" >> beam.Create(batches) | beam.FlatMap(lambda b: pack_payloads(b, 4))
        timed = VerifyEdges(blobs, _SlowClose(), 4, stage="st")
        kept = p | "E" >> beam.Create(edges) | "Timed" >> timed
        assert len(timed.timings) == 2
        assert_that(kept, equal_to(edges), label="same edges")
        check = timed.timings[1] | "Check" >> beam.Map(lambda t: (t[0], t[1][0] > 0))
        assert_that(check | "Bad" >> beam.Filter(lambda t: t != ("st", True)), equal_to([]), label="all st, > 0")
        assert_that(check, is_not_empty(), label="check timed")
        plain = VerifyEdges(blobs, _Close(), 4)
        assert_that(p | "E2" >> beam.Create(edges) | "Plain" >> plain, equal_to(edges), label="plain edges")
        assert plain.timings == []


def test_packer_takes_key_arrays_and_gives_the_same_blobs_as_key_lists():
    import numpy as np

    rng = random.Random(11)
    pool = [_key(b, rng.getrandbits(128)) for b in range(6) for _ in range(20)]
    a, b = BucketPacker(partitions=7, key_width=WIDTH), BucketPacker(partitions=7, key_width=WIDTH)
    for i in range(300):
        node = (0.0, f"id{i % 250:04d}", "s")  # some nodes twice
        keys = [rng.choice(pool) for _ in range(rng.randrange(0, 5))]
        a.add(node, keys)
        b.add(node, np.frombuffer(b"".join(keys), dtype=f"S{WIDTH}"))
    assert a.pending == b.pending > 0
    assert list(a.drain()) == list(b.drain())
    assert a.pending == 0 and list(a.drain()) == []


def test_payload_blobs_round_trip_and_texts_are_picked_out_still_compressed():
    from winnow.pipeline.stages import dedup_graph as g

    long_text = "word " * 500 + "\udc80 surrogate and \u00e9"
    pairs = [((0.0, f"n{i}", "s"), long_text + str(i) if i % 3 else f"short {i}") for i in range(40)]
    others = [((0.0, f"b{i}", "s"), payload) for i, payload in enumerate([b"\x00" * 300, None, 7, "x" * 300])]
    for group in (pairs, others):
        blobs = list(g.pack_payloads(group, 4))
        assert [k for k, _ in blobs] == sorted({g.node_partition(n, 4) for n, _ in group})
        back = [pair for _, blob in blobs for pair in g.unpack_payloads(blob)]
        assert sorted(back, key=repr) == sorted(group, key=repr)
    blobs = dict(g.pack_payloads(pairs, 4))
    part, blob = next((k, v) for k, v in blobs.items() if len(g.unpack_payloads(v)) > 2)
    nodes = [n for n, _ in g.unpack_payloads(blob)]
    wanted = set(nodes[::2])
    picked = g.select_payloads([blob], wanted)
    assert dict(g.unpack_payloads(picked)) == {n: p for n, p in pairs if n in wanted}
    # a long text's frame is carried over byte for byte (never decompressed and compressed again)
    frames = dict(zip(*g._blob_entries(blob)[:2]))
    assert all(frames[n] == e for n, e in zip(*g._blob_entries(picked)[:2]))
    assert any(isinstance(e, tuple) for e in frames.values())
    assert g.select_payloads([blob], {(0.0, "absent", "s")}) is None


class _CloseMany(_Close):
    """The same check, preparing payloads in chunks (``prepare_many``)."""

    def prepare(self, p):
        raise AssertionError("prepare_many is used when a check has it")

    def prepare_many(self, ps):
        return list(ps)


def test_verify_edges_prepares_in_chunks_when_the_check_can_with_the_same_edges():
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from winnow.pipeline.stages.dedup_graph import VerifyEdges, pack_payloads

    nodes = [(0.0, f"n{i:03d}", "s") for i in range(300)]
    value = {n: i * (1 if i < 150 else 3) for i, n in enumerate(nodes)}
    rng = random.Random(2)
    edges = sorted({(nodes[i], nodes[j]) for i, j in ((rng.randrange(300), rng.randrange(300)) for _ in range(2000)) if i > j})
    want = [e for e in edges if abs(value[e[0]] - value[e[1]]) <= 1]
    assert 0 < len(want) < len(edges)
    batches = [list(value.items())[i:i + 40] for i in range(0, 300, 40)]
    with beam.Pipeline(runner="FnApiRunner") as p:
        blobs = p | "B" >> beam.Create(batches) | beam.FlatMap(lambda b: pack_payloads(b, 3))
        edges_in = p | "E" >> beam.Create(edges)
        assert_that(edges_in | "One" >> VerifyEdges(blobs, _Close(), 3), equal_to(want), label="one")
        assert_that(edges_in | "Many" >> VerifyEdges(blobs, _CloseMany(), 3), equal_to(want), label="many")
