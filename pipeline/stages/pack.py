"""Write-time packing: the encoded token streams cut into fixed-length rows, as their own dataset.

With ``encode.pack_length > 0`` the encode stage also writes ``OUT/packed/``: an ``index.json``
and Arrow shards in the same format as the run's own (readable by ``winnow.cache`` with
``remote=OUT/packed``), whose ``tokens`` column is a ``fixed_size_list`` of ``pack_length`` ids:
documents' tokens joined with ``</s>`` separators and cut into rows (the last row of a group
padded with ``pad_id``). The per-record ``tokens`` in ``OUT/shards`` stay as they are, so the
balance of records is unchanged.

Packing is deterministic: records go to a group by a hash of (id, source) (the group count
follows from the token bytes, a combiner), are sorted by (id, source) inside it and packed in
that order; row ids (``pack-<group>-<row>``) sort in packing order.
"""

from __future__ import annotations

import posixpath
from typing import Any, Iterable

import apache_beam as beam
import numpy as np
import pyarrow as pa

from winnow.format import Manifest, output_schema
from winnow.pipeline.config import SinkConfig
from winnow.pipeline.batch import Records
from winnow.pipeline.sink import WriteShards
from winnow.shardio import atomic_write, join_uri, shard_count, shard_index
from winnow.tokenizer.encode import pack_tokens

__all__ = ["PackTokens", "packed_schema", "packed_tokenizer_entry", "PACKED_DIR"]

#: Where the packed dataset goes, under the run's output.
PACKED_DIR = "packed"


def packed_schema(dtype: np.dtype, length: int) -> pa.Schema:
    """Core columns plus ``tokens``: ``fixed_size_list<intN>[length]``."""
    return output_schema([pa.field("tokens", pa.list_(pa.from_numpy_dtype(dtype), length), nullable=False)])


class _PackGroupFn(beam.DoFn):
    def __init__(self, length: int, eos_id: int, pad_id: int, dtype: np.dtype) -> None:
        self._length, self._eos, self._pad, self._dtype = length, eos_id, pad_id, dtype

    def process(self, element: tuple[int, Iterable[tuple[str, str, Any]]]) -> Iterable[Any]:
        group, items = element
        docs = sorted(items, key=lambda x: (x[0], x[1]))
        n_tok = sum(len(d[2]) for d in docs)
        out = [{"id": f"pack-{group:05d}-{i:09d}", "source": f"packed:{group}", "modality": "text",
                "text": None, "image": None, "audio": None, "meta": "{}",
                "tokens": np.asarray(row, dtype=self._dtype)}
               for i, row in enumerate(pack_tokens((d[2] for d in docs), self._length, self._eos, self._pad))]
        if out:
            yield Records(out)
        yield beam.pvalue.TaggedOutput("measure", (len(docs), n_tok, len(out)))


def packed_tokenizer_entry(packed_dir: str, info: dict[str, Any]) -> dict[str, Any]:
    """The packed manifest's ``tokenizer`` entry: the parent run's tokenizer, paths relative to
    ``packed/`` (``../tokenizer/spm.model``), with the packing's ids.

    ``parent`` is the run's output directory relative to ``packed/`` (``..``); ``length``,
    ``eos_id`` (the separator between documents), ``pad_id`` and ``dtype`` are the packing's.
    When the run trained its tokenizer (a ``*.model`` under ``OUT/tokenizer/``, written before
    any record was encoded) the entry also has what the run's own manifest says of it: ``model``,
    ``vocab``, ``type``, ``vocab_size``, ``sha256``, ``bos_id``, ``unk_id``. Manifests written
    before this entry existed have ``tokenizer: null``; ``winnow inspect`` then reads the parent.
    """
    import fsspec

    entry: dict[str, Any] = {"parent": "..", **info}
    run_dir = posixpath.dirname(packed_dir.rstrip("/"))
    try:
        fs, path = fsspec.core.url_to_fs(join_uri(run_dir, "tokenizer"))
        models = sorted(p for p in fs.ls(path, detail=False) if p.endswith(".model"))
    except (OSError, ValueError):
        models = []
    if len(models) != 1:
        return entry
    from winnow.tokenizer.train import model_entry

    with fs.open(models[0], "rb") as fh:
        model = fh.read()
    name = posixpath.basename(models[0])
    # the packing's own length, separator, pad id and dtype stand over the model's
    return {**model_entry(model, f"../tokenizer/{name}", f"../tokenizer/{name.removesuffix('.model')}.vocab"), **entry}


class _WriteManifestFn(beam.DoFn):
    def __init__(self, out_dir: str, schema: pa.Schema, length: int, info: dict[str, Any]) -> None:
        self._out, self._schema, self._length, self._info = out_dir, schema, length, info

    def process(self, _: Any, shards: list[dict], measures: list[tuple[int, int, int]]) -> Iterable[dict]:
        from winnow import __version__
        from winnow.format import ShardInfo

        infos = tuple(sorted((ShardInfo.from_json(s) for s in shards), key=lambda s: s.path))
        docs = sum(m[0] for m in measures)
        toks = sum(m[1] for m in measures)
        rows = sum(m[2] for m in measures)
        slots = rows * self._length
        counts = {"read": rows, "kept": rows, "rejected": 0, "dead_letter": 0, "augmented": 0,
                  "documents": docs, "tokens": toks, "padding": slots - toks - docs}
        m = Manifest(schema=self._schema, shards=infos, counts=counts, tokenizer=packed_tokenizer_entry(self._out, self._info),
                     created_by=f"winnow {__version__} (packed, length {self._length})")
        atomic_write(join_uri(self._out, "index.json"), m.dumps().encode("utf-8"))
        yield {"packing": {**self._info, "rows": rows, "documents": docs, "tokens": toks,
                           "padding_share": (slots - toks - docs) / slots if slots else 0.0,
                           "path": f"{PACKED_DIR}/index.json"}}


class PackTokens(beam.PTransform):
    """Pack the ``tokens`` of encoded records into ``OUT/packed/``; returns a stats PCollection."""

    def __init__(self, out_dir: str, sink: SinkConfig, length: int, eos_id: int, pad_id: int, dtype: np.dtype) -> None:
        super().__init__()
        self._out = join_uri(out_dir, PACKED_DIR)
        self._sink = sink
        self._length, self._eos, self._pad, self._dtype = length, eos_id, pad_id, np.dtype(dtype)

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        p = records.pipeline
        itemsize, shard_bytes, min_shards = self._dtype.itemsize, self._sink.shard_bytes, self._sink.min_shards
        dtype = self._dtype
        docs = records | "Docs" >> beam.FlatMap(
            lambda b: [(r["id"], r["source"], np.asarray(r["tokens"], dtype=dtype)) for r in b.rows
                       if r.get("tokens") is not None and len(r["tokens"])])
        total = docs | "Bytes" >> beam.Map(lambda d: (len(d[2]) + 1) * itemsize) | "Total" >> beam.CombineGlobally(sum)
        groups = total | "Groups" >> beam.Map(lambda t: shard_count(t, shard_bytes, min_shards))
        packed = (
            docs
            | "Assign" >> beam.Map(lambda d, k: (shard_index(d[0], d[1], k), d),
                                   k=beam.pvalue.AsSingleton(groups))
            | "Group" >> beam.GroupByKey()
            | "Pack" >> beam.ParDo(_PackGroupFn(self._length, self._eos, self._pad, self._dtype)).with_outputs(
                "measure", main="rows")
        )
        schema = packed_schema(self._dtype, self._length)
        shards = packed.rows | "Write" >> WriteShards(self._out, "shards", schema, self._sink, shown_as=PACKED_DIR)
        info = {"length": self._length, "eos_id": self._eos, "pad_id": self._pad, "dtype": self._dtype.name}
        return (
            p
            | "ManifestSeed" >> beam.Create([None])
            | "Manifest" >> beam.ParDo(_WriteManifestFn(self._out, schema, self._length, info),
                                       shards=beam.pvalue.AsList(shards),
                                       measures=beam.pvalue.AsList(packed.measure))
        )
