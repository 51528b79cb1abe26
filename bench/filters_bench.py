"""Text filter benchmark: records/s and MB/s per stage and for the whole text filter stack.

Runs the pure filters (no Beam) on the demo corpus text (real text from this machine, about
8 MB, the same records ``make demo`` reads; ``--mb`` changes the volume) and measures, each
``--repeats`` times:

* the peer: whitespace tokenisation of every text (the least any text filter does),
* each stage alone on every record: lang, quality, model_quality (scoring; its training is
  timed on its own), toxicity, pii,
* the whole stack in pipeline order (lang -> quality -> model_quality -> toxicity -> pii),
  each stage seeing only what the previous kept, as in a run: records are copied once before
  the clock starts and flow through the stages, which annotate them in place.

Throughput is input bytes over CPU seconds of this process (``time.process_time``, all its
threads), i.e. MB/s per core; wall-clock figures are printed too. Medians over the repeats,
with ratios against the peer measured in the same run.

    python bench/filters_bench.py [--mb 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import zlib

TARGET_MB_S_PER_CORE = 3.0


def _records(mb: float) -> list[dict]:
    from winnow.demo.text import clean_records

    return [{"id": r["id"], "source": f"demo:{i}", "modality": "text", "text": r["text"]}
            for i, r in enumerate(clean_records(int(mb * 1e6), 0, "/usr/share/man"))]


def _timed(fn):
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c, time.perf_counter() - w


def _run_filter(f, recs: list[dict], batch: int, copy: bool = True) -> list[tuple[dict, object]]:
    """Run ``f`` over ``recs``, on copies (stages annotate records in place) unless ``copy`` is off."""
    out = []
    if batch > 1:
        for i in range(0, len(recs), batch):
            out.extend(f.process_batch([dict(r) for r in recs[i:i + batch]] if copy else recs[i:i + batch]))
    else:
        out = [f.process(dict(r) if copy else r) for r in recs]
    return out


class _MQ:
    """model_quality as a per-batch filter with its config's thresholds (absolute here)."""

    def __init__(self, scorer, min_score):
        self.scorer, self.min_score = scorer, min_score

    def process_batch(self, recs):
        from winnow.filters.model_quality import judge

        out = []
        for r, (s, p) in zip(recs, self.scorer.score([r["text"] for r in recs])):
            r["model_quality_score"], r["model_quality_perplexity"] = s, p
            out.append((r, judge(s, p, self.min_score, None)))
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=8.0, help="MB of demo text (default 8, the demo corpus)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from winnow.filters.lang import LangFilter
    from winnow.filters.model_quality import BigramLM, ModelQualityConfig, ModelQualityScorer, load_reference, train_classifier
    from winnow.filters.pii import PIIFilter
    from winnow.filters.quality import QualityFilter
    from winnow.filters.toxicity import ToxicityFilter

    recs = _records(args.mb)
    nbytes_of = {r["id"]: len(r["text"].encode("utf-8")) for r in recs}
    nbytes = sum(nbytes_of.values())
    mb = nbytes / 1e6
    print(f"corpus: {len(recs):,} records, {mb:.2f} MB of text (demo corpus text), repeats={args.repeats}")

    setup = {}
    (lang, c, w) = _timed(LangFilter)
    setup["lang"] = w
    quality = QualityFilter()
    (tox, c, w) = _timed(ToxicityFilter)
    setup["toxicity"] = w
    pii = PIIFilter()
    cfg = ModelQualityConfig()
    ref = load_reference(cfg.reference)
    # A fixed background sample (a stable hash of the id), so every run trains the same classifier.
    sample = [r["text"] for r in sorted(recs, key=lambda r: zlib.crc32(r["id"].encode()))[: cfg.background_sample]]
    (models, c, w) = _timed(lambda: {"classifier": train_classifier(ref, sample, cfg), "lm": BigramLM.train(ref).to_bytes()})
    setup["model_quality training"] = w
    mq = _MQ(ModelQualityScorer(cfg, models), 0.05)
    print("setup (wall s): " + ", ".join(f"{k} {v:.2f}" for k, v in setup.items()))

    stages = [("lang", lang, 1024), ("quality", quality, 1), ("model_quality", mq, 128), ("toxicity", tox, 64),
              ("pii", pii, 1)]
    res: dict[str, list[tuple[float, float]]] = {}
    in_stack: dict[str, list[tuple[float, int]]] = {}
    for _ in range(args.repeats):
        _, c, w = _timed(lambda: [len(r["text"].split()) for r in recs])
        res.setdefault("peer: whitespace split", []).append((c, w))
        for name, f, batch in stages:
            _, c, w = _timed(lambda f=f, b=batch: _run_filter(f, recs, b))
            res.setdefault(name, []).append((c, w))

        def stack(cur):
            # Records flow from stage to stage as in a run: each annotates them in place.
            steps = []
            for name, f, batch in stages:
                c0 = time.process_time()
                out = [r for r, v in _run_filter(f, cur, batch, copy=False) if v.keep]
                steps.append((name, time.process_time() - c0, cur))
                cur = out
            return cur, steps

        fresh = [dict(r) for r in recs]  # (copied before the clock starts)
        (kept, steps), c, w = _timed(lambda: stack(fresh))
        res.setdefault("whole text filter stack", []).append((c, w))
        for name, secs, inputs in steps:  # (bytes in, counted after the clock stops)
            in_stack.setdefault(name, []).append((secs, sum(nbytes_of[r["id"]] for r in inputs)))

    peer_cpu = statistics.median(c for c, _ in res["peer: whitespace split"])
    print(f"\n{'stage':<26} {'records/s':>10} {'MB/s/core':>10} {'MB/s wall':>10} {'x peer':>8}")
    for name, runs in res.items():
        cpu = statistics.median(c for c, _ in runs)
        wall = statistics.median(w for _, w in runs)
        print(f"{name:<26} {len(recs) / cpu:>10,.0f} {mb / cpu:>10.2f} {mb / wall:>10.2f} {peer_cpu / cpu:>8.3f}")
    print("\ninside the stack (each stage sees what the previous kept):")
    for name, runs in in_stack.items():
        cpu = statistics.median(c for c, _ in runs)
        print(f"  {name:<16} {runs[0][1] / 1e6:>6.2f} MB in  {cpu:>6.2f} CPU s")
    stack_cpu = statistics.median(c for c, _ in res["whole text filter stack"])
    rate = mb / stack_cpu
    print(f"\nwhole stack kept {len(kept):,} of {len(recs):,} records")
    verdict = "MET" if rate >= TARGET_MB_S_PER_CORE else "NOT MET"
    print(f"whole text filter stack: {rate:.2f} MB/s per core (target >= {TARGET_MB_S_PER_CORE}): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
