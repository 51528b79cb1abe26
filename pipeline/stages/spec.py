"""What a stage declares about itself, what its build receives, and the registry of stages.

A stage module ends with one :class:`StageDecl` (its name, config class, columns, drop
reasons, report section and how to build its transform), next to the code it describes.
The registry (:mod:`winnow.pipeline.stages.registry`) is the list of those declarations;
config loading and the pipeline builder receive a :class:`Registry` rather than importing
one, so a user's own stage is one more declaration in a list they pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping

import apache_beam as beam
import pyarrow as pa

__all__ = ["StageDecl", "BuildContext", "Registry"]

#: ``section(stats, examples, config) -> ReportSection | None``
SectionFn = Callable[[Mapping[str, Any], Any, Mapping[str, Any]], Any]


def _no_fields(cfg: Any) -> tuple[pa.Field, ...]:
    return ()


@dataclass(frozen=True)
class StageDecl:
    """One stage, as the pipeline knows it.

    Attributes:
        name: the name used in config, ``--stages``, metrics and ``reject_stage``.
        config_cls: its frozen config dataclass (built from the YAML section ``name``).
        build: ``build(stage_config, context: BuildContext) -> PTransform`` returning
            :class:`~winnow.pipeline.stages.base.StageOutputs`.
        fields: ``fields(stage_config) -> tuple[pa.Field, ...]``, the columns it adds.
        reasons: every drop reason it can give (for docs and the report legend).
        report: its report section, or None.
        publishes: names of the artifacts it publishes for later stages
            (``StageOutputs.published``), e.g. ``("tokenizer_model",)``.
    """

    name: str
    config_cls: type
    build: Callable[[Any, "BuildContext"], beam.PTransform]
    fields: Callable[[Any], tuple[pa.Field, ...]] = _no_fields
    reasons: tuple[str, ...] = ()
    report: SectionFn | None = None
    publishes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildContext:
    """What a stage's build sees: the run's config and schema, and the artifacts published
    by the stages before it (read-only PCollections, for side inputs)."""

    config: Any
    schema: pa.Schema
    published: Mapping[str, beam.PCollection] = field(default_factory=lambda: MappingProxyType({}))
    #: where large shuffles spill (:class:`winnow.pipeline.spill.SpillingGroupByKey`: folders
    #: ``<spill_dir>-<uuid>``) on a runner that shuffles in its own memory; None: in the runner
    spill_dir: str | None = None


class Registry(Mapping[str, StageDecl]):
    """Stage declarations by name, in declaration order.

    Args:
        decls: the declarations; a name may appear once.

    Raises:
        ValueError: two declarations share a name.
    """

    def __init__(self, decls: Iterable[StageDecl]) -> None:
        self._by_name: dict[str, StageDecl] = {}
        for d in decls:
            if d.name in self._by_name:
                raise ValueError(f"stage {d.name!r} is declared twice")
            self._by_name[d.name] = d

    def __getitem__(self, name: str) -> StageDecl:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def with_stages(self, *decls: StageDecl) -> "Registry":
        """This registry plus ``decls`` (for a user's own stages)."""
        return Registry([*self._by_name.values(), *decls])

    def report_sections(self) -> dict[str, SectionFn]:
        """Each declared report section, by stage name."""
        return {name: d.report for name, d in self._by_name.items() if d.report is not None}
