"""The stages a run can name in ``stages:``: the list of their declarations.

Each stage module declares itself (:class:`~winnow.pipeline.stages.spec.StageDecl`) next to
its code; this module only lists them. Adding a stage is a pure class in ``filters/`` (or
``tokenizer/``), a declaration in its ``pipeline/stages`` module, and one line here (or, for a
user's own stage, ``STAGES.with_stages(MY_DECLARATION)`` passed to ``load_config`` and ``run``).
"""

from __future__ import annotations

import winnow.pipeline.stages.audio as audio
import winnow.pipeline.stages.audio_dedup as audio_dedup
import winnow.pipeline.stages.audio_models as audio_models
import winnow.pipeline.stages.augment as augment
import winnow.pipeline.stages.classifier as classifier
import winnow.pipeline.stages.domain as domain
import winnow.pipeline.stages.exact_dedup as exact_dedup
import winnow.pipeline.stages.grammar as grammar
import winnow.pipeline.stages.image_dedup as image_dedup
import winnow.pipeline.stages.image_quality as image_quality
import winnow.pipeline.stages.image_text as image_text
import winnow.pipeline.stages.minhash_dedup as minhash_dedup
import winnow.pipeline.stages.model_quality as model_quality
import winnow.pipeline.stages.normalize as normalize
import winnow.pipeline.stages.text_filters as text_filters
import winnow.pipeline.stages.tokenize as tokenize
from winnow.pipeline.stages.spec import BuildContext, Registry, StageDecl

__all__ = ["STAGES", "StageDecl", "BuildContext", "Registry"]

#: The built-in stages, in the order of the default pipeline.
STAGES = Registry((
    normalize.DECLARATION,
    exact_dedup.DECLARATION,
    text_filters.LANG,
    text_filters.QUALITY,
    minhash_dedup.DECLARATION,
    image_quality.DECLARATION,
    image_dedup.DECLARATION,
    image_text.DECLARATION,
    audio.DECLARATION,
    audio_dedup.DECLARATION,
    audio_models.MOS_DECLARATION,
    audio_models.ASR_DECLARATION,
    model_quality.DECLARATION,
    domain.DECLARATION,
    text_filters.TOXICITY,
    grammar.DECLARATION,
    classifier.DECLARATION,
    text_filters.PII,
    tokenize.TOKENIZER,
    augment.DECLARATION,
    tokenize.ENCODE,
))
