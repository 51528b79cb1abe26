"""The Beam half of near-duplicate removal, shared by ``minhash_dedup`` and ``image_dedup``.

Given records keyed by their node (see :func:`winnow.filters.dedup.cluster.node_key`) and LSH
band keys, :class:`ClusterAndPick`:

1. groups by band key and links every member of a bucket to the bucket's smallest node
   (a star, never all pairs; the bucket is read twice, never held in memory);
2. removes repeated edges, and optionally verifies each edge (:class:`VerifyEdges`);
3. runs ``max_rounds`` unrolled large-star / small-star rounds (two GroupByKeys each) and
   counts, as data, the edges each round changed; a round that changes nothing proves
   convergence, and later rounds pass the edges through unchanged;
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
from typing import Any, Callable, Iterable

import apache_beam as beam
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
from winnow.pipeline.stages.base import DEAD, REJECTED, TIMING, Emit, StageFn, explode, run_step
from winnow.pipeline.stages.stats import HistogramFn

__all__ = ["ClusterAndPick", "VerifyEdges", "SIZE_EDGES", "COMPARED", "NodeOf"]

#: Edges of the cluster-size histogram (clusters of two or more records).
SIZE_EDGES = (2, 3, 4, 5, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384, 65536, 1 << 20, 1 << 30)
_CHANGES = "changes"
_SIZES = "sizes"
_UNRESOLVED = "unresolved"
#: A private flag the signing step sets on records it put in buckets (removed by the pick).
COMPARED = _COMPARED = "_dedup_compared"


class _StarEdgesFn(beam.DoFn):
    def __init__(self, stage: str, similar: Callable[[Any, Any], bool] | None, roots: int = 1) -> None:
        self._stage, self._similar, self._roots = stage, similar, roots

    def setup(self) -> None:
        self._big = Metrics.distribution("winnow", f"{self._stage}/bucket_size")

    def process(self, element: tuple[bytes, Iterable[tuple]]) -> Iterable[tuple]:
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


class _LargeStarFn(beam.DoFn):
    def __init__(self, round_: int) -> None:
        self._round = round_

    def process(self, element: tuple[tuple, Iterable[tuple]]) -> Iterable[Any]:
        u, nbrs = element
        ch = large_star_changes(u, nbrs)
        if ch:
            yield beam.pvalue.TaggedOutput(_CHANGES, (self._round, ch))
        yield from large_star(u, nbrs)


class _SmallStarFn(beam.DoFn):
    def __init__(self, round_: int) -> None:
        self._round = round_

    def process(self, element: tuple[tuple, Iterable[tuple]]) -> Iterable[Any]:
        u, smaller = element
        ch = small_star_changes(u, smaller)
        if ch:
            yield beam.pvalue.TaggedOutput(_CHANGES, (self._round, ch))
        yield from small_star(u, smaller)


def _both_ways(edge: tuple) -> Iterable[tuple]:
    hi, lo = edge
    yield hi, lo
    yield lo, hi


class _ClusterSizeFn(beam.DoFn):
    """Per label: count the members (pass 1), then tell each member and the root (pass 2)."""

    def process(self, element: tuple[tuple, Iterable[tuple]]) -> Iterable[Any]:
        root, members = element
        size = 1
        for _m in members:
            size += 1
        yield beam.pvalue.TaggedOutput(_SIZES, size)
        yield root, (root, size)
        for m in members:
            yield m, (root, size)


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


class VerifyEdges(beam.PTransform):
    """Keep an edge ``(u, v)`` only if ``check(payload[u], payload[v])``.

    Two shuffles: edges meet ``u``'s payload, then ``v``'s. Each group is read twice (the
    payload first), so a node with many edges is never held in memory.

    Args:
        payloads: ``(node, payload)`` for every node that may be on an edge.
        check: a picklable object; ``check.setup()`` is called once per worker if it has one.
            It returns True (keep), False (drop) or, with ``undecided``, None (neither).
        undecided: return ``(kept, undecided)`` edges instead of the kept edges alone.
    """

    def __init__(self, payloads: beam.PCollection, check: Any, undecided: bool = False) -> None:
        super().__init__()
        self._payloads, self._check, self._undecided = payloads, check, undecided

    def expand(self, edges: beam.PCollection) -> Any:
        check = self._check

        class _Attach(beam.DoFn):
            def process(self, element):
                _, values = element
                payload = next((v for t, v in values if t == "p"), None)
                for t, v in values:
                    if t == "e":
                        yield v[0], ("e", (v[1], payload))

        class _Check(beam.DoFn):
            def setup(self):
                if hasattr(check, "setup"):
                    check.setup()

            def process(self, element):
                v, values = element
                pv = next((p for t, p in values if t == "p"), None)
                ctx = check.prepare(pv) if hasattr(check, "prepare") else pv
                for t, e in values:
                    if t == "e":
                        ok = check(e[1], ctx)
                        if ok:
                            yield e[0], v
                        elif ok is None:
                            yield beam.pvalue.TaggedOutput("undecided", (e[0], v))

        tagged_p = self._payloads | "TagP" >> beam.Map(lambda kv: (kv[0], ("p", kv[1])))
        by_u = edges | "ByU" >> beam.Map(lambda e: (e[0], ("e", (e[1], e[0]))))
        attached = ((by_u, tagged_p) | "FlatU" >> beam.Flatten() | "GroupU" >> beam.GroupByKey()
                    | "Attach" >> beam.ParDo(_Attach()))
        out = ((attached, tagged_p) | "FlatV" >> beam.Flatten() | "GroupV" >> beam.GroupByKey()
               | "Check" >> beam.ParDo(_Check()).with_outputs("undecided", main="kept"))
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
        bucketed: ``(band_key, (node, payload))`` for every compared record and band.
        similar: ``similar(payload, root_payload)`` checked on each star edge, or None.
        verify: a PTransform over edges (e.g. :class:`VerifyEdges`), or None.
        max_rounds, fail_if_not_converged: the connected-component bound and what to do past it.
        example_fn: ``example_fn(record, chars) -> dict`` for the report's examples.
        examples: how many examples to keep.
        node_of: ``node_of(record) -> node`` (the same function the signing step used).
        roots: each bucket member links to this many of the bucket's smallest nodes (see
            :func:`~winnow.filters.dedup.cluster.multi_star_edges`; for verified edges).
        fields: the stage's declared columns (checked on kept records).

    Returns:
        ``(kept, rejected, dead, stats, timing)``.
    """

    def __init__(self, stage: str, reason: str, prefix: str, bucketed: beam.PCollection, *,
                 node_of: Callable[[dict], tuple], fields: tuple = (),
                 similar: Callable[[Any, Any], bool] | None = None, verify: beam.PTransform | None = None,
                 max_rounds: int = 10, fail_if_not_converged: bool = False,
                 example_fn: Callable[[dict], dict] | None = None, examples: int = 5, roots: int = 1) -> None:
        super().__init__()
        self._roots = roots
        self._node_of, self._fields = node_of, fields
        self._stage, self._reason, self._prefix = stage, reason, prefix
        self._bucketed, self._similar, self._verify = bucketed, similar, verify
        self._max, self._fail = max_rounds, fail_if_not_converged
        self._example_fn, self._examples = example_fn, examples

    def expand(self, pending: beam.PCollection) -> tuple:
        p = pending.pipeline
        edges = (self._bucketed | "Buckets" >> beam.GroupByKey()
                 | "StarEdges" >> beam.ParDo(_StarEdgesFn(self._stage, self._similar, self._roots))
                 | "DistinctEdges" >> beam.Distinct())
        verify_stats = None
        if self._verify is not None:
            candidates = edges
            edges = edges | "Verify" >> self._verify
            n_cand = candidates | "CountCandidates" >> beam.combiners.Count.Globally()
            n_kept = edges | "CountVerified" >> beam.combiners.Count.Globally()

            stage = self._stage

            def verify_row(_: Any, cand: int, kept: int) -> Iterable[dict]:
                Metrics.counter("winnow", f"{stage}/verify_removed").inc(cand - kept)
                yield {"verify_candidate_edges": cand, "verify_removed": cand - kept}

            verify_stats = (p | "VerifySeed" >> beam.Create([None])
                            | "VerifyStats" >> beam.FlatMap(verify_row, beam.pvalue.AsSingleton(n_cand),
                                                            beam.pvalue.AsSingleton(n_kept)))
        changes = []
        for r in range(self._max):
            ls = (edges | f"R{r}BothWays" >> beam.FlatMap(_both_ways) | f"R{r}GroupLS" >> beam.GroupByKey()
                  | f"R{r}LargeStar" >> beam.ParDo(_LargeStarFn(r)).with_outputs(_CHANGES, main="edges"))
            ss = (ls.edges | f"R{r}GroupSS" >> beam.GroupByKey()
                  | f"R{r}SmallStar" >> beam.ParDo(_SmallStarFn(r)).with_outputs(_CHANGES, main="edges"))
            changes += [ls[_CHANGES], ss[_CHANGES]]
            edges = ss.edges
        labels = (edges | "GroupLabel" >> beam.GroupByKey()
                  | "Label" >> beam.Map(lambda kv: (min(kv[1]), kv[0])))
        sized = (labels | "GroupCluster" >> beam.GroupByKey()
                 | "Size" >> beam.ParDo(_ClusterSizeFn()).with_outputs(_SIZES, main="assign"))
        assigned = (sized.assign | "GroupAssign" >> beam.GroupByKey()
                    | "Resolve" >> beam.FlatMap(_resolve).with_outputs(_UNRESOLVED, main="assigned"))
        picked = run_step(pending, "Pick", _PickFn(self._stage, self._reason, self._prefix, self._node_of,
                                                   self._fields), beam.pvalue.AsDict(assigned.assigned))

        all_changes = changes | "FlatChanges" >> beam.Flatten() | "SumChanges" >> beam.CombinePerKey(sum)
        unresolved = _sum(assigned[_UNRESOLVED], "CountUnresolved")
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
        return picked.kept, picked[REJECTED], picked[DEAD], stats, picked[TIMING]

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
