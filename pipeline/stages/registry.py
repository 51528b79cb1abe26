"""The stages a run can name in ``stages:``, with their config classes and transforms.

A new stage registers one :class:`StageSpec`: its name, its frozen config dataclass (from
``winnow.filters`` or ``winnow.tokenizer``), a function building its PTransform, and a
function giving the columns it adds. The pipeline builds the output schema from the
configured stages in order, so every shard of a run has the same schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import apache_beam as beam
import pyarrow as pa

from winnow.filters.exact import ExactDedupConfig
from winnow.filters.normalize import NormalizeConfig, Normalizer

__all__ = ["StageSpec", "STAGES", "register"]


@dataclass(frozen=True)
class StageSpec:
    """One registered stage.

    Attributes:
        name: the name used in config, ``--stages``, metrics and ``reject_stage``.
        config_cls: its frozen config dataclass (built from the YAML section ``name``).
        build: ``build(stage_config, context) -> PTransform`` returning StageOutputs.
        fields: ``fields(stage_config) -> tuple[pa.Field, ...]``, the columns it adds.
        reasons: every drop reason it can give (for docs and the report legend).
    """

    name: str
    config_cls: type
    build: Callable[[Any, dict[str, Any]], beam.PTransform]
    fields: Callable[[Any], tuple[pa.Field, ...]]
    reasons: tuple[str, ...] = ()


STAGES: dict[str, StageSpec] = {}


def register(spec: StageSpec) -> StageSpec:
    """Add a stage; a name can be registered once."""
    if spec.name in STAGES and STAGES[spec.name] != spec:
        raise ValueError(f"stage {spec.name!r} is registered twice")
    STAGES[spec.name] = spec
    return spec


def _build_normalize(cfg: NormalizeConfig, ctx: dict[str, Any]) -> beam.PTransform:
    from winnow.pipeline.stages.base import RecordStage

    return RecordStage("normalize", lambda: Normalizer(cfg))


def _build_exact(cfg: ExactDedupConfig, ctx: dict[str, Any]) -> beam.PTransform:
    from winnow.pipeline.stages.exact_dedup import ExactDedup

    return ExactDedup(cfg)


def _exact_fields(cfg: ExactDedupConfig) -> tuple[pa.Field, ...]:
    from winnow.pipeline.stages.exact_dedup import FIELDS

    return FIELDS


register(StageSpec("normalize", NormalizeConfig, _build_normalize, lambda c: (), Normalizer.reasons))
register(StageSpec("exact_dedup", ExactDedupConfig, _build_exact, _exact_fields, ("exact_dedup_duplicate",)))


# --- near-duplicate removal (issue 3) --------------------------------------------------------
from winnow.pipeline.stages import dedup_register  # noqa: E402,F401 - registers minhash_dedup, image_dedup


# --- issue 5: domain scoring, tokenizer training, encoding --------------------------------------
from winnow.filters.domain import REASON_BELOW, REASON_NO_WORDS, DomainConfig, domain_fields  # noqa: E402
from winnow.tokenizer.encode import EncodeConfig  # noqa: E402
from winnow.tokenizer.train import TokenizerConfig  # noqa: E402


def _build_domain(cfg: DomainConfig, ctx: dict[str, Any]) -> beam.PTransform:
    from winnow.pipeline.stages.domain import DomainStage

    return DomainStage(cfg)


def _build_tokenizer(cfg: TokenizerConfig, ctx: dict[str, Any]) -> beam.PTransform:
    from winnow.pipeline.stages.tokenize import TrainTokenizer

    return TrainTokenizer(cfg, ctx)


def _build_encode(cfg: EncodeConfig, ctx: dict[str, Any]) -> beam.PTransform:
    from winnow.pipeline.stages.tokenize import EncodeTokens

    return EncodeTokens(cfg, ctx)


def _encode_fields(cfg: EncodeConfig) -> tuple[pa.Field, ...]:
    from winnow.pipeline.stages.tokenize import encode_fields

    return encode_fields(cfg)


register(StageSpec("domain", DomainConfig, _build_domain, domain_fields, (REASON_BELOW, REASON_NO_WORDS)))
register(StageSpec("tokenizer", TokenizerConfig, _build_tokenizer, lambda c: ()))
register(StageSpec("encode", EncodeConfig, _build_encode, _encode_fields))
import winnow.pipeline.stages.domain_report  # noqa: E402,F401 - registers the report sections
