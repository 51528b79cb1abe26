"""Pure clustering steps that the Beam stages run per key: no Beam, no union-find.

Nodes are tuples ``(rank, id, source)`` ordered so that the smallest node of a cluster is the
record to keep (``rank`` is 0.0 for "smallest id", or minus a score). Every function takes a
re-iterable group (what a GroupByKey hands a DoFn) and reads it at most twice, holding one
node at a time, so a group of any size fits in memory.

Connected components use the large-star / small-star rounds of Kiveris et al. (2014): edges
are pairs ``(hi, lo)`` with ``hi > lo``. Large-star at node u links every larger neighbour to
the smallest node of u's neighbourhood; small-star links u and its smaller neighbours to the
smallest of them. When a round of both changes nothing, every component is a star around its
smallest node. :func:`star_rounds` runs the same steps in memory, for tests and the
evaluation.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Callable, Hashable, Iterable, Iterator, Mapping

__all__ = [
    "Node",
    "node_key",
    "star_edges",
    "multi_star_edges",
    "large_star",
    "large_star_changes",
    "small_star",
    "small_star_changes",
    "labels_from_edges",
    "star_rounds",
    "pairwise_scores",
    "rep_initial",
    "representative_step",
    "representative_label",
    "representative_rounds",
]

Node = tuple  # (rank: float, id: str, source: str)


def node_key(record: Mapping[str, Any], keep: str = "smallest_id", keep_field: str = "") -> Node:
    """The record's node: smaller means preferred as the cluster's kept record.

    ``highest_field`` ranks by minus the field's value (missing or non-numeric ranks last),
    then id and source; ``smallest_id`` by id and source.
    """
    rank = 0.0
    if keep == "highest_field":
        v = record.get(keep_field)
        try:
            f = float(v)  # type: ignore[arg-type]
            rank = -f if math.isfinite(f) else math.inf
        except (TypeError, ValueError):
            rank = math.inf
    return (rank, str(record.get("id", "")), str(record.get("source", "")))


def star_edges(members: Iterable[tuple[Node, Any]],
               similar: Callable[[Any, Any], bool] | None = None) -> Iterator[tuple[Node, Node]]:
    """Edges ``(node, smallest)`` from every member of one LSH bucket to the bucket's smallest node.

    Two passes over ``members`` (``(node, payload)`` pairs): the first finds the smallest node,
    the second emits edges, checking ``similar(payload, smallest_payload)`` when given.
    Duplicate nodes in a bucket give no self-edge.
    """
    best: tuple[Node, Any] | None = None
    for m in members:
        if best is None or m[0] < best[0]:
            best = m
    if best is None:
        return
    root, root_payload = best
    for node, payload in members:
        if node != root and (similar is None or similar(payload, root_payload)):
            yield node, root


def multi_star_edges(members: Iterable[tuple[Node, Any]], roots: int) -> Iterator[tuple[Node, Node]]:
    """Edges ``(node, root)`` from every member of one LSH bucket to each of the bucket's
    ``roots`` smallest nodes smaller than it (a star per root; one root is :func:`star_edges`).

    When the edges are verified afterwards, one root is not enough: a bucket that also holds an
    unrelated smaller text (shared boilerplate) gives every member only an edge to it, which
    verification removes, and the true pairs of the bucket never meet. With ``k`` roots, a true
    pair meets unless ``k`` smaller unrelated texts share its band. Two passes over
    ``members``; memory holds ``roots`` nodes.
    """
    import heapq

    if roots < 1:
        raise ValueError(f"roots must be at least 1, got {roots}")
    heap: list = []  # the smallest nodes so far, largest on top
    seen: set = set()
    for node, _ in members:
        if node in seen:
            continue
        if len(heap) < roots:
            heapq.heappush(heap, _Rev(node))
            seen.add(node)
        elif node < heap[0].node:
            seen.discard(heapq.heapreplace(heap, _Rev(node)).node)
            seen.add(node)
    smallest = sorted(r.node for r in heap)
    for node, _ in members:  # a node listed twice repeats its edges: the caller removes repeats
        for r in smallest:
            if r >= node:
                break
            yield node, r


class _Rev:
    """Reverses the order of a node (heapq is a min-heap; the K smallest need a max-heap)."""

    __slots__ = ("node",)

    def __init__(self, node: Node) -> None:
        self.node = node

    def __lt__(self, other: _Rev) -> bool:
        return other.node < self.node


def large_star(u: Node, neighbours: Iterable[Node]) -> Iterator[tuple[Node, Node]]:
    """Large-star at ``u``: ``(v, m)`` for every neighbour ``v > u``, m the neighbourhood's minimum.

    :func:`large_star_changes` counts what it rewires.
    """
    m = u
    for v in neighbours:
        if v < m:
            m = v
    for v in neighbours:
        if v > u:
            yield v, m


def large_star_changes(u: Node, neighbours: Iterable[Node]) -> int:
    """How many of ``u``'s edges large-star rewires (0 when u is its neighbourhood's minimum)."""
    m, larger = u, 0
    for v in neighbours:
        if v < m:
            m = v
        if v > u:
            larger += 1
    return larger if m < u else 0


def small_star(u: Node, smaller: Iterable[Node]) -> Iterator[tuple[Node, Node]]:
    """Small-star at ``u`` over its smaller neighbours: ``(v, m)`` for each ``v != m``, and ``(u, m)``."""
    m = None
    for v in smaller:
        if m is None or v < m:
            m = v
    if m is None:
        return
    for v in smaller:
        if v != m:
            yield v, m
    yield u, m


def small_star_changes(u: Node, smaller: Iterable[Node]) -> int:
    """Edges small-star rewires at ``u``: smaller neighbours other than the smallest."""
    m = None
    for v in smaller:
        if m is None or v < m:
            m = v
    return sum(1 for v in smaller if v != m)


def labels_from_edges(u: Node, smaller: Iterable[Node]) -> Node:
    """A node's label after the rounds: its smallest smaller neighbour."""
    return min(smaller)


def star_rounds(edges: Iterable[tuple[Hashable, Hashable]], max_rounds: int = 64) -> tuple[dict, int, bool]:
    """Connected components in memory with the same steps as the Beam stage.

    Returns ``(label of every node on an edge, rounds that changed something, converged)``.
    """
    cur = {(max(a, b), min(a, b)) for a, b in edges if a != b}
    changed_rounds, converged = 0, False
    for _ in range(max_rounds):
        nb: dict = defaultdict(list)
        for hi, lo in cur:
            nb[hi].append(lo)
            nb[lo].append(hi)
        changes = sum(large_star_changes(u, vs) for u, vs in nb.items())
        nxt = {e for u, vs in nb.items() for e in large_star(u, vs)}
        sm: dict = defaultdict(list)
        for hi, lo in nxt:
            sm[hi].append(lo)
        changes += sum(small_star_changes(u, vs) for u, vs in sm.items())
        cur = {e for u, vs in sm.items() for e in small_star(u, vs)}
        if changes == 0:
            converged = True
            break
        changed_rounds += 1
    sm = defaultdict(list)
    for hi, lo in cur:
        sm[hi].append(lo)
    labels = {u: labels_from_edges(u, vs) for u, vs in sm.items()}
    for lab in list(labels.values()):
        labels.setdefault(lab, lab)
    return labels, changed_rounds, converged


def pairwise_scores(predicted: Mapping[Hashable, Hashable], truth: Mapping[Hashable, Hashable]) -> tuple[float, float]:
    """Pairwise precision and recall of a clustering against ground truth.

    Both map every item to a cluster label (singletons included). A pair is positive when
    both items share a label. Returns ``(precision, recall)``; 1.0 where there is no pair.
    """
    def pairs(counts: Iterable[int]) -> int:
        return sum(c * (c - 1) // 2 for c in counts)

    pc: dict = defaultdict(int)
    tc: dict = defaultdict(int)
    both: dict = defaultdict(int)
    for item, p in predicted.items():
        t = truth[item]
        pc[p] += 1
        tc[t] += 1
        both[(p, t)] += 1
    tp = pairs(both.values())
    pp, tp_all = pairs(pc.values()), pairs(tc.values())
    return (tp / pp if pp else 1.0), (tp / tp_all if tp_all else 1.0)



# Non-chaining clustering: every node joins its most similar representative.
#
# The representatives are the greedy independent set of the verified-edge graph in node order
# (the smallest node is a representative; a node is one when none of its smaller neighbours is);
# every other node joins the most similar of its representative neighbours (ties: the smaller).
# Unlike connected components, a member is always similar to the record kept for it: a chain of
# edits A~B~C with A and C dissimilar gives {A, B} and {C}, not {A, B, C}. Computed in rounds:
# a node decides once all its smaller neighbours have, so the rounds number the longest
# decreasing path of undecided nodes (the length of an edit chain), not the graph's size.

UNDECIDED, REPRESENTATIVE, MEMBER = "u", "r", "m"

RepState = tuple  # (status, best (similarity, rep) or None, smaller neighbours pending, larger ((v, w), ...))


def rep_initial(u: Node, neighbours: Iterable[tuple[Node, float]]) -> RepState:
    """A node's state before the rounds, from its ``(neighbour, similarity)`` pairs."""
    pending, larger = 0, []
    for v, w in neighbours:
        if v < u:
            pending += 1
        elif v > u:
            larger.append((v, w))
    return (UNDECIDED, None, pending, tuple(sorted(larger)))


def _better(best: tuple | None, cand: tuple) -> tuple:
    """The more similar of two ``(similarity, rep)``; equal similarity: the smaller rep."""
    if best is None or cand[0] > best[0] or (cand[0] == best[0] and cand[1] < best[1]):
        return cand
    return best


def representative_step(u: Node, state: RepState, messages: Iterable[tuple[str, Node, float]],
                        force: bool = False) -> tuple[RepState, list[tuple[Node, tuple[str, Node, float]]]]:
    """One round at ``u``: take the ``(status, v, similarity)`` messages of smaller neighbours
    decided last round; decide when none is pending (or ``force``, after the last round).

    Returns the new state and, when ``u`` decided now, a message for each larger neighbour.
    """
    status, best, pending, larger = state
    for st, v, w in messages:
        pending -= 1
        if st == REPRESENTATIVE:
            best = _better(best, (w, v))
    if status != UNDECIDED or (pending > 0 and not force):
        return (status, best, pending, larger), []
    status = MEMBER if best is not None else REPRESENTATIVE
    return (status, best, pending, larger), [(v, (status, u, w)) for v, w in larger]


def representative_label(u: Node, state: RepState) -> Node:
    """The representative ``u`` joined (itself when it is one)."""
    status, best = state[0], state[1]
    return best[1] if status == MEMBER and best is not None else u


def representative_rounds(edges: Iterable[tuple[Hashable, Hashable, float]],
                          max_rounds: int = 64) -> tuple[dict, int, bool]:
    """The representative clustering in memory, with the Beam stage's steps.

    ``edges`` are ``(a, b, similarity)``. Returns ``(label of every node on an edge, rounds
    that left nodes undecided, converged)``; past ``max_rounds`` the undecided nodes decide
    with what they know (not converged).
    """
    nb: dict = defaultdict(list)
    for a, b, w in edges:
        if a != b:
            nb[a].append((b, w))
            nb[b].append((a, w))
    states = {u: rep_initial(u, vs) for u, vs in nb.items()}
    inbox: dict = defaultdict(list)
    rounds, converged = 0, False
    for r in range(max_rounds + 1):
        force = r == max_rounds
        nxt: dict = defaultdict(list)
        for u in sorted(states):
            states[u], out = representative_step(u, states[u], inbox.get(u, ()), force=force)
            for v, msg in out:
                nxt[v].append(msg)
        inbox = nxt
        if all(s[0] != UNDECIDED for s in states.values()):
            converged = not force
            break
        rounds += 1
    labels = {u: representative_label(u, s) for u, s in states.items()}
    return labels, rounds, converged
