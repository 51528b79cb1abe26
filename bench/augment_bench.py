"""Augment benchmark: back-translation throughput against calling Apertium directly.

Sentences come from the Python documentation shipped with the interpreter
(``pydoc_data.topics``): English technical prose, with a term list of Python names. For each
Apertium pivot, in the same run:

* the peer: Apertium called directly, English -> pivot -> English, as the shell would:
  ``apertium -u eng-spa | apertium -u spa-eng`` on the whole set (the sentences joined by
  separator paragraphs), nothing of winnow in between; the two-call path
  (``ApertiumTranslator.translate`` per direction) is printed too;
* the augmenter: ``Augmenter.augment`` on the same sentences as records (fraction 1.0):
  term placeholders, the same two translator calls, restoring, chrF and the checks;
* the whole ``augment`` stage in a Beam run (FnApiRunner, input file -> shards) on the same
  records, for the first pivot.

Throughput is sentences per wall second and per CPU second (this process plus the Apertium
processes it waited for: Apertium is a pipeline of several processes, so a call uses more
than one core). The outcome shares (kept, and each rejection reason) and the chrF
distribution of the kept augmentations are printed too. Each measurement is repeated
``--repeats`` times, interleaved with its peer, and the medians are compared (the machine may
be shared).

    python bench/augment_bench.py [--sentences 2000] [--pivots spa,cat,epo] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

TERMS = ("Python", "None", "True", "False", "__init__", "self", "str", "int", "dict", "tuple", "lambda",
         "yield", "async", "await", "import", "iterator", "generator", "exception", "module", "class")
TARGET_RATIO = 0.8


def sentences(n: int) -> list[str]:
    import pydoc_data.topics

    out, seen = [], set()
    for key in sorted(pydoc_data.topics.topics):
        text = " ".join(pydoc_data.topics.topics[key].split())
        for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
            if 40 <= len(s) <= 300 and s.isascii() and s not in seen and not re.search(r"[{}>=*]{2}|^\W", s):
                seen.add(s)
                out.append(s)
    if len(out) < n:
        out = (out * (n // max(len(out), 1) + 1))
    return out[:n]


def _clock():
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), time.process_time() + ch.ru_utime + ch.ru_stime


def _since(t0):
    w, c = _clock()
    return w - t0[0], c - t0[1]


_SEP_JOIN = "\n\nZZSEPZZ.\n\n"
_SEP_SPLIT = re.compile(r"\s*\n\s*ZZSEPZZ\.?\s*\n?", re.IGNORECASE)


def direct_round_trip(bt, sents: list[str]) -> list[str]:
    """The peer: ``apertium -u FWD | apertium -u BWD`` once, on all the sentences joined by
    separator paragraphs (what a user batching Apertium from the shell writes), split after."""
    payload = _SEP_JOIN.join(sents) + _SEP_JOIN
    cmd = f"apertium -u {bt.forward.mode} | apertium -u {bt.backward.mode}"
    out = subprocess.run(["bash", "-c", cmd], input=payload, capture_output=True, text=True, check=True).stdout
    parts = _SEP_SPLIT.split(out)
    if parts and not parts[-1].strip():
        parts.pop()
    if len(parts) != len(sents):
        raise RuntimeError("the direct round trip lost separators")
    return [p.strip() for p in parts]


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentences", type=int, default=2000)
    ap.add_argument("--pivots", default="spa,cat,epo")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from winnow.filters.augment import AugmentConfig, Augmenter
    from winnow.filters.augment_translate import apertium_backtranslator

    sents = sentences(args.sentences)
    n = len(sents)
    recs = [{"id": f"s{i}", "source": f"pydoc:{i}", "modality": "text", "text": s, "meta": "{}"}
            for i, s in enumerate(sents)]
    print(f"{n} sentences from pydoc_data.topics, {sum(map(len, sents)) / 1e3:.0f} kB, {len(TERMS)} protected terms")
    worst = None
    for pivot in args.pivots.split(","):
        bt = apertium_backtranslator(pivot)
        aug = Augmenter(AugmentConfig(fraction=1.0, pivots=(pivot,)), TERMS, {pivot: bt})
        times: dict[str, list[tuple[float, float]]] = {"direct": [], "two_call": [], "augmenter": []}
        for _ in range(args.repeats):  # interleaved, so a busy moment of the machine hits both
            t0 = _clock()
            direct_round_trip(bt, sents)
            times["direct"].append(_since(t0))
            t0 = _clock()
            bt.backward.translate(bt.forward.translate(sents))
            times["two_call"].append(_since(t0))
            t0 = _clock()
            results = aug.augment(recs)
            times["augmenter"].append(_since(t0))
        dw, dc = (_median([t[k] for t in times["direct"]]) for k in (0, 1))
        tw = _median([t[0] for t in times["two_call"]])
        aw, ac = (_median([t[k] for t in times["augmenter"]]) for k in (0, 1))
        outcomes: dict[str, int] = {}
        kept_chrf = []
        for (a,) in results:
            outcomes[a.reason or "kept"] = outcomes.get(a.reason or "kept", 0) + 1
            if a.reason is None:
                kept_chrf.append(a.chrf)
        kept_chrf.sort()
        def q(p, xs=kept_chrf):
            return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else None

        with_terms = [r for r, (a,) in zip(recs, results) if aug.shield.spans(r["text"])]
        kept_terms = sum(1 for r, (a,) in zip(recs, results) if a.reason is None and aug.shield.spans(r["text"])
                         and not aug.shield.lost(r["text"], a.text))
        kept_with = sum(1 for r, (a,) in zip(recs, results) if a.reason is None and aug.shield.spans(r["text"]))
        ratio = dw / aw if aw else float("nan")
        worst = ratio if worst is None else min(worst, ratio)
        print(f"\n[{pivot}] medians of {args.repeats} interleaved runs")
        print(f"[{pivot}] direct round trip: {n / dw:7.1f} sent/s wall, {n / dc:7.1f} sent/s per CPU s"
              f"  (two separate calls: {n / tw:.1f} sent/s wall)")
        print(f"[{pivot}] augmenter:         {n / aw:7.1f} sent/s wall, {n / ac:7.1f} sent/s per CPU s"
              f"  -> {ratio:.2f}x of direct (target >= {TARGET_RATIO})")
        print(f"[{pivot}] outcomes: " + ", ".join(f"{k} {v} ({100 * v / n:.1f}%)" for k, v in sorted(outcomes.items())))
        print(f"[{pivot}] differ from original: {100 * (n - outcomes.get('augment_identical', 0)) / n:.1f}% of attempts;"
              f" records with a protected term: {len(with_terms)}, kept with every term: {kept_terms}/{kept_with}")
        print(f"[{pivot}] chrF of kept: p10 {q(0.1)}, p25 {q(0.25)}, median {q(0.5)}, p75 {q(0.75)}, p90 {q(0.9)}")

    # the whole stage in a Beam run, first pivot
    from winnow.pipeline.configure import load_config
    from winnow.pipeline.runner import run

    pivot = args.pivots.split(",")[0]
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.jsonl")
        terms = os.path.join(tmp, "terms.txt")
        with open(src, "w") as fh:
            fh.writelines(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in recs)
        with open(terms, "w") as fh:
            fh.write("\n".join(TERMS) + "\n")
        bt = apertium_backtranslator(pivot)
        walls: dict[str, list[float]] = {"direct": [], "base": [], "with": []}
        for rep in range(args.repeats):  # interleaved: direct, run without augment, run with it
            t0 = _clock()
            direct_round_trip(bt, sents)
            walls["direct"].append(_since(t0)[0])
            for stages in (["normalize"], ["normalize", "augment"]):
                cfg = load_config(input=[src], output=os.path.join(tmp, f"{'-'.join(stages)}-{rep}"), stages=stages,
                                  overrides=["augment.fraction=1.0", f"augment.pivots={pivot}", f"augment.terms={terms}"])
                t0 = _clock()
                res = run(cfg, progress=False)
                walls["with" if "augment" in stages else "base"].append(_since(t0)[0])
        dw, base, w = (_median(walls[k]) for k in ("direct", "base", "with"))
        st = res.stats
        stage_w = w - base
        print(f"\n[{pivot}] medians of {args.repeats} interleaved runs; whole run with augment: {w:.1f}s wall; "
              f"without: {base:.1f}s; augment's share "
              f"{stage_w:.1f}s -> {n / stage_w:.1f} sent/s, {dw / stage_w:.2f}x of direct ({n / dw:.1f} sent/s)")
        print(f"[{pivot}] stats: read {st['read']}, kept {st['kept']}, augmented {st['augmented']}, rows "
              f"{st['shards']['rows']}, balanced {st['balanced']}")
        print(f"[{pivot}] stage counts: {json.dumps(st['stage_stats']['augment']['counts'], sort_keys=True)}")
    stage_ratio = dw / stage_w if stage_w > 0 else float("nan")
    print(f"whole augment stage: {stage_ratio:.2f}x of the direct round trip per wall second (target >= {TARGET_RATIO})")
    if worst is not None and worst < TARGET_RATIO:
        print(f"augmenter below {TARGET_RATIO}x of the direct translator: {worst:.2f}x", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
