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
