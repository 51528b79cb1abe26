"""``image_text_score``: CLIP agreement of each image with its caption through Beam's
RunInference, then keep by threshold or by an exact kept fraction.

Graph (the ``classifier`` stage's, for pairs):

1. ``Infer``: ``RunInference`` with :class:`PairsModelHandler`. Its elements are whole
   :class:`~winnow.pipeline.batch.Records` batches; ``batch_elements_kwargs`` groups them up to
   about ``records_per_call`` records, and ``run_inference`` scores the pairs of a group
   (:class:`~winnow.filters.clip.ClipScorer`: model calls of at most ``batch_size`` pairs and
   ``batch_bytes`` image bytes, on CUDA when available; images decode and resize in the
   scorer's thread pool ahead of the model calls and are normalised on the device).
   RunInference loads the model once per worker process and shares it between threads.
   Records never leave their batch.
2. ``Score`` (a :class:`StageFn`): attaches ``image_text_score`` and ``image_text_cosine``. A
   pair whose image would not decode carries its error from step 1; ``compute`` raises for it,
   so the contract dead-letters that record alone.
   The report's highest/lowest examples are chosen by score first; only those few get
   thumbnails.
3. For ``keep_fraction``: the exact global cut by the ``domain`` stage's radix select.
4. ``Select``: keep, or reject as ``image_text_score_below_threshold``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import apache_beam as beam

from winnow.filters.clip import (
    REASON_BELOW,
    ClipConfig,
    ClipError,
    clip_fields,
    clip_verdict,
    clipscore,
    selection_key,
)
from winnow.pipeline.stages.base import Emit, StageOutputs
from winnow.pipeline.stages.scored import InferenceResultFn, VerdictFn, score_and_select
from winnow.pipeline.stages.spec import BuildContext, StageDecl
from winnow.pipeline.stages.stats import HistogramFn, linear_edges

__all__ = ["DECLARATION", "ImageTextScoreStage", "NAME"]

NAME = "image_text_score"
_EXAMPLES = 12


class _ScoreFn(InferenceResultFn):
    """Attach the scores from RunInference; a pair that failed raises (dead letter)."""

    def __init__(self, cfg: ClipConfig) -> None:
        super().__init__(NAME, last=False)
        self._cfg = cfg

    def failure(self, value: Any) -> Exception | None:
        return ClipError(value) if isinstance(value, str) else None

    def route(self, row: dict, value: Any, out: Emit) -> None:
        row = dict(row)
        if value is None:
            row["image_text_score"] = row["image_text_cosine"] = None
            out.count("not_scored")
        else:
            row["image_text_score"], row["image_text_cosine"] = float(value[0]), float(value[1])
        out.keep(row)


class ImageTextScoreStage(beam.PTransform):
    """Score image-text pairs with a local CLIP model and keep by threshold or fraction."""

    def __init__(self, cfg: ClipConfig) -> None:
        super().__init__(label=NAME)
        self._cfg = cfg

    def expand(self, records: beam.PCollection) -> StageOutputs:
        from winnow.pipeline.stages.image_text_handler import PairsModelHandler

        cfg = self._cfg
        select = VerdictFn(NAME, clip_fields(cfg), clip_verdict, cfg)
        return score_and_select(records, PairsModelHandler(cfg), _ScoreFn(cfg), select,
                                lambda r: selection_key(r, cfg), cfg.keep_fraction,
                                lambda rows, keys, cut: _stats(cfg, rows, keys, cut))


def _example(r: dict) -> list[tuple[float, dict]]:
    """A candidate for the report's highest/lowest lists: the score, id, caption and image bytes
    (thumbnails are made only for the few chosen, in :func:`_with_thumbs`)."""
    s = r.get("image_text_score")
    if s is None or r.get("image") is None or len(r["image"]) > 262144:
        return []
    return [(float(s), {"id": r.get("id"), "score": round(float(s), 4), "text": (r.get("text") or "")[:160],
                        "image": bytes(r["image"])})]


def _with_thumbs(examples: list[tuple[float, dict]]) -> list[dict]:
    import base64

    from winnow.pipeline.report import make_thumbnail

    out = []
    for _, e in examples:
        e = dict(e)
        th = make_thumbnail(e.pop("image"), size=80)
        e["thumb"] = None if th is None else base64.b64encode(th).decode("ascii")
        out.append(e)
    return out


def _stats(cfg: ClipConfig, scored: beam.PCollection, keys: beam.PCollection, cut: beam.PCollection) -> beam.PCollection:
    hist = (scored
            | "ScoreValue" >> beam.FlatMap(lambda r: [r["image_text_score"]] if r.get("image_text_score") is not None else [])
            | "ScoreHist" >> beam.CombineGlobally(HistogramFn(linear_edges(0.0, 2.5, 50)))
            | "ScoreHistWrap" >> beam.Map(lambda h: {"score_hist": h}))
    n_scored = keys | "CountScored" >> beam.combiners.Count.Globally()
    examples = scored | "Examples" >> beam.FlatMap(_example)
    top = (examples | "Top" >> beam.combiners.Top.Of(_EXAMPLES // 2, key=lambda e: (e[0], e[1]["id"] or ""))
           | "TopWrap" >> beam.Map(lambda xs: {"highest": _with_thumbs(xs)}))
    bottom = (examples | "Bottom" >> beam.combiners.Top.Of(_EXAMPLES // 2, key=lambda e: (-e[0], e[1]["id"] or ""))
              | "BottomWrap" >> beam.Map(lambda xs: {"lowest": _with_thumbs(xs)}))

    def summary(n: int, cut: list) -> dict:
        threshold, cos_cut = cfg.cut_threshold, None
        if threshold is None and cut:
            cos_cut = -cut[0][0]
            threshold = clipscore(cos_cut)
        return {"selection": {"model_dir": cfg.model_dir, "keep_fraction": cfg.keep_fraction,
                              "threshold": threshold, "cosine_cut": cos_cut, "scored": n}}

    sel = n_scored | "Summary" >> beam.Map(summary, cut=beam.pvalue.AsList(cut))
    return (hist, sel, top, bottom) | "ImageTextStats" >> beam.Flatten()


def image_text_section(stats: Mapping[str, Any], examples: Sequence[Mapping[str, Any]],
                       config: Mapping[str, Any]) -> Any:
    """Report section: the score histogram with the cut, and the highest and lowest pairs."""
    from winnow.pipeline.report import ReportSection, esc, html_table, svg_histogram

    s = (stats.get("stage_stats") or {}).get(NAME)
    if not s:
        return None
    sel = s.get("selection") or {}
    th = sel.get("threshold")
    body = ["<p>image_text_score is CLIPScore, 2.5 &times; max(cosine, 0), of the image and caption embeddings "
            "(0.85 = cosine 0.34). Scores mean something only for a trained model: a randomly initialised "
            "model (the demo's, unless a real one is configured) gives noise.</p>",
            html_table(["setting", "value"], [("model", sel.get("model_dir")), ("scored pairs", sel.get("scored")),
                                              ("keep fraction", sel.get("keep_fraction")),
                                              ("cut at cosine", sel.get("cosine_cut")),
                                              ("threshold", None if th is None else round(th, 4))])]
    h = s.get("score_hist")
    if isinstance(h, Mapping) and h.get("n"):
        body.append(svg_histogram(h, title="image_text_score (CLIPScore)", x_label="image_text_score", threshold=th))
    for key, title in (("highest", "Highest-scoring pairs"), ("lowest", "Lowest-scoring pairs")):
        rows = []
        for e in s.get(key) or []:
            img = f'<img class="thumb" alt="" src="data:image/png;base64,{esc(e["thumb"])}">' if e.get("thumb") else ""
            rows.append(f"<tr><td>{img}</td><td class=num>{esc(e.get('score'))}</td><td>{esc(e.get('text'))}</td></tr>")
        if rows:
            body.append(f"<h3>{esc(title)}</h3><table><thead><tr><th>image</th><th class=num>score</th>"
                        f"<th>caption</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return ReportSection("Image-text agreement (CLIP)", "".join(body), "sec-image-text")


def _build(cfg: ClipConfig, ctx: BuildContext) -> beam.PTransform:
    return ImageTextScoreStage(cfg)


DECLARATION = StageDecl(NAME, ClipConfig, _build, clip_fields, (REASON_BELOW,), report=image_text_section)
