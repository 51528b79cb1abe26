"""Synthetic token shards in the winnow format, for tests, benchmarks and trainers' smoke runs.

The tokens of sample ``i`` are a known function of ``i`` (:func:`expected_tokens`), so a reader
can check every sample it gets for corruption without keeping a copy.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from winnow.format import Manifest, ShardInfo, output_schema, shard_name
from winnow.shardio import write_arrow_file

__all__ = ["expected_tokens", "sample_length", "write_token_shards", "TOKENS_FIELD"]

TOKENS_FIELD = pa.field("tokens", pa.list_(pa.int32()), nullable=False)


def sample_length(i: np.ndarray | int, lengths: tuple[int, int]) -> np.ndarray:
    """Token count of sample(s) ``i``: fixed if ``lengths[0] == lengths[1]``, else pseudo-random."""
    lo, hi = lengths
    i = np.asarray(i, dtype=np.int64)
    if lo == hi:
        return np.full(i.shape, lo, dtype=np.int64)
    return lo + (i * 2654435761 % 1000003) % (hi - lo + 1)


def expected_tokens(i: int, length: int) -> np.ndarray:
    """The tokens written for sample ``i``: ``(i * 31 + j) mod 50021`` for ``j < length``."""
    return ((np.int64(i) * 31 + np.arange(length, dtype=np.int64)) % 50021).astype(np.int32)


def write_token_shards(out: str, *, num_samples: int, rows_per_shard: int, lengths: tuple[int, int] = (256, 256),
                       rows_per_batch: int | None = None, compression: str | None = None,
                       extra_fields: Sequence[pa.Field] = (),
                       computed: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None) -> Manifest:
    """Write ``num_samples`` token samples as Arrow IPC file shards plus ``index.json`` under ``out``.

    Shards go through :func:`winnow.shardio.write_arrow_file` (atomic rename, xxh3 digest), the
    same writer the pipeline's sink uses.

    Args:
        out: local output directory.
        num_samples: total rows.
        rows_per_shard: rows per shard (the last shard may be shorter).
        lengths: ``(min, max)`` tokens per sample.
        rows_per_batch: rows per record batch (default: one batch per shard).
        compression: ``None``, ``"lz4"`` or ``"zstd"`` (IPC buffer compression).
        extra_fields: unused columns to add (filled with nulls), to widen the schema.
        computed: columns whose values are a function of the global sample ids (e.g. a score for
            a curriculum: ``{"score": lambda ids: (ids % 7) / 7.0}``); the type follows the
            function's NumPy dtype.

    Returns:
        The manifest written.
    """
    computed = dict(computed or {})
    probe = {name: np.asarray(fn(np.arange(1, dtype=np.int64))) for name, fn in computed.items()}
    schema = output_schema([TOKENS_FIELD, *extra_fields,
                            *(pa.field(name, pa.from_numpy_dtype(v.dtype)) for name, v in probe.items())])
    os.makedirs(os.path.join(out, "shards"), exist_ok=True)
    count = (num_samples + rows_per_shard - 1) // rows_per_shard
    infos = []
    for k in range(count):
        lo, hi = k * rows_per_shard, min(num_samples, (k + 1) * rows_per_shard)
        ids = np.arange(lo, hi, dtype=np.int64)
        lens = sample_length(ids, lengths)
        offsets = np.zeros(len(ids) + 1, dtype=np.int32)
        np.cumsum(lens, out=offsets[1:])
        rep = np.repeat(ids, lens)
        pos = np.arange(int(offsets[-1]), dtype=np.int64) - np.repeat(offsets[:-1].astype(np.int64), lens)
        values = ((rep * 31 + pos) % 50021).astype(np.int32)
        n = len(ids)
        cols = {
            "id": pa.array([f"s{i:09d}" for i in ids], pa.string()),
            "source": pa.array([f"synth:{i}" for i in ids], pa.string()),
            "modality": pa.array(["text"] * n, pa.string()),
            "text": pa.nulls(n, pa.large_string()),
            "image": pa.nulls(n, pa.large_binary()),
            "audio": pa.nulls(n, pa.large_binary()),
            "meta": pa.array(["{}"] * n, pa.string()),
            "tokens": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)),
        }
        for f in extra_fields:
            cols[f.name] = pa.nulls(n, f.type)
        for name, fn in computed.items():
            cols[name] = pa.array(np.asarray(fn(ids)), type=schema.field(name).type)
        table = pa.table([cols[f.name] for f in schema], schema=schema)
        rel = f"shards/{shard_name(k, count)}"
        size, digest = write_arrow_file(os.path.join(out, rel), schema,
                                        table.to_batches(max_chunksize=rows_per_batch or max(n, 1)), compression)
        infos.append(ShardInfo(rel, n, size, digest))
    manifest = Manifest(schema=schema, shards=tuple(infos), counts={"kept": num_samples},
                        compression=compression, created_by="winnow.cache.synth")
    with open(os.path.join(out, "index.json"), "w") as f:
        f.write(manifest.dumps())
    return manifest
