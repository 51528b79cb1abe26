"""The contract of a pure stage: annotate a record, then give a verdict.

A filter is plain Python, constructed from a frozen config dataclass, with no Beam in it:
call it on one record in a REPL. The pipeline maps it over a PCollection
(``winnow.pipeline.stages``), counts each outcome and routes drops to the rejects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Collection, Iterable, Mapping, MutableMapping, Sequence

import pyarrow as pa

__all__ = ["Verdict", "KEEP", "drop", "RecordFilter", "text_applies"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """``keep``, or drop with a stable snake_case reason prefixed by the stage name."""

    keep: bool
    reason: str = ""

    def __repr__(self) -> str:
        return "KEEP" if self.keep else f"drop({self.reason!r})"


KEEP = Verdict(True)


def drop(reason: str) -> Verdict:
    """A drop verdict; ``reason`` is a stage-prefixed code such as ``quality_too_short``."""
    return Verdict(False, reason)


def text_applies(record: Mapping[str, Any], modalities: Collection[str], languages: Collection[str]) -> bool:
    """Whether a text stage judges ``record``: it has text, its modality is one of
    ``modalities``, and its language is one of ``languages`` (empty: any; unknown: yes)."""
    if record.get("text") is None or record.get("modality", "text") not in modalities:
        return False
    lang = record.get("lang")
    return not languages or lang is None or lang in languages


class RecordFilter:
    """Base of per-record stages.

    Subclasses set ``name`` and ``reasons`` (every code :meth:`verdict` can return), declare
    the columns they add in :meth:`fields`, and override :meth:`annotate` and/or
    :meth:`verdict`. Stages that rewrite the record (normalization, redaction) override
    :meth:`rewrite`; verdicts themselves have no side effects.

    Attributes:
        name: the stage name used in config, metrics and reject_stage.
        reasons: every drop reason this stage can return.
    """

    name: ClassVar[str] = ""
    reasons: ClassVar[tuple[str, ...]] = ()

    def fields(self) -> tuple[pa.Field, ...]:
        """Columns this stage adds to the output schema (prefixed with the stage's name)."""
        return ()

    def rewrite(self, record: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """Return the record with its content rewritten (default: unchanged)."""
        return record

    def annotate(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        """Values for the columns in :meth:`fields`."""
        return {}

    def verdict(self, record: Mapping[str, Any]) -> Verdict:
        """Keep or drop; called after :meth:`annotate`'s values are on the record."""
        return KEEP

    def process(self, record: MutableMapping[str, Any]) -> tuple[MutableMapping[str, Any], Verdict]:
        """Rewrite, annotate and judge one record (the pipeline's per-record entry point)."""
        record = self.rewrite(record)
        ann = self.annotate(record)
        if ann:
            record.update(ann)
        return record, self.verdict(record)

    def process_batch(
        self, records: Sequence[MutableMapping[str, Any]]
    ) -> Iterable[tuple[MutableMapping[str, Any], Verdict]]:
        """Process several records; override to vectorise. Default: one at a time."""
        return [self.process(r) for r in records]
