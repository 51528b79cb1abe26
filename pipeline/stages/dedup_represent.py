"""Non-chaining near-duplicate clusters in Beam: every node joins its most similar representative.

The Beam steps of :func:`winnow.filters.dedup.cluster.representative_rounds` (see there for the
rule). Input: verified edges with their similarity, ``(u, v, similarity)``. One GroupByKey
builds each node's state (its larger neighbours and how many smaller ones it waits for); each
round is one GroupByKey of the states and the messages of the nodes decided in the round
before. ``max_rounds`` rounds are unrolled; the last one makes every node still waiting decide
with what it knows (counted as unresolved; stats say not converged). Output: ``(label,
member)`` for every member (a representative with members is their label), the shape
:class:`~winnow.pipeline.stages.dedup_graph.ClusterAndPick` sizes and joins back.
"""

from __future__ import annotations

from typing import Any, Iterable

import apache_beam as beam

from winnow.filters.dedup.cluster import (
    MEMBER,
    UNDECIDED,
    rep_initial,
    representative_label,
    representative_step,
)
from winnow.pipeline.stages.base import TIMING, TimedFn

__all__ = ["RepresentativeRounds"]

_STATE, _MSG = "s", "m"


def _both_ways(edge: tuple) -> Iterable[tuple]:
    u, v, w = edge
    yield u, (v, w)
    yield v, (u, w)


class _InitFn(TimedFn):
    def work(self, element: tuple[tuple, Iterable[tuple]]) -> Iterable[Any]:
        u, nbrs = element
        yield u, (_STATE, rep_initial(u, nbrs))


class _RoundFn(TimedFn):
    """One round at a node: its state and the messages sent to it."""

    def __init__(self, stage: str, round_: int, last: bool, changes: str, unresolved: str) -> None:
        super().__init__(stage)
        self._round, self._last, self._changes, self._unresolved = round_, last, changes, unresolved

    def work(self, element: tuple[tuple, Iterable[tuple]]) -> Iterable[Any]:
        u, values = element
        state, msgs = None, []
        for tag, v in values:
            if tag == _STATE:
                state = v
            else:
                msgs.append(v)
        if state is None:  # only messages: cannot happen (every neighbour has a state)
            return
        waiting = state[0] == UNDECIDED
        new, out = representative_step(u, state, msgs, force=self._last)
        if waiting and new[0] == UNDECIDED:
            yield beam.pvalue.TaggedOutput(self._changes, (self._round, 1))
        if waiting and self._last and new[2] > 0:
            yield beam.pvalue.TaggedOutput(self._unresolved, 1)
        yield u, (_STATE, new)
        for v, msg in out:
            yield v, (_MSG, msg)


def _labels(element: tuple[tuple, tuple]) -> Iterable[tuple]:
    u, (_, state) = element
    if state[0] == MEMBER:
        yield representative_label(u, state), u


class RepresentativeRounds(beam.PTransform):
    """``(u, v, similarity)`` edges -> ``(label, member)`` pairs, plus round changes, unresolved
    counts and timing as tagged outputs (``changes``: ``(round, nodes still waiting)``)."""

    def __init__(self, stage: str, max_rounds: int, changes: str, unresolved: str) -> None:
        super().__init__()
        self._stage, self._max, self._changes, self._unresolved = stage, max_rounds, changes, unresolved

    def expand(self, edges: beam.PCollection) -> Any:
        init = (edges | "RepBothWays" >> beam.FlatMap(_both_ways) | "RepGroupInit" >> beam.GroupByKey()
                | "RepInit" >> beam.ParDo(_InitFn(self._stage)).with_outputs(TIMING, main="states"))
        cur, changes, unresolved, timing = init.states, [], [], [init[TIMING]]
        # Round r groups the states with the messages of the nodes decided in round r - 1; the
        # last of max_rounds + 1 rounds decides every node still waiting.
        for r in range(self._max + 1):
            step = (cur | f"Rep{r}Group" >> beam.GroupByKey()
                    | f"Rep{r}Step" >> beam.ParDo(_RoundFn(self._stage, r, r == self._max, self._changes,
                                                           self._unresolved)).with_outputs(
                        self._changes, self._unresolved, TIMING, main="states"))
            changes.append(step[self._changes])
            unresolved.append(step[self._unresolved])
            timing.append(step[TIMING])
            cur = step.states
        states = cur | "RepStates" >> beam.Filter(lambda kv: kv[1][0] == _STATE)
        labels = states | "RepLabels" >> beam.FlatMap(_labels)
        return (labels, changes | "RepFlatChanges" >> beam.Flatten(),
                unresolved | "RepFlatUnresolved" >> beam.Flatten(), timing)
