"""``augment``: new records from kept ones (back-translation, synonyms, entities, images).

Every record passes through unchanged; a record chosen from ``(seed, id)`` also yields one
augmentation, which is kept as a new record (``aug_from``, ``aug_method``) only when it passed
the checks of :class:`~winnow.filters.augment.Augmenter`. An augmentation that failed them is
not a record of the input, so it is not a reject: it is counted under its reason (metrics
``winnow:augment/<reason>`` and ``stats.json["stage_stats"]["augment"]["counts"]``) and shown
in the report with its original, side by side. The balance ``read = kept_originals + rejected
+ dead_letter`` and ``rows = kept_originals + augmented`` therefore holds unchanged.

A record on which the augmenter raised (a translator crash) is dead-lettered by the guarded
mechanism like any stage's.
"""

from __future__ import annotations

import difflib
import heapq
import json
from typing import Any, Iterable, Sequence

import apache_beam as beam
import xxhash

from winnow.filters.augment import AUGMENT_FIELDS, REASONS, Attempt, AugmentConfig, Augmenter
from winnow.pipeline.report import ReportSection
from winnow.pipeline.report_svg import esc, html_table, svg_bars, svg_histogram
from winnow.pipeline.stages.base import DEAD, REJECTED, TIMING, Emit, StageFn, StageOutputs, run_step
from winnow.pipeline.stages.spec import BuildContext, StageDecl
from winnow.pipeline.stages.stats import HistogramFn, linear_edges

__all__ = ["DECLARATION", "resolve_terms", "check_backend", "make_augmenter"]

_AUG = "aug"
_KEPT = "augmented"


def resolve_terms(cfg: AugmentConfig, run_config: Any = None) -> tuple[str, ...]:
    """``augment.terms``, else the tokenizer's domain dictionary when the run trains one with it."""
    from winnow.filters.augment_terms import read_terms

    if cfg.terms:
        return read_terms(cfg.terms)
    if run_config is not None and "tokenizer" in getattr(run_config, "stages", ()):
        path = getattr(run_config.options("tokenizer"), "dictionary", "")
        if path:
            return read_terms(path)
    return ()


def check_backend(cfg: AugmentConfig) -> None:
    """Raise :class:`~winnow.errors.ConfigError` (naming the package or path) when a configured
    method's backend is missing here."""
    from winnow.filters.augment_translate import Seq2SeqTranslator, apertium_backtranslator

    if "backtranslate" in cfg.methods:
        if cfg.backend == "apertium":
            for p in cfg.pivots:
                apertium_backtranslator(p)
        else:
            Seq2SeqTranslator.check(cfg.forward_model, "augment.forward_model")
            Seq2SeqTranslator.check(cfg.backward_model, "augment.backward_model")
    if "synonym" in cfg.methods:
        from winnow.filters.augment_replace import WordNet

        WordNet.check(cfg.wordnet)


def make_augmenter(cfg: AugmentConfig, terms: Sequence[str]) -> Augmenter:
    """The augmenter with its configured back-translators (models load lazily)."""
    from winnow.filters.augment_translate import BackTranslator, Seq2SeqTranslator, apertium_backtranslator

    bts: dict[str, Any] = {}
    if "backtranslate" in cfg.methods:
        if cfg.backend == "apertium":
            bts = {p: apertium_backtranslator(p) for p in cfg.pivots}
        else:
            pivot = cfg.pivots[0]
            bts = {pivot: BackTranslator(Seq2SeqTranslator(cfg.forward_model, target_lang=cfg.forward_lang),
                                         Seq2SeqTranslator(cfg.backward_model, target_lang=cfg.backward_lang),
                                         pivot)}
    return Augmenter(cfg, terms, bts)


def _changes(original: str, augmented: str, limit: int = 12) -> list[list[str]]:
    """Word-level ``[before, after]`` pairs where the texts differ."""
    a, b = original.split(), augmented.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op != "equal":
            out.append([" ".join(a[i1:i2]), " ".join(b[j1:j2])])
            if len(out) >= limit:
                break
    return out


class _AugmentFn(StageFn):
    def __init__(self, cfg: AugmentConfig, terms: tuple[str, ...], chars: int) -> None:
        super().__init__("augment", fields=AUGMENT_FIELDS)
        self._cfg = cfg
        self._terms = terms
        self._chars = chars

    def start(self) -> None:
        self._aug = make_augmenter(self._cfg, self._terms)

    def compute(self, rows: list[dict], *side: Any) -> Sequence[Any]:
        return self._aug.augment(rows)

    def teardown(self) -> None:
        aug = getattr(self, "_aug", None)
        if aug is not None:
            aug.close()  # the Apertium chains this worker kept running

    def route(self, row: dict, result: list[Attempt], out: Emit) -> None:
        out.keep(row)
        for a in result:
            outcome = a.reason or _KEPT
            out.count(outcome if a.reason else f"{_KEPT}_{a.method}")
            ex = None
            if a.reason not in ("not_applicable", "too_long"):
                orig = row.get("text") or ""
                new = a.text or ""
                ex = {"method": a.method, "outcome": outcome, "id": row["id"],
                      "original": orig[:self._chars], "augmented": new[:self._chars],
                      "changes": _changes(orig, new) if a.image is None else [],
                      "chrf": a.chrf, "lost": list(a.lost), "params": a.params}
            out.emit(_AUG, (a.method, outcome, a.chrf, ex))
            if a.reason is None:
                out.keep(self._aug.new_record(row, a))


def _rank(ex: dict) -> int:
    return xxhash.xxh3_64_intdigest(f"{ex['id']}\x00{ex['method']}".encode("utf-8", "surrogatepass"))


class _AugmentStatsFn(beam.CombineFn):
    """Everything the stage reports, in one combiner over its attempts (one Beam step, where
    separate counts, histograms and top-examples combiners cost a fused stage each): counts per
    ``method/outcome``, the chrF histograms of kept and of all attempts, and per
    ``method/outcome`` the ``examples`` with the highest ``(rank, id)`` (a pure function of the
    ids, so the same on every runner)."""

    def __init__(self, examples: int, settings: dict[str, Any]) -> None:
        self._n = max(examples, 1)
        self._examples = examples
        self._settings = settings
        self._hist = HistogramFn(linear_edges(0, 100, 20))

    def create_accumulator(self) -> list:
        return [{}, self._hist.create_accumulator(), self._hist.create_accumulator(), {}]

    def add_input(self, acc: list, t: Any) -> list:
        method, outcome, score, ex = t
        key = f"{method}/{outcome}"
        acc[0][key] = acc[0].get(key, 0) + 1
        if score is not None:
            self._hist.add_input(acc[2], score)
            if outcome == _KEPT:
                self._hist.add_input(acc[1], score)
        if ex is not None:
            top = acc[3].setdefault(key, [])
            top.append((_rank(ex), ex["id"], ex))
            if len(top) > 4 * self._n:
                top[:] = heapq.nlargest(self._n, top, key=lambda e: e[:2])
        return acc

    def merge_accumulators(self, accs: Iterable[list]) -> list:
        accs = list(accs)
        counts: dict[str, int] = {}
        tops: dict[str, list] = {}
        for a in accs:
            for k, v in a[0].items():
                counts[k] = counts.get(k, 0) + v
            for k, v in a[3].items():
                tops.setdefault(k, []).extend(v)
        tops = {k: heapq.nlargest(self._n, v, key=lambda e: e[:2]) for k, v in tops.items()}
        return [counts, self._hist.merge_accumulators([a[1] for a in accs]),
                self._hist.merge_accumulators([a[2] for a in accs]), tops]

    def extract_output(self, acc: list) -> dict[str, Any]:
        tops = {k: [e[2] for e in heapq.nlargest(self._n, v, key=lambda e: e[:2])][:self._examples]
                for k, v in sorted(acc[3].items())}
        return {"counts": dict(sorted(acc[0].items())), "examples": tops, "config": dict(self._settings),
                "chrf_kept_hist": self._hist.extract_output(acc[1]),
                "chrf_all_hist": self._hist.extract_output(acc[2])}


class _Augment(beam.PTransform):
    def __init__(self, cfg: AugmentConfig, terms: tuple[str, ...], chars: int) -> None:
        super().__init__()
        self._cfg, self._terms, self._chars = cfg, terms, chars

    def expand(self, records: beam.PCollection) -> StageOutputs:
        cfg = self._cfg
        outs = run_step(records, "Augment", _AugmentFn(cfg, self._terms, self._chars), tags=(_AUG,))
        settings = {"fraction": cfg.fraction, "seed": cfg.seed, "methods": list(cfg.methods), "backend": cfg.backend,
                    "pivots": list(cfg.pivots), "min_similarity": cfg.min_similarity, "terms": len(self._terms)}
        stats = outs[_AUG] | "Stats" >> beam.CombineGlobally(_AugmentStatsFn(cfg.examples, settings))
        return StageOutputs(kept=outs.kept, rejected=outs[REJECTED], dead=outs[DEAD], stats=stats,
                            timing=(outs[TIMING],))


def _build(cfg: AugmentConfig, ctx: BuildContext) -> beam.PTransform:
    check_backend(cfg)
    terms = resolve_terms(cfg, ctx.config)
    chars = getattr(getattr(ctx.config, "report", None), "example_chars", 400)
    return _Augment(cfg, terms, chars)


def _fields(cfg: AugmentConfig) -> tuple:
    return AUGMENT_FIELDS


def augment_section(stats: Any, examples: Any, config: Any) -> ReportSection | None:
    """Counts per method and outcome, the chrF of kept augmentations, side-by-side examples."""
    s = (stats.get("stage_stats") or {}).get("augment")
    if not s:
        return None
    counts = s.get("counts") or {}
    methods = sorted({k.split("/")[0] for k in counts})
    outcomes = [_KEPT, *REASONS, "not_applicable", "too_long"]
    rows = [(m, *[counts.get(f"{m}/{o}", 0) for o in outcomes]) for m in methods]
    cfg = s.get("config") or {}
    body = [f"<p>Augmented records are new records (<code>aug_from</code>, <code>aug_method</code>); "
            f"originals are unchanged. Fraction {esc(cfg.get('fraction'))}, seed {esc(cfg.get('seed'))}, "
            f"backend {esc(cfg.get('backend'))}, pivots {esc(', '.join(cfg.get('pivots') or []))}, "
            f"{esc(cfg.get('terms', 0))} protected terms, drift below chrF {esc(cfg.get('min_similarity'))}.</p>",
            html_table(["method", *outcomes], rows, numeric=tuple(range(1, len(outcomes) + 1))),
            svg_bars(sorted((k, v) for k, v in counts.items()), title="augmentation outcomes")]
    for key, title in (("chrf_kept_hist", "chrF of kept augmentations"), ("chrf_all_hist", "chrF of all attempts")):
        h = s.get(key)
        if isinstance(h, dict) and h.get("n"):
            body.append(svg_histogram(h, title=title, x_label="chrF", threshold=cfg.get("min_similarity")))
    for key, exs in sorted((s.get("examples") or {}).items()):
        ex_rows = []
        for e in exs:
            what = "; ".join(f"{a} → {b}" for a, b in e.get("changes") or []) or json.dumps(e.get("params"))
            if e.get("lost"):
                what = f"lost: {', '.join(e['lost'])}; " + what
            ex_rows.append((e.get("original"), e.get("augmented"), what,
                            "" if e.get("chrf") is None else f"{e['chrf']:.1f}"))
        body.append(f"<h4>{esc(key)}</h4>")
        body.append(html_table(["original", "augmented", "what changed", "chrF"], ex_rows, numeric=(3,)))
    return ReportSection("Augmentation", "".join(body), "sec-augment")


DECLARATION = StageDecl("augment", AugmentConfig, _build, fields=_fields,
                        reasons=REASONS, report=augment_section)
