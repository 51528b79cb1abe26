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


# ---------------------------------------------------------------------------------------------
# Language, heuristic quality, model quality, toxicity and PII (issue 4)

def _register_text_filters() -> None:
    from winnow.filters.lang import LangConfig, LangFilter
    from winnow.filters.model_quality import FIELDS as MQ_FIELDS, REASONS as MQ_REASONS, ModelQualityConfig
    from winnow.filters.pii import PIIConfig, PIIFilter
    from winnow.filters.quality import QualityConfig, QualityFilter
    from winnow.filters.toxicity import ToxicityConfig, ToxicityFilter

    def build(name: str) -> Callable[[Any, dict[str, Any]], beam.PTransform]:
        def _build(cfg: Any, ctx: dict[str, Any]) -> beam.PTransform:
            from winnow.pipeline.stages import text_filters

            if name == "model_quality":
                from winnow.pipeline.stages.model_quality import ModelQuality

                return ModelQuality(cfg)
            return getattr(text_filters, f"{name}_stage")(cfg, ctx)

        return _build

    register(StageSpec("lang", LangConfig, build("lang"), lambda c: LangFilter.FIELDS, LangFilter.reasons))
    register(StageSpec("quality", QualityConfig, build("quality"), lambda c: QualityFilter.FIELDS, QualityFilter.reasons))
    register(StageSpec("model_quality", ModelQualityConfig, build("model_quality"), lambda c: MQ_FIELDS, MQ_REASONS))
    register(StageSpec("toxicity", ToxicityConfig, build("toxicity"), lambda c: ToxicityFilter.FIELDS,
                       ToxicityFilter.reasons))
    register(StageSpec("pii", PIIConfig, build("pii"), PIIFilter.fields_for, PIIFilter.reasons))
    # Report sections must exist wherever report.html is rendered (Finalize may run on a worker).
    from winnow.pipeline.stages import filter_report  # noqa: F401


_register_text_filters()
