"""``exact_dedup``: group records by a content hash, keep the smallest (id, source) of each group.

Only keys are shuffled, packed: each batch gives, per shuffle partition of the content hash,
one compressed blob of ``(16-byte content hash, id, source)`` entries; a GroupByKey by
partition finds the groups with more than one member and decides their survivor. The decisions
(16 bytes of member hash plus a group number per member of a duplicate group, and each group's
survivor) reach the records as one small side input, looked up with a binary search. The
records themselves stay in their batches and are never grouped, so the shuffle carries the
keys compressed and the side input about 20 bytes per duplicate, whatever the document size.
"""

from __future__ import annotations

import pickle
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import xxhash

from winnow.filters.exact import ExactDedupConfig, exact_key, pick_survivor
from winnow.pipeline.stages.base import DEAD, REJECTED, TIMING, Emit, StageFn, StageOutputs, run_step
from winnow.pipeline.stages.spec import BuildContext, StageDecl

__all__ = ["DECLARATION", "ExactDedup", "FIELDS", "REASON", "NAME", "DuplicateTable"]

NAME = "exact_dedup"
REASON = "exact_dedup_duplicate"
#: The kept record of a group says how many copies there were (1 = unique).
FIELDS = (pa.field("exact_dup_count", pa.int64(), nullable=True),)
_KEYS = "keys"
_ZSTD = pa.Codec("zstd", compression_level=1)


def _pack(obj: Any) -> bytes:
    raw = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return len(raw).to_bytes(8, "little") + _ZSTD.compress(raw, asbytes=True)


def _unpack(blob: bytes) -> Any:
    size = int.from_bytes(blob[:8], "little")
    return pickle.loads(_ZSTD.decompress(memoryview(blob)[8:], decompressed_size=size, asbytes=True))


def member_hash(id_: Any, source: Any) -> bytes:
    """16 bytes naming one record by its (id, source) (xxh3-128; collisions are negligible)."""
    return xxhash.xxh3_128_digest(f"{id_}\x00{source}".encode("utf-8", "surrogatepass"))


class _KeyFn(StageFn):
    def __init__(self, cfg: ExactDedupConfig) -> None:
        super().__init__(NAME, last=False)
        self._cfg = cfg

    def start(self) -> None:
        self._parts: dict[int, list] = {}

    def compute(self, rows: list[dict], *side: Any) -> Sequence[Any]:
        return [bytes.fromhex(exact_key(r, self._cfg)) for r in rows]

    def route(self, row: dict, key: bytes, out: Emit) -> None:
        out.keep(row)
        part = int.from_bytes(key[:8], "little") % self._cfg.partitions
        self._parts.setdefault(part, []).append((key, row["id"], row["source"]))

    def finish_batch(self, out: Emit) -> None:
        for part in sorted(self._parts):
            out.emit(_KEYS, (part, _pack(self._parts[part])))
        self._parts = {}


def _decide(element: tuple[int, Iterable[bytes]]) -> Iterator[bytes]:
    """One partition's keys -> one packed table of its duplicate groups (nothing if none):
    member hashes, each member's group number, and each group's survivor and size."""
    _, blobs = element
    groups: dict[bytes, list[tuple[str, str]]] = {}
    for blob in blobs:
        for key, id_, source in _unpack(blob):
            groups.setdefault(key, []).append((id_, source))
    members: list[bytes] = []
    group_of: list[int] = []
    survivors: list[tuple[Any, Any, int]] = []
    for found in groups.values():
        if len(found) < 2:
            continue
        best = pick_survivor(found)
        g = len(survivors)
        survivors.append((best[0], best[1], len(found)))
        for m in found:
            members.append(member_hash(*m))
            group_of.append(g)
    if survivors:
        yield _pack((b"".join(members), np.asarray(group_of, dtype=np.int32).tobytes(), survivors))


class DuplicateTable:
    """The decisions of every partition, searchable by member hash (built once per worker)."""

    def __init__(self, blobs: Iterable[bytes]) -> None:
        keys, groups, self._survivors = [], [], []
        for blob in blobs:
            members, group_of, survivors = _unpack(blob)
            keys.append(np.frombuffer(members, dtype="S16"))
            groups.append(np.frombuffer(group_of, dtype=np.int32).astype(np.int64) + len(self._survivors))
            self._survivors.extend(survivors)
        self._keys = np.concatenate(keys) if keys else np.empty(0, dtype="S16")
        group = np.concatenate(groups) if groups else np.empty(0, dtype=np.int64)
        order = np.argsort(self._keys, kind="stable")
        self._keys, self._group = self._keys[order], group[order]

    def __len__(self) -> int:
        return len(self._keys)

    def lookup(self, rows: Sequence[dict]) -> list[tuple | None]:
        """Per row: None (not a duplicate), (None, None, n) for a group's survivor, else
        (survivor id, survivor source, n)."""
        if not len(self._keys) or not rows:
            return [None] * len(rows)
        wanted = np.frombuffer(b"".join(member_hash(r["id"], r["source"]) for r in rows), dtype="S16")
        at = np.searchsorted(self._keys, wanted)
        at[at == len(self._keys)] = 0
        hit = self._keys[at] == wanted
        out: list[tuple | None] = []
        for r, h, i in zip(rows, hit, at):
            if not h:
                out.append(None)
                continue
            sid, ssource, n = self._survivors[self._group[i]]
            out.append((None, None, n) if (r["id"], r["source"]) == (sid, ssource) else (sid, ssource, n))
        return out


class _ApplyFn(StageFn):
    def __init__(self) -> None:
        super().__init__(NAME, first=False, fields=FIELDS)
        self._side: Any = None
        self._table: DuplicateTable | None = None

    def compute(self, rows: list[dict], decided: list) -> Sequence[Any]:
        if self._table is None or decided is not self._side:
            self._side, self._table = decided, DuplicateTable(decided)
        return self._table.lookup(rows)

    def route(self, row: dict, d: tuple | None, out: Emit) -> None:
        row = dict(row)
        if d is None:
            row["exact_dup_count"] = 1
            out.keep(row)
        elif d[0] is None:
            row["exact_dup_count"] = d[2]
            out.keep(row)
        else:
            row["exact_dup_count"] = None
            out.reject(row, REASON, d[0], d[1])


class ExactDedup(beam.PTransform):
    """Keep one record per exact-duplicate group (smallest id, then source); see the module
    docstring for what is shuffled."""

    def __init__(self, cfg: ExactDedupConfig | None = None) -> None:
        super().__init__(label=NAME)
        self._cfg = cfg or ExactDedupConfig()

    def expand(self, records: beam.PCollection) -> StageOutputs:
        keyed = run_step(records, "Key", _KeyFn(self._cfg), tags=(_KEYS,))
        decided = keyed[_KEYS] | "Group" >> beam.GroupByKey() | "Decide" >> beam.FlatMap(_decide)
        applied = run_step(keyed.kept, "Apply", _ApplyFn(), beam.pvalue.AsList(decided))
        return StageOutputs(
            kept=applied.kept,
            rejected=applied[REJECTED],
            dead=(keyed[DEAD], applied[DEAD]) | "Dead" >> beam.Flatten(),
            timing=(keyed[TIMING], applied[TIMING]),
        )


def _build(cfg: ExactDedupConfig, ctx: BuildContext) -> beam.PTransform:
    return ExactDedup(cfg)


DECLARATION = StageDecl(NAME, ExactDedupConfig, _build, lambda cfg: FIELDS, (REASON,))
