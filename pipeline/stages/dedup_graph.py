"""The Beam half of near-duplicate removal, shared by ``minhash_dedup`` and ``image_dedup``.

Given records keyed by their node (see :func:`winnow.filters.dedup.cluster.node_key`) and LSH
band keys, :class:`ClusterAndPick`:

1. groups by band key and links every member of a bucket to the bucket's smallest node
   (a star, never all pairs; the bucket is read twice, never held in memory);
2. removes repeated edges, and optionally verifies each edge (:class:`VerifyEdges`);
3. runs ``max_rounds`` unrolled large-star / small-star rounds (two GroupByKeys each) and
   counts, as data, the edges each round changed; a round that changes nothing proves
   convergence, and the edges skip the later rounds (a gate reads the round's change count as
   a side input), which would only pass them through unchanged;
4. labels each node with its smallest neighbour, groups by label to size the clusters
   (reading each cluster twice), and joins labels back to the records: the label's record is
   kept with ``<prefix>_cluster`` and ``<prefix>_cluster_size``; every other member is
   rejected with ``duplicate_of`` and the cluster id.

No step gathers the corpus or a cluster on one worker. If the rounds run out before
convergence, each record still ends in exactly one place and every component still keeps its
smallest record, but a component may keep more than one record and a reject's
``duplicate_of`` may point at another reject; stats say ``cc_converged: false`` (and
``on_not_converged: fail`` fails the run instead).
"""

from __future__ import annotations

import base64
import itertools
import pickle
import threading
from typing import Any, Callable, Iterable

import apache_beam as beam
import numpy as np
import pyarrow as pa
import xxhash
from apache_beam.metrics import Metrics

from winnow.filters.dedup.cluster import (
    large_star,
    node_key,
    large_star_changes,
    small_star,
    small_star_changes,
    multi_star_edges,
    star_edges,
)
from winnow.pipeline.spill import SpillingGroupByKey
from winnow.pipeline.stages.base import DEAD, REJECTED, TIMING, Emit, StageFn, TimedFn, explode, run_step
from winnow.pipeline.stages.stats import HistogramFn

__all__ = ["ClusterAndPick", "VerifyEdges", "SIZE_EDGES", "COMPARED", "NodeOf", "BucketPacker", "pack_payloads", "unpack_payloads",
           "select_payloads", "node_partition"]

#: Edges of the cluster-size histogram (clusters of two or more records).
SIZE_EDGES = (2, 3, 4, 5, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384, 65536, 1 << 20, 1 << 30)
_CHANGES = "changes"
_SIZES = "sizes"
_UNRESOLVED = "unresolved"
_FINAL = "final"
#: A private flag the signing step sets on records it put in buckets (removed by the pick).
COMPARED = _COMPARED = "_dedup_compared"


class _StarEdgesFn(TimedFn):
    def __init__(self, stage: str, similar: Callable[[Any, Any], bool] | None, roots: int = 1) -> None:
        super().__init__(stage)
        self._stage, self._similar, self._roots = stage, similar, roots

    def setup(self) -> None:
        self._big = Metrics.distribution("winnow", f"{self._stage}/bucket_size")

    def work(self, element: tuple[bytes, Iterable[tuple]]) -> Iterable[tuple]:
        _, members = element
        n = 0
        for _m in members:
            n += 1
            if n > 1:
                break
        if n < 2:
            return
        count = 0
        edges = (star_edges(members, self._similar) if self._roots == 1 or self._similar is not None
                 else multi_star_edges(members, self._roots))
        for edge in edges:
            count += 1
            yield edge
        self._big.update(count + 1)


class BucketPacker:
    """Band entries of the records added since the last drain (a batch, or the batches of a
    bundle), packed as one compressed blob per shuffle partition.

    A record signed with ``b`` bands would otherwise enter the shuffle as ``b`` elements, each
    a Python object with its own copy of the node, which a local runner's shuffle buffer holds
    decoded (about 0.5 KB each). Packed, a drain is at most ``partitions`` elements, each one
    ``bytes``: the partition's band keys (fixed width), an index per key into the partition's
    node list, and that list (each node once), zstd-compressed. Buckets are then found by
    sorting a partition's keys (:class:`_PackedBucketsFn`); a bucket never spans partitions
    because the partition is a function of the key.

    Args:
        partitions: how many shuffle keys; a partition's keys are sorted on one worker, so
            raise it with the corpus (256 holds ~100M documents at ~6M keys per partition).
        key_width: bytes per band key (all keys of a run have this width).
    """

    def __init__(self, partitions: int, key_width: int) -> None:
        self.partitions, self.key_width = partitions, key_width
        self._dtype = np.dtype(f"S{key_width}")
        self._nodes: list[Any] = []
        self._keys: list[np.ndarray] = []
        self._counts: list[int] = []
        #: keys added since the last drain
        self.pending = 0

    def add(self, node: Any, keys: Iterable[bytes] | np.ndarray) -> None:
        """A node and its band keys (``key_width`` bytes each, or an array of ``S<key_width>``)."""
        if isinstance(keys, np.ndarray):
            arr = keys.reshape(-1)
            if arr.dtype != self._dtype:
                raise ValueError(f"band keys of dtype {arr.dtype}, expected {self._dtype}")
        else:
            arr = np.frombuffer(b"".join(keys), dtype=self._dtype)
        self._nodes.append(node)
        self._keys.append(arr)
        self._counts.append(len(arr))
        self.pending += len(arr)

    def drain(self) -> Iterable[tuple[int, bytes]]:
        """``(partition, blob)`` for every partition the added keys are in; then empty."""
        if not self.pending:
            return
        nodes, n = self._nodes, len(self._nodes)
        keys = np.concatenate(self._keys)
        refs = np.repeat(np.arange(n, dtype=np.int64), self._counts)
        self._nodes, self._keys, self._counts, self.pending = [], [], [], 0
        w = self.key_width
        # the partition: 8 bytes of the key's hash (after the 2-byte band number) modulo P
        part = (np.frombuffer(keys.tobytes(), dtype=np.uint8).reshape(len(keys), w)[:, 2:10]
                .copy().view("<u8").ravel() % np.uint64(self.partitions)).astype(np.int64)
        order = np.argsort(part, kind="stable")
        ps, rs, ks = part[order], refs[order], keys[order]
        # each partition's nodes once, in node order, and each key's index into them: one
        # np.unique of (partition, node) for all partitions
        pairs, local = np.unique(ps * n + rs, return_inverse=True)
        pair_part = pairs // n
        used = (pairs % n).tolist()
        first_pair = np.searchsorted(pair_part, ps)
        local = (local.reshape(-1) - first_pair).astype(np.int32)
        bounds = np.flatnonzero(np.diff(ps)) + 1
        starts = [0, *bounds.tolist()]
        ends = [*bounds.tolist(), len(ps)]
        pair_bounds = np.searchsorted(pair_part, ps[starts]).tolist() + [len(pairs)]
        for i, (a, b) in enumerate(zip(starts, ends)):
            part_nodes = [nodes[j] for j in used[pair_bounds[i]:pair_bounds[i + 1]]]
            raw = pickle.dumps((ks[a:b].tobytes(), local[a:b].tobytes(), part_nodes),
                               protocol=pickle.HIGHEST_PROTOCOL)
            yield int(ps[a]), len(raw).to_bytes(8, "little") + _ZSTD.compress(raw, asbytes=True)


_ZSTD = pa.Codec("zstd", compression_level=1)


def unpack_payloads(blob: bytes) -> list[tuple[Any, Any]]:
    """The ``(node, payload)`` pairs of one :func:`pack_payloads` blob."""
    nodes, entries, framed = _blob_entries(blob)
    return list(zip(nodes, [_unship(e) for e in entries] if framed else entries))


def _unpack(blob: bytes) -> Any:
    size = int.from_bytes(blob[:8], "little")
    return pickle.loads(_ZSTD.decompress(memoryview(blob)[8:], decompressed_size=size, asbytes=True))


class _PackedBucketsFn(TimedFn):
    """One partition's packed band entries: sort the keys, and link every member of each
    bucket (a run of equal keys, two members or more) to the bucket's ``roots`` smallest nodes."""

    def __init__(self, stage: str, key_width: int, roots: int = 1) -> None:
        super().__init__(stage)
        self._stage, self._width, self._roots = stage, key_width, roots

    def setup(self) -> None:
        self._big = Metrics.distribution("winnow", f"{self._stage}/bucket_size")

    def work(self, element: tuple[int, Iterable[bytes]]) -> Iterable[tuple]:
        _, blobs = element
        keys, refs, nodes = [], [], []
        for blob in blobs:
            k, local, ns = _unpack(blob)
            keys.append(np.frombuffer(k, dtype=f"S{self._width}"))
            refs.append(np.frombuffer(local, dtype=np.int32).astype(np.int64) + len(nodes))
            nodes.extend(ns)
        if not keys:
            return
        allkeys = np.concatenate(keys)
        allrefs = np.concatenate(refs)
        del keys, refs
        order = np.argsort(allkeys, kind="stable")
        sk = allkeys[order]
        starts = np.flatnonzero(np.concatenate(([True], sk[1:] != sk[:-1])))
        ends = np.append(starts[1:], len(sk))
        for a, b in zip(starts[ends - starts >= 2], ends[ends - starts >= 2]):
            members = [(nodes[i], None) for i in allrefs[order[a:b]]]
            count = 0
            for edge in star_edges(members) if self._roots == 1 else multi_star_edges(members, self._roots):
                count += 1
                yield edge
            self._big.update(count + 1)


class _StarRoundFn(TimedFn):
    """A step of a connected-component round: the edges it rewires are counted over the bundle
    and go out once, as ``(round, count)`` on the ``changes`` output, at its end."""

    def __init__(self, stage: str, round_: int) -> None:
        super().__init__(stage)
        self._round = round_
        self._changed = 0

    def start_bundle(self) -> None:
        super().start_bundle()
        self._changed = 0

    def finish_bundle(self) -> Iterable[Any]:
        from apache_beam.transforms.window import GlobalWindows

        yield from super().finish_bundle()
        if self._changed:
            yield beam.pvalue.TaggedOutput(_CHANGES, GlobalWindows.windowed_value((self._round, self._changed)))
        self._changed = 0


class _LargeStarFn(_StarRoundFn):
    def work(self, element: tuple[tuple, Iterable[tuple]]) -> Iterable[Any]:
        u, nbrs = element
        self._changed += large_star_changes(u, nbrs)
        yield from large_star(u, nbrs)


class _SmallStarFn(_StarRoundFn):
    def work(self, element: tuple[tuple, Iterable[tuple]]) -> Iterable[Any]:
        u, smaller = element
        self._changed += small_star_changes(u, smaller)
        yield from small_star(u, smaller)


def _both_ways(edge: tuple) -> Iterable[tuple]:
    hi, lo = edge
    yield hi, lo
    yield lo, hi


class _ClusterSizeFn(TimedFn):
    """Per label: count the members (pass 1), then tell each member and the root (pass 2)."""

    def work(self, element: tuple[tuple, Iterable[tuple]]) -> Iterable[Any]:
        root, members = element
        size = 1
        for _m in members:
            size += 1
        yield beam.pvalue.TaggedOutput(_SIZES, size)
        yield root, (root, size)
        for m in members:
            yield m, (root, size)


class _GateFn(beam.DoFn):
    """An edge enters the round when the round before changed something (``changed``: its
    ``(round, count)`` per bundle, empty when nothing changed), else it is final (the ``final``
    output)."""

    def process(self, edge, changed):  # no annotations: Beam would read them as type hints
        if changed:
            yield edge
        else:
            yield beam.pvalue.TaggedOutput(_FINAL, edge)


class NodeOf:
    """``node_key`` with a stage's keep rule, as a picklable function."""

    def __init__(self, keep: str, keep_field: str) -> None:
        self._keep, self._field = keep, keep_field

    def __call__(self, record: dict) -> tuple:
        return node_key(record, self._keep, self._field)


def _resolve(element: tuple[tuple, Iterable[tuple]]) -> Iterable[Any]:
    """A node's assignment: the smallest label it was given (more than one means the rounds ran
    out before convergence; counted as unresolved)."""
    node, assigned = element
    label, size, n = None, 1, 0
    for lab, sz in assigned:
        n += 1
        if label is None or lab < label:
            label, size = lab, sz
    if n > 1:
        yield beam.pvalue.TaggedOutput(_UNRESOLVED, 1)
    yield node, (label, size)


class _PickFn(StageFn):
    """Per record: its cluster's label from the side input; the label's record is kept."""

    def __init__(self, stage: str, reason: str, prefix: str, node_of: Callable[[dict], tuple],
                 fields: tuple) -> None:
        super().__init__(stage, first=False, fields=fields)
        self._reason, self._node_of = reason, node_of
        self._cname, self._csize = f"{prefix}_cluster", f"{prefix}_cluster_size"

    def compute(self, rows: list[dict], assigned: dict) -> list[Any]:
        out = []
        for r in rows:
            if not r.get(_COMPARED):
                out.append(None)
                continue
            node = self._node_of(r)
            out.append((node, assigned.get(node)))
        return out

    def route(self, row: dict, result: Any, out: Emit) -> None:
        row = dict(row)
        row.pop(_COMPARED, None)
        if result is None:  # not compared: passes through with null columns
            row[self._cname] = row[self._csize] = None
            out.keep(row)
            return
        node, assignment = result
        if assignment is None:  # in no cluster: its own
            row[self._cname], row[self._csize] = node[1], 1
            out.keep(row)
            return
        label, size = assignment
        if label is None or label == node:
            row[self._cname], row[self._csize] = node[1], size
            out.keep(row)
            return
        row[self._cname], row[self._csize] = label[1], size
        out.reject(row, self._reason, label[1], label[2])


class _RoundStats(beam.DoFn):
    def __init__(self, stage: str, max_rounds: int, fail: bool) -> None:
        self._stage, self._max, self._fail = stage, max_rounds, fail

    def process(self, _: Any, changes: list, unresolved: list) -> Iterable[dict]:
        by_round = dict(changes)
        per = [int(by_round.get(r, 0)) for r in range(self._max)]
        rounds = next((r for r, c in enumerate(per) if c == 0), None)
        converged = rounds is not None
        taken = rounds if converged else self._max
        Metrics.counter("winnow", f"{self._stage}/cc_rounds").inc(taken)
        if not converged:
            Metrics.counter("winnow", f"{self._stage}/cc_not_converged").inc()
            if self._fail:
                raise RuntimeError(
                    f"{self._stage}: connected components did not converge in max_rounds={self._max} "
                    f"(edges changed per round: {per}); raise {self._stage}.max_rounds or set "
                    f"{self._stage}.on_not_converged=flag")
        yield {"cc_rounds": taken, "cc_max_rounds": self._max, "cc_converged": converged,
               "cc_changes_per_round": per, "cc_unresolved_nodes": int(sum(unresolved))}


def _sum(pc: beam.PCollection, label: str) -> beam.PCollection:
    return pc | label >> beam.CombineGlobally(sum)


def node_partition(node: Any, partitions: int) -> int:
    """The shuffle partition of a node (stable across processes and runners)."""
    return xxhash.xxh3_64_intdigest(repr(node).encode("utf-8", "surrogatepass")) % partitions


def pack_payloads(pairs: Iterable[tuple[Any, Any]], partitions: int) -> Iterable[tuple[int, bytes]]:
    """``(node, payload)`` pairs as one compressed blob per partition of the node.

    A blob of text payloads holds each text of :data:`_SHIP_MIN_CHARS` characters or more as a
    zstd frame of its own (:func:`_ship`), so a reader decompresses only the texts it looks up
    and passes a text on without compressing it again; any other blob is compressed whole."""
    parts: dict[int, tuple[list, list]] = {}
    for node, payload in pairs:
        nodes, payloads = parts.setdefault(node_partition(node, partitions), ([], []))
        nodes.append(node)
        payloads.append(payload)
    for k in sorted(parts):
        nodes, payloads = parts[k]
        if all(isinstance(p, str) for p in payloads):
            yield k, _make_blob(nodes, [_ship(p) for p in payloads], True)
        else:
            yield k, _make_blob(nodes, payloads, False)


_FRAMED, _WHOLE = b"F", b"W"


def _make_blob(nodes: list, entries: list, framed: bool) -> bytes:
    """A payload blob: ``framed`` entries are :func:`_ship` forms (texts compressed one by one),
    pickled as they are; other payloads are pickled and compressed together."""
    raw = pickle.dumps((nodes, entries), protocol=pickle.HIGHEST_PROTOCOL)
    if framed:
        return _FRAMED + raw
    return _WHOLE + len(raw).to_bytes(8, "little") + _ZSTD.compress(raw, asbytes=True)


def _blob_entries(blob: bytes) -> tuple[list, list, bool]:
    """``(nodes, entries, framed)`` of a :func:`_make_blob` blob (frames stay compressed)."""
    if blob[:1] == _FRAMED:
        nodes, entries = pickle.loads(memoryview(blob)[1:])
        return nodes, entries, True
    nodes, entries = _unpack(memoryview(blob)[1:])
    return nodes, entries, False


def select_payloads(blobs: Iterable[bytes], wanted: Any) -> bytes | None:
    """One blob of the entries of ``blobs`` (of one partition) whose node is in ``wanted``, or
    None when there is none; texts stay the frames they were (nothing is decompressed)."""
    nodes: list = []
    entries: list = []
    framed: list[bool] = []
    for blob in blobs:
        ns, es, fr = _blob_entries(blob)
        for n, e in zip(ns, es):
            if n in wanted:
                nodes.append(n)
                entries.append(e)
                framed.append(fr)
    if not nodes:
        return None
    if all(framed):
        return _make_blob(nodes, entries, True)
    return _make_blob(nodes, [_unship(e) if fr else e for e, fr in zip(entries, framed)], False)


class _Payloads:
    """A partition's payloads by node, from its blobs; a text is decompressed when looked up."""

    __slots__ = ("_by",)

    def __init__(self, values: Iterable[tuple[str, Any]]) -> None:
        by: dict = {}
        for t, v in values:
            if t == "p":
                nodes, entries, framed = _blob_entries(v)
                for n, e in zip(nodes, entries):
                    by[n] = (framed, e)
        self._by = by

    def get(self, node: Any) -> Any:
        """The node's payload (None without one)."""
        got = self._by.get(node)
        if got is None:
            return None
        return _unship(got[1]) if got[0] else got[1]

    def shipped(self, node: Any) -> Any:
        """The node's payload as it travels (:func:`_ship`), without compressing a text again."""
        got = self._by.get(node)
        if got is None:
            return None
        return got[1] if got[0] else _ship(got[1])


#: A text payload longer than this travels zstd-compressed between the two joins of VerifyEdges.
_SHIP_MIN_CHARS = 256
#: Edge groups whose payloads :class:`VerifyEdges` prepares together (``check.prepare_many``).
_CHECK_CHUNK = 512


_CODECS = threading.local()  # zstandard's (de)compressors are not thread-safe


def _codecs() -> tuple[Any, Any]:
    got = getattr(_CODECS, "pair", None)
    if got is None:
        import zstandard

        got = _CODECS.pair = (zstandard.ZstdCompressor(level=1), zstandard.ZstdDecompressor())
    return got


def _ship(payload: Any) -> Any:
    # a text is one zstd frame (zstandard: a third of pyarrow's cost per call on texts of a few KB)
    if isinstance(payload, str) and len(payload) >= _SHIP_MIN_CHARS:
        raw = payload.encode("utf-8", "surrogatepass")
        return ("z", len(raw), _codecs()[0].compress(raw))
    return payload


def _unship(shipped: Any) -> Any:
    if isinstance(shipped, tuple) and len(shipped) == 3 and shipped[0] == "z":
        raw = _codecs()[1].decompress(shipped[2], max_output_size=shipped[1])
        return raw.decode("utf-8", "surrogatepass")
    return shipped


class VerifyEdges(beam.PTransform):
    """Keep an edge ``(u, v)`` only if ``check(payload[u], payload[v])``.

    Payloads arrive packed (:func:`pack_payloads`: per batch, one blob per partition of the
    node), so the shuffles hold a few compressed blobs instead of one Python element per node.
    Two shuffles by partition: edges meet ``u``'s payload, then ``v``'s; a worker holds one
    partition's payloads (about nodes / partitions of them) at a time. Between the two, ``u``'s
    payload travels once per partition of its neighbours (texts compressed), not once per edge.

    Args:
        payloads: ``(partition, blob)`` elements covering every node that may be on an edge.
        check: a picklable object: ``check.prepare(payload)`` turns a node's payload (None for a
            node without one) into what ``check(prepared_u, prepared_v)`` compares, once per
            node and partition; ``check.setup()`` is called once per worker if it has one, and
            ``check.prepare_many(payloads)`` (a list of what ``prepare`` gives, in order), if it
            has one, prepares a chunk of payloads at once.
        partitions: the partition count ``payloads`` was packed with.
            ``check`` returns True (keep), False (drop) or, with ``undecided``, None (neither).
        undecided: return ``(kept, undecided)`` edges instead of the kept edges alone.
        weighted: kept edges are ``(u, v, check.similarity(prepared_u, prepared_v))``
            (for clusterings that weigh edges).
        spill_dir: the two shuffles spill their values there (see
            :class:`~winnow.pipeline.spill.SpillingGroupByKey`); None shuffles in the runner.
        stage: the stage whose CPU time the attach and check steps count toward; once applied,
            :attr:`timings` holds their timing outputs (wire them into the stage's timing;
            :class:`ClusterAndPick` does for its ``verify``). None: untimed.
    """

    def __init__(self, payloads: beam.PCollection, check: Any, partitions: int, undecided: bool = False,
                 weighted: bool = False, spill_dir: str | None = None, stage: str | None = None) -> None:
        super().__init__()
        self._payloads, self._check, self._partitions = payloads, check, partitions
        self._undecided, self._weighted = undecided, weighted
        self._spill_dir = spill_dir
        self._stage = stage
        self.timings: list[beam.PCollection] = []

    def expand(self, edges: beam.PCollection) -> Any:
        check, parts, weighted, stage = self._check, self._partitions, self._weighted, self._stage

        class _Attach(TimedFn):
            def work(self, element):
                _, values = element
                payload = _Payloads(values)
                # u's payload travels once per partition of its neighbours (not once per edge),
                # and a text travels compressed: a node on many edges is not copied per edge
                by_u: dict = {}
                part_of: dict = {}
                for t, v in values:
                    if t == "e":
                        u, w = v
                        pw = part_of.get(w)
                        if pw is None:
                            pw = part_of[w] = node_partition(w, parts)
                        by_u.setdefault(u, {}).setdefault(pw, []).append(w)
                for u, groups in by_u.items():
                    shipped = payload.shipped(u)
                    for pw, ws in groups.items():
                        yield pw, ("e", (u, ws, shipped))

        class _Check(TimedFn):
            def setup(self):
                if hasattr(check, "setup"):
                    check.setup()

            def work(self, element):
                _, values = element
                payload = _Payloads(values)
                prepared: dict = {}
                many = getattr(check, "prepare_many", None)
                groups = (e for t, e in values if t == "e")
                while True:
                    # a chunk of edge groups at a time: prepared together when the check can
                    # (one batched call instead of one per payload)
                    chunk = list(itertools.islice(groups, _CHECK_CHUNK))
                    if not chunk:
                        break
                    if many is not None:
                        new = list(dict.fromkeys(w for _, ws, _ in chunk for w in ws if w not in prepared))
                        prepared.update(zip(new, many([payload.get(w) for w in new])))
                        pus = many([_unship(shipped) for _, _, shipped in chunk])
                    else:
                        pus = None
                    for i, (u, ws, shipped) in enumerate(chunk):
                        # once per edge group, not once per edge
                        pu = pus[i] if pus is not None else check.prepare(_unship(shipped))
                        for w in ws:
                            if w not in prepared:
                                prepared[w] = check.prepare(payload.get(w))
                            ok = check(pu, prepared[w])
                            if ok:
                                yield (u, w, check.similarity(pu, prepared[w])) if weighted else (u, w)
                            elif ok is None:
                                yield beam.pvalue.TaggedOutput("undecided", (u, w))

        tagged_p = self._payloads | "TagP" >> beam.Map(lambda kv: (kv[0], ("p", kv[1])))
        by_u = edges | "ByU" >> beam.Map(lambda e: (node_partition(e[0], parts), ("e", e)))
        attached = ((by_u, tagged_p) | "GroupU" >> SpillingGroupByKey(self._spill_dir)
                    | "Attach" >> beam.ParDo(_Attach(stage or "")).with_outputs(TIMING, main="edges"))
        out = ((attached.edges, tagged_p) | "GroupV" >> SpillingGroupByKey(self._spill_dir)
               | "Check" >> beam.ParDo(_Check(stage or "")).with_outputs("undecided", TIMING, main="kept"))
        # untimed (no stage): the timing outputs go nowhere
        self.timings = [attached[TIMING], out[TIMING]] if stage else []
        return (out.kept, out.undecided) if self._undecided else out.kept


def _jsonable(ex: dict) -> dict:
    """Example dicts as JSON: image bytes become a base64 PNG thumbnail."""
    from winnow.pipeline.report import make_thumbnail

    out = dict(ex)
    if isinstance(out.get("image"), (bytes, bytearray)):
        thumb = make_thumbnail(bytes(out["image"]))
        out["image"] = None if thumb is None else base64.b64encode(thumb).decode("ascii")
    return out


def _example_rank(rec: dict) -> int:
    return xxhash.xxh3_64_intdigest(f"{rec['id']}\x00{rec['source']}".encode("utf-8", "replace"))


class ClusterAndPick(beam.PTransform):
    """Buckets -> star edges -> connected components -> one kept record per cluster.

    Args:
        stage, reason, prefix: stage name, reject reason and column prefix (``dup`` gives
            ``dup_cluster`` and ``dup_cluster_size``).
        bucketed: ``(band_key, (node, payload))`` for every compared record and band, or, with
            ``packed_key_width``, ``(partition, blob)`` elements from :class:`BucketPacker`.
        similar: ``similar(payload, root_payload)`` checked on each star edge, or None.
        verify: a PTransform over edges (e.g. :class:`VerifyEdges`), or None.
        max_rounds, fail_if_not_converged: the connected-component bound and what to do past it.
        example_fn: ``example_fn(record, chars) -> dict`` for the report's examples.
        examples: how many examples to keep.
        node_of: ``node_of(record) -> node`` (the same function the signing step used).
        roots: each bucket member links to this many of the bucket's smallest nodes (see
            :func:`~winnow.filters.dedup.cluster.multi_star_edges`; for verified edges).
        fields: the stage's declared columns (checked on kept records).
        packed_key_width: when not 0, ``bucketed`` is packed (band keys of this many bytes).
        cluster: ``components`` (connected components of the verified edges) or
            ``representative`` (each node joins its most similar representative, see
            :mod:`~winnow.pipeline.stages.dedup_represent`; needs ``verify`` to give weighted
            edges ``(u, v, similarity)``).

    Returns:
        ``(kept, rejected, dead, stats, timing)``.
    """

    def __init__(self, stage: str, reason: str, prefix: str, bucketed: beam.PCollection, *,
                 node_of: Callable[[dict], tuple], fields: tuple = (),
                 similar: Callable[[Any, Any], bool] | None = None, verify: beam.PTransform | None = None,
                 max_rounds: int = 10, fail_if_not_converged: bool = False,
                 example_fn: Callable[[dict], dict] | None = None, examples: int = 5,
                 packed_key_width: int = 0, roots: int = 1, cluster: str = "components") -> None:
        super().__init__()
        if cluster not in ("components", "representative"):
            raise ValueError(f"cluster must be components or representative, got {cluster!r}")
        if cluster == "representative" and verify is None:
            raise ValueError("cluster: representative weighs verified edges; give a verify transform")
        self._cluster = cluster
        self._packed_width = packed_key_width
        self._roots = roots
        self._node_of, self._fields = node_of, fields
        self._stage, self._reason, self._prefix = stage, reason, prefix
        self._bucketed, self._similar, self._verify = bucketed, similar, verify
        self._max, self._fail = max_rounds, fail_if_not_converged
        self._example_fn, self._examples = example_fn, examples

    def expand(self, pending: beam.PCollection) -> tuple:
        p = pending.pipeline
        if self._packed_width:
            if self._similar is not None:
                raise ValueError("packed buckets take no similar(); verify the edges instead")
            star = beam.ParDo(_PackedBucketsFn(self._stage, self._packed_width, self._roots))
        else:
            star = beam.ParDo(_StarEdgesFn(self._stage, self._similar, self._roots))
        starred = self._bucketed | "Buckets" >> beam.GroupByKey() | "StarEdges" >> star.with_outputs(TIMING, main="edges")
        timing = [starred[TIMING]]
        edges = starred.edges | "DistinctEdges" >> beam.Distinct()
        verify_stats = None
        if self._verify is not None:
            candidates = edges
            edges = edges | "Verify" >> self._verify
            timing += list(getattr(self._verify, "timings", ()))  # its steps count toward the stage
            n_cand = candidates | "CountCandidates" >> beam.combiners.Count.Globally()
            n_kept = edges | "CountVerified" >> beam.combiners.Count.Globally()

            stage = self._stage

            def verify_row(_: Any, cand: int, kept: int) -> Iterable[dict]:
                Metrics.counter("winnow", f"{stage}/verify_removed").inc(cand - kept)
                yield {"verify_candidate_edges": cand, "verify_removed": cand - kept}

            verify_stats = (p | "VerifySeed" >> beam.Create([None])
                            | "VerifyStats" >> beam.FlatMap(verify_row, beam.pvalue.AsSingleton(n_cand),
                                                            beam.pvalue.AsSingleton(n_kept)))
        changes, unresolved_parts = [], []
        if self._cluster == "representative":
            from winnow.pipeline.stages.dedup_represent import RepresentativeRounds

            labels, rep_changes, rep_unresolved, rep_timing = edges | "Represent" >> RepresentativeRounds(
                self._stage, self._max, _CHANGES, _UNRESOLVED)
            changes.append(rep_changes)
            unresolved_parts.append(rep_unresolved)
            timing += rep_timing
        final = []  # edges that skipped the rounds after one that changed nothing
        prev: tuple = ()  # the changes outputs of the round before
        for r in range(self._max if self._cluster == "components" else 0):
            if prev:
                # a round that changed nothing gave the edges it was given (each once): every later
                # round would too, so they skip the rounds' shuffles (the stats see no change either way)
                changed = prev | f"R{r - 1}Changed" >> beam.Flatten()
                gated = edges | f"R{r}Gate" >> beam.ParDo(_GateFn(), beam.pvalue.AsList(changed)).with_outputs(
                    _FINAL, main="edges")
                final.append(gated[_FINAL])
                edges = gated.edges
            ls = (edges | f"R{r}BothWays" >> beam.FlatMap(_both_ways) | f"R{r}GroupLS" >> beam.GroupByKey()
                  | f"R{r}LargeStar" >> beam.ParDo(_LargeStarFn(self._stage, r)).with_outputs(_CHANGES, TIMING, main="edges"))
            ss = (ls.edges | f"R{r}GroupSS" >> beam.GroupByKey()
                  | f"R{r}SmallStar" >> beam.ParDo(_SmallStarFn(self._stage, r)).with_outputs(_CHANGES, TIMING, main="edges"))
            changes += [ls[_CHANGES], ss[_CHANGES]]
            prev = (ls[_CHANGES], ss[_CHANGES])
            timing += [ls[TIMING], ss[TIMING]]
            edges = ss.edges
        if final:
            edges = (edges, *final) | "FinalEdges" >> beam.Flatten()
        if self._cluster == "components":
            labels = (edges | "GroupLabel" >> beam.GroupByKey()
                      | "Label" >> beam.Map(lambda kv: (min(kv[1]), kv[0])))
        sized = (labels | "GroupCluster" >> beam.GroupByKey()
                 | "Size" >> beam.ParDo(_ClusterSizeFn(self._stage)).with_outputs(_SIZES, TIMING, main="assign"))
        timing.append(sized[TIMING])
        assigned = (sized.assign | "GroupAssign" >> beam.GroupByKey()
                    | "Resolve" >> beam.FlatMap(_resolve).with_outputs(_UNRESOLVED, main="assigned"))
        picked = run_step(pending, "Pick", _PickFn(self._stage, self._reason, self._prefix, self._node_of,
                                                   self._fields), beam.pvalue.AsDict(assigned.assigned))

        all_changes = changes | "FlatChanges" >> beam.Flatten() | "SumChanges" >> beam.CombinePerKey(sum)
        unresolved = _sum((assigned[_UNRESOLVED], *unresolved_parts) | "FlatUnresolved" >> beam.Flatten(),
                          "CountUnresolved")
        side = beam.pvalue
        rounds = (p | "RoundSeed" >> beam.Create([None])
                  | "Rounds" >> beam.ParDo(_RoundStats(self._stage, self._max, self._fail),
                                           side.AsList(all_changes), side.AsList(unresolved)))
        sizes = (sized[_SIZES] | "SizeHist" >> beam.CombineGlobally(HistogramFn(SIZE_EDGES))
                 | "SizeWrap" >> beam.Map(lambda h: {"cluster_sizes": h}))
        parts = [rounds, sizes] + ([verify_stats] if verify_stats is not None else [])
        if self._examples and self._example_fn is not None:
            parts.append(self._example_pairs(picked.kept, picked[REJECTED]))
        stats = parts | "FlatStats" >> beam.Flatten()
        all_timing = (picked[TIMING], *timing) | "FlatTiming" >> beam.Flatten()
        return picked.kept, picked[REJECTED], picked[DEAD], stats, all_timing

    def _example_pairs(self, kept: beam.PCollection, rejected: beam.PCollection) -> beam.PCollection:
        fn, n, prefix = self._example_fn, self._examples, self._prefix

        def removed(r: dict) -> tuple:
            return (_example_rank(r), r["id"], r["source"], r["duplicate_of"], r["duplicate_of_source"],
                    r.get(f"{prefix}_cluster_size"), fn(r))

        sample = explode(rejected, "ExRejected") | "ExRemoved" >> beam.Map(removed) | "ExTop" >> beam.combiners.Top.Of(n, key=lambda e: e[:3])

        def kept_match(r: dict, sample: list) -> Iterable[tuple]:
            wanted = {(e[3], e[4]) for s in sample for e in s}
            if (r["id"], r["source"]) in wanted:
                yield (r["id"], r["source"]), fn(r)

        kept_side = explode(kept, "ExKeptRows") | "ExKept" >> beam.FlatMap(kept_match, beam.pvalue.AsList(sample))

        def build(_: Any, sample: list, kept_side: list) -> Iterable[dict]:
            kept_by = {k: _jsonable(v) for k, v in kept_side}
            pairs = []
            for s in sample:
                for e in sorted(s, key=lambda e: e[:3], reverse=True):
                    pairs.append({"removed_id": e[1], "removed_source": e[2], "kept_id": e[3],
                                  "kept_source": e[4], "cluster_size": e[5], "removed": _jsonable(e[6]),
                                  "kept": kept_by.get((e[3], e[4]))})
            yield {"examples": pairs}

        return (kept.pipeline | "ExSeed" >> beam.Create([None])
                | "ExBuild" >> beam.FlatMap(build, beam.pvalue.AsList(sample), beam.pvalue.AsList(kept_side)))
