"""Records in batches: the element type of every record PCollection between stages.

A :class:`Records` holds a list of record dicts (the per-record view a stage works on) and
crosses process and fusion boundaries as one compressed blob: Beam's coders pickle it, and
:meth:`Records.__reduce__` makes that pickle the batch's own encoding, so a buffered or
shuffled batch costs less than its raw bytes (text compresses 2-3x) instead of a Python object
per value. Inside a fused stage, batches pass as Python objects and cost nothing to hand on.

Two encodings, both zstd level 1:

* rows (what stages make): the pickled list of dicts, compressed. Pickle keeps every value's
  exact type, and it is the cheapest way from dicts to bytes and back (measured on machine
  text: ~190 MB/s to encode and to decode, against ~60 and ~130 MB/s through Arrow), which
  matters because every stage reads dicts.
* Arrow (a batch made with :meth:`Records.from_arrow`, as the sink makes when it splits
  batches by shard): an Arrow IPC stream with compressed buffers, read back as Arrow without
  ever becoming dicts.

``len`` and the record count never decode a batch.

Beam samples the size of elements by encoding them (the first few of every output of every
step, then fewer); for a batch that would be a whole pickle and compression of up to
:data:`BATCH_RECORDS` records, several times over on a fused chain where the batch never leaves
the process. A :class:`Records` therefore declares itself observable
(:class:`~apache_beam.coders.observable.ObservableMixin`, Beam's way for a value to report its
size itself): it reports the length of its encoding when it holds one, and is never encoded
only to be measured.
"""

from __future__ import annotations

import operator
import pickle
from itertools import chain
from typing import Any, Callable, Iterable, Iterator, Sequence

import pyarrow as pa
from apache_beam.coders.observable import ObservableMixin

from winnow.pipeline.records import record_bytes
from winnow.shardio import row_sizes

__all__ = ["Records", "batch_rows", "record_weight", "rows_weight", "rows_to_arrow", "BATCH_RECORDS", "BATCH_BYTES"]

#: Most records in one batch made by a reader or a stage.
BATCH_RECORDS = 1024
#: About this many bytes of text and media in one batch (larger documents make smaller batches).
BATCH_BYTES = 4 << 20

_ARROW = b"A"
_ROWS = b"Z"
_ZSTD = pa.Codec("zstd", compression_level=1)
#: Arrow-held batches crossing a boundary: IPC with zstd-compressed buffers.
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression=_ZSTD)


def rows_to_arrow(rows: Sequence[dict]) -> pa.RecordBatch | None:
    """The rows as an Arrow record batch with inferred column types, or None when Arrow
    cannot hold every value exactly (``to_pylist`` would not give the same values back)."""
    names: dict[str, None] = {}
    for r in rows:
        for k in r:
            if k not in names:
                names[k] = None
    arrays = []
    try:
        for k in names:
            values = [r.get(k) for r in rows]
            arr = pa.array(values)
            t = arr.type
            if pa.types.is_float64(t) and any(type(v) is not float for v in values if v is not None):
                return None  # ints (or numpy scalars) among floats would come back as floats
            if not _exact_type(t):
                return None
            arrays.append(arr)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return None
    return pa.RecordBatch.from_arrays(arrays, names=list(names))


def _exact_type(t: pa.DataType) -> bool:
    """Types whose Python values come back unchanged from ``to_pylist``."""
    if pa.types.is_null(t) or pa.types.is_boolean(t) or pa.types.is_int64(t) or pa.types.is_float64(t):
        return True
    if pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t) or pa.types.is_large_binary(t):
        return True
    # token arrays come back as lists of the same integers
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_integer(t.value_type)


def _encode_arrow(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=_IPC_OPTIONS) as w:
        w.write_batch(batch)
    return _ARROW + sink.getvalue().to_pybytes()


def _encode_rows(rows: list[dict]) -> bytes:
    raw = pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
    return (_ROWS + len(rows).to_bytes(4, "little") + len(raw).to_bytes(8, "little")
            + _ZSTD.compress(raw, asbytes=True))


def _decode_rows(data: bytes) -> list[dict]:
    size = int.from_bytes(data[5:13], "little")
    return pickle.loads(_ZSTD.decompress(memoryview(data)[13:], decompressed_size=size, asbytes=True))


def _read_arrow(data: bytes) -> pa.RecordBatch:
    with pa.ipc.open_stream(memoryview(data)[1:]) as r:
        batches = list(r)
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _decode(data: bytes) -> "Records":
    out = Records.__new__(Records)
    out._rows = None
    out._data = data
    out._batch = None
    out._weight = None
    return out


class Records(ObservableMixin):
    """A batch of records (dicts keyed by column name).

    Args:
        rows: the records, in order.
    """

    __slots__ = ("_rows", "_data", "_batch", "_weight")

    def __init__(self, rows: Iterable[dict] = (), weight: int | None = None) -> None:
        self._rows: list[dict] | None = list(rows)
        self._data: bytes | None = None
        self._batch: pa.RecordBatch | None = None
        self._weight = weight

    def weight(self) -> int:
        """:func:`rows_weight` of the records: the ``weight`` it was made with (whoever made the
        batch had summed it already), else summed now."""
        if self._weight is None:
            self._weight = rows_weight(self.rows)
        return self._weight

    @classmethod
    def from_arrow(cls, batch: pa.RecordBatch) -> "Records":
        """A batch held as Arrow (its column types must be ones :meth:`rows` gives back
        unchanged: strings, binaries, int64, float64, booleans, integer lists)."""
        out = cls.__new__(cls)
        out._rows = None
        out._data = None
        out._batch = batch
        out._weight = None
        return out

    @property
    def rows(self) -> list[dict]:
        """The records as dicts (decoded on first access)."""
        if self._rows is None:
            if self._batch is not None:
                self._rows = self._batch.to_pylist()
            elif self._data is None:
                self._rows = []
            elif self._data[:1] == _ARROW:
                self._rows = _read_arrow(self._data).to_pylist()
            else:
                self._rows = _decode_rows(self._data)
            self._data = None
            self._batch = None
        return self._rows

    def arrow(self) -> pa.RecordBatch | None:
        """The batch as Arrow when it is held as Arrow (made by :meth:`from_arrow`, or
        arrived so encoded) and no stage has asked for its rows yet; else None."""
        if self._rows is None:
            if self._batch is not None:
                return self._batch
            if self._data is not None and self._data[:1] == _ARROW:
                return _read_arrow(self._data)
        return None

    def __len__(self) -> int:
        if self._rows is None:
            if self._batch is not None:
                return self._batch.num_rows
            if self._data is not None:
                if self._data[:1] == _ROWS:
                    return int.from_bytes(self._data[1:5], "little")
                with pa.ipc.open_stream(memoryview(self._data)[1:]) as r:
                    return sum(b.num_rows for b in r)
        return len(self.rows)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.rows)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        if self._rows is None:
            if self._data is not None:
                return _decode, (self._data,)
            if self._batch is not None:
                return _decode, (_encode_arrow(self._batch),)
        return _decode, (_encode_rows(self._rows or []),)

    def __repr__(self) -> str:
        return f"Records({len(self)} rows)"

    def register_observer(self, callback: Callable[..., None]) -> None:
        """Beam's size sampling (see the module docstring): the encoded size when the batch
        holds its encoding, else nothing (it is not encoded only to be measured)."""
        if self._data is not None:
            callback(self._data, is_encoded=True)

    def notify_observers(self, value: Any, **kwargs: Any) -> None:
        """Nothing observes a batch's contents (:meth:`register_observer` keeps no observer)."""

    def nbytes(self) -> int:
        """Bytes of the records as :func:`~winnow.pipeline.records.record_bytes` counts them
        (summed over Arrow columns when the batch is held as Arrow; no dicts are made)."""
        batch = self.arrow()
        if batch is not None:
            return int(row_sizes(batch).sum())
        return sum(record_bytes(r) for r in self.rows)


def record_weight(record: dict) -> int:
    """Bytes of text and media a record carries (what sizes a batch)."""
    n = 0
    for key in ("text", "image", "audio"):
        v = record.get(key)
        if v is not None:
            n += len(v)
    return n


_MEDIA = operator.itemgetter("text", "image", "audio")


def rows_weight(rows: Iterable[dict]) -> int:
    """``sum(record_weight(r) for r in rows)``, without a Python call per record when every
    record has the three columns (records made by the readers and stages do)."""
    rows = rows if isinstance(rows, (list, tuple)) else list(rows)
    try:
        return sum(map(len, filter(None, chain.from_iterable(map(_MEDIA, rows)))))
    except KeyError:  # a record without one of the columns
        return sum(record_weight(r) for r in rows)


def batch_rows(rows: Iterable[dict], max_records: int = BATCH_RECORDS,
               max_bytes: int = BATCH_BYTES) -> Iterator[Records]:
    """Cut a stream of records into batches of at most ``max_records`` records and about
    ``max_bytes`` of text and media (a single larger record makes a batch of its own)."""
    chunk: list[dict] = []
    size = 0
    for r in rows:
        chunk.append(r)
        size += record_weight(r)
        if len(chunk) >= max_records or size >= max_bytes:
            yield Records(chunk, weight=size)
            chunk, size = [], 0
    if chunk:
        yield Records(chunk, weight=size)
