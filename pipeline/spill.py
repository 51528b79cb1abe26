"""A GroupByKey whose values wait in files, for runners that shuffle in their own memory.

FnApiRunner (and its multi_processing mode) keeps every element of a GroupByKey in the
driver's memory, and when it hands the groups to a worker it builds one encoded copy of the
whole shuffle, then decodes it: a large shuffle costs about three times its size at once.
:class:`SpillingGroupByKey` writes the values to files as they are produced (one file per
``flush_bytes`` of a bundle, the values of a key together) and shuffles only small references;
after the shuffle each group's values are read back from the files, one group at a time. The
files are removed when every group has been read. A distributed runner's shuffle is a service
of its own: give it ``spill_dir=None`` and the transform is a plain GroupByKey.
"""

from __future__ import annotations

import os
import pickle
import posixpath
import tempfile
import uuid
from typing import Any, Iterable

import apache_beam as beam
import fsspec
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from winnow.shardio import join_uri

__all__ = ["SpillingGroupByKey", "SPILL_DIR", "SPILL_FLUSH_BYTES", "remove_when_done", "spill_prefix"]

#: spill folders under the output are named ``.tmp-spill-*`` (``.tmp-`` names are a killed
#: run's leftovers, removed by ``--overwrite``)
SPILL_DIR = ".tmp-spill"
#: bytes of values one bundle buffers before it writes them to a spill file
SPILL_FLUSH_BYTES = 32 * 10**6

#: what a spilled run of one key's values travels as: (file, offset, length)
Ref = tuple[str, int, int]


class _SpillValuesFn(beam.DoFn):
    def __init__(self, spill_dir: str, flush_bytes: int) -> None:
        self._dir = spill_dir
        self._flush_bytes = flush_bytes

    def start_bundle(self) -> None:
        self._values: dict[Any, list[bytes]] = {}
        self._bytes = 0

    def process(self, element: tuple[Any, Any]) -> Iterable[tuple[Any, Ref]]:
        key, value = element
        blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        self._values.setdefault(key, []).append(blob)
        self._bytes += len(blob) + 64
        if self._bytes >= self._flush_bytes:
            yield from self._flush()

    def finish_bundle(self) -> Iterable[WindowedValue]:
        for ref in self._flush():
            yield WindowedValue(ref, MIN_TIMESTAMP, [GlobalWindow()])

    def _flush(self) -> list[tuple[Any, Ref]]:
        if not self._values:
            return []
        values, self._values, self._bytes = self._values, {}, 0
        uri = join_uri(self._dir, f"{uuid.uuid4().hex}.spill")
        fs, path = fsspec.core.url_to_fs(uri)
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        refs: list[tuple[Any, Ref]] = []
        offset = 0
        with fs.open(path, "wb") as fh:
            for key in list(values):
                frame = pickle.dumps(values.pop(key), protocol=pickle.HIGHEST_PROTOCOL)
                fh.write(frame)
                refs.append((key, (uri, offset, len(frame))))
                offset += len(frame)
        return refs


def spill_prefix(output: str, local: bool) -> str:
    """The path prefix of a run's spill folders (``<prefix>-<name>``): ``OUT/.tmp-spill`` when
    the output is on this machine's disk or the runner's workers are elsewhere (they must all
    reach it); for a local runner writing to an object store, ``winnow-spill-<uuid>`` in this
    machine's temporary directory (faster than the store, and the workers all run here)."""
    fs, _ = fsspec.core.url_to_fs(output)
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if not local or "file" in protocols or "local" in protocols:
        return join_uri(output, SPILL_DIR)
    return os.path.join(tempfile.gettempdir(), f"winnow-spill-{uuid.uuid4().hex}")


def _read_group(element: tuple[Any, Iterable[Ref]]) -> Iterable[tuple[Any, list]]:
    key, refs = element
    by_file: dict[str, list[tuple[int, int]]] = {}
    for uri, offset, length in refs:
        by_file.setdefault(uri, []).append((offset, length))
    values: list = []
    for uri in sorted(by_file):
        with fsspec.open(uri, "rb") as fh:
            for offset, length in sorted(by_file[uri]):
                fh.seek(offset)
                values.extend(pickle.loads(b) for b in pickle.loads(fh.read(length)))
    yield key, values


def remove_when_done(done: beam.PCollection, spill_dir: str) -> None:
    """Remove ``spill_dir`` once every element of ``done`` exists (nothing reads it after)."""

    def remove(_n: int) -> None:
        fs, path = fsspec.core.url_to_fs(spill_dir)
        if fs.exists(path):
            fs.rm(path, recursive=True)

    _ = done | "Done" >> beam.combiners.Count.Globally() | "RemoveSpill" >> beam.Map(remove)


class SpillingGroupByKey(beam.PTransform):
    """``GroupByKey`` that spills its values to files in a folder ``<spill_dir>-<uuid>``
    (``spill_dir`` None: a plain GroupByKey).

    Applied to a PCollection, or to a tuple of them: each is spilled on its own and only the
    references are flattened (a Flatten of the values themselves is a full in-memory buffer on
    FnApiRunner). Returns ``(key, values)`` pairs like GroupByKey, ``values`` a list. Memory: a
    bundle holds up to ``flush_bytes`` of pickled values before it writes them; the reader
    holds one group.
    """

    def __init__(self, spill_dir: str | None, flush_bytes: int = SPILL_FLUSH_BYTES, label: str | None = None) -> None:
        super().__init__(label)
        # one folder per transform (``<spill_dir>-<uuid>``), removed as soon as its groups are read
        self._dir = None if spill_dir is None else f"{spill_dir.rstrip('/')}-{uuid.uuid4().hex}"
        self._flush_bytes = flush_bytes

    def expand(self, pcoll: beam.PCollection | tuple[beam.PCollection, ...]) -> beam.PCollection:
        inputs = tuple(pcoll) if isinstance(pcoll, (tuple, list)) else (pcoll,)
        if self._dir is None:
            flat = inputs[0] if len(inputs) == 1 else inputs | "Flatten" >> beam.Flatten()
            return flat | "GroupByKey" >> beam.GroupByKey()
        spill_dir = self._dir
        refs = [p | f"Spill{i}" >> beam.ParDo(_SpillValuesFn(spill_dir, self._flush_bytes))
                for i, p in enumerate(inputs)]
        grouped = (refs | "FlattenRefs" >> beam.Flatten() | "GroupRefs" >> beam.GroupByKey()
                   | "ReadBack" >> beam.FlatMap(_read_group))
        remove_when_done(grouped, spill_dir)
        return grouped
