"""Augment benchmark: back-translation throughput against calling Apertium directly.

Sentences come from the Python documentation shipped with the interpreter
(``pydoc_data.topics``): English technical prose, with a term list of Python names. For each
Apertium pivot, in the same run, interleaved (the order rotates every round):

* direct (the peer): Apertium called the way a user batches it from the shell, once on the
  whole set: ``apertium -u FWD | apertium -u BWD`` (plain text mode, no unknown-word marks),
  the sentences joined by separator paragraphs and split afterwards; nothing of winnow in
  between. It starts both modes once and translates everything in one stream.
* back-translation: winnow's translator, ``apertium_backtranslator(pivot).backtranslate`` on
  the same sentences, from a cold start: both modes' module chains are started in null-flush
  mode (``apertium-wblank-mode -z``, the modules ``apertium -u`` runs), each sentence goes
  through as its own NUL-terminated unit (so its translation does not depend on the others),
  and the chains are stopped at the end; start and stop are measured.
* augmenter: ``Augmenter.augment`` on the same sentences as records (fraction 1.0), cold as
  above: term placeholders, the round trip, restoring, chrF and the checks.
* the whole ``augment`` stage in a Beam run (FnApiRunner, input file -> shards) on the same
  records, first pivot only: the run with ``normalize,augment`` minus the run with
  ``normalize`` alone (the stage's share of the run, its chains' start included).

Throughput is sentences per wall second and per CPU second ("per core": this process plus the
Apertium processes it waited for; a chain of a dozen processes uses more than one core). Each
ratio is direct's time / the other's, per round; the medians over ``--repeats`` rounds and
their range are printed (the machine may be shared and noisy). The outcome shares (kept, and
each rejection reason) and the chrF distribution of the kept augmentations are printed too.

    python bench/augment_bench.py [--sentences 1000] [--pivots spa,cat,epo] [--repeats 5] [--no-stage]
"""

from __future__ import annotations

import argparse
import itertools
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


def _summary(name: str, n: int, times: list[tuple[float, float]], direct: list[tuple[float, float]]) -> str:
    """``name``: sentences/s (wall, CPU) from the median times, and direct's time / this one's
    per round (median and range), wall and CPU."""
    w, c = _median([t[0] for t in times]), _median([t[1] for t in times])
    rw = [d[0] / t[0] for d, t in zip(direct, times)]
    rc = [d[1] / t[1] for d, t in zip(direct, times)]
    line = f"{name:<17} {n / w:7.1f} sent/s wall, {n / c:7.1f} sent/s per CPU s"
    if times is not direct:
        line += (f"  -> {_median(rw):.2f}x of direct wall [{min(rw):.2f}-{max(rw):.2f}],"
                 f" {_median(rc):.2f}x per CPU s [{min(rc):.2f}-{max(rc):.2f}]")
    return line


def _rounds(repeats: int, steps: dict) -> dict[str, list[tuple[float, float]]]:
    """Run each step once per round, rotating their order every round; (wall, CPU) per run."""
    names = list(steps)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
    for rep in range(repeats):
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            t0 = _clock()
            steps[name]()
            times[name].append(_since(t0))
    return times


def _pivot(pivot: str, args, sents: list[str], recs: list[dict]) -> list[str]:
    """Direct, back-translation and augmenter for one pivot; the ratios below the target."""
    from winnow.filters.augment import AugmentConfig, Augmenter
    from winnow.filters.augment_translate import apertium_backtranslator

    n = len(sents)
    below: list[str] = []
    probe = apertium_backtranslator(pivot)  # checks the pair is installed
    got: dict[str, list] = {}

    def direct() -> None:
        got["direct"] = direct_round_trip(probe, sents)

    def backtranslate() -> None:
        bt = apertium_backtranslator(pivot)
        got["bt"] = bt.backtranslate(sents)
        bt.close()

    def augmenter() -> None:
        aug = Augmenter(AugmentConfig(fraction=1.0, pivots=(pivot,)), TERMS, {pivot: apertium_backtranslator(pivot)})
        got["aug"] = aug.augment(recs)
        aug.close()

    times = _rounds(args.repeats, {"direct": direct, "back-translation": backtranslate, "augmenter": augmenter})
    print(f"\n[{pivot}] medians of {args.repeats} rounds (ratio ranges in brackets)")
    for name, ts in times.items():
        print(f"[{pivot}] " + _summary(name, n, ts, times["direct"]))
        if name != "direct":
            ratio = _median([d[0] / t[0] for d, t in zip(times["direct"], ts)])
            if ratio < TARGET_RATIO:
                below.append(f"{pivot} {name} {ratio:.2f}x")
    same = sum(a == b for a, b in zip(got["bt"], got["direct"]))
    print(f"[{pivot}] back-translations equal to direct's: {same}/{n} (direct translates the sentences as one"
          f" text, so a sentence may read differently next to its neighbours)")
    results = got["aug"]
    outcomes: dict[str, int] = {}
    kept_chrf = []
    for (a,) in results:
        outcomes[a.reason or "kept"] = outcomes.get(a.reason or "kept", 0) + 1
        if a.reason is None:
            kept_chrf.append(a.chrf)
    kept_chrf.sort()

    def q(p, xs=kept_chrf):
        return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else None

    shield = Augmenter(AugmentConfig(), TERMS).shield
    with_terms = [r for r in recs if shield.spans(r["text"])]
    kept_with = [(r, a) for r, (a,) in zip(recs, results) if a.reason is None and shield.spans(r["text"])]
    kept_terms = sum(1 for r, a in kept_with if not shield.lost(r["text"], a.text))
    print(f"[{pivot}] outcomes: " + ", ".join(f"{k} {v} ({100 * v / n:.1f}%)" for k, v in sorted(outcomes.items())))
    print(f"[{pivot}] differ from original: {100 * (n - outcomes.get('augment_identical', 0)) / n:.1f}% of attempts;"
          f" records with a protected term: {len(with_terms)}, kept with every term: {kept_terms}/{len(kept_with)}")
    print(f"[{pivot}] chrF of kept: p10 {q(0.1)}, p25 {q(0.25)}, median {q(0.5)}, p75 {q(0.75)}, p90 {q(0.9)}")
    return below


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--pivots", default="spa,cat,epo")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-stage", action="store_true", help="skip the whole-stage Beam runs")
    args = ap.parse_args()

    sents = sentences(args.sentences)
    n = len(sents)
    recs = [{"id": f"s{i}", "source": f"pydoc:{i}", "modality": "text", "text": s, "meta": "{}"}
            for i, s in enumerate(sents)]
    print(f"{n} sentences from pydoc_data.topics, {sum(map(len, sents)) / 1e3:.0f} kB, {len(TERMS)} protected terms; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print("direct: one `apertium -u FWD | apertium -u BWD` on all sentences (joined by separator paragraphs);"
          " back-translation / augmenter: winnow, cold start (module chains started in null-flush mode, one"
          " NUL-terminated unit per sentence, stopped at the end)")
    below: list[str] = []
    for pivot in args.pivots.split(","):
        below += _pivot(pivot, args, sents, recs)
    if not args.no_stage:
        below += _stage(args, recs, sents)
    if below:
        print(f"below {TARGET_RATIO}x of direct (median wall): {', '.join(below)}", file=sys.stderr)
    return 0


def _stage(args, recs: list[dict], sents: list[str]) -> list[str]:
    """The whole augment stage in Beam runs against the direct call, first pivot."""
    from winnow.filters.augment_translate import apertium_backtranslator
    from winnow.pipeline.configure import load_config
    from winnow.pipeline.runner import run

    pivot = args.pivots.split(",")[0]
    n = len(recs)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.jsonl")
        terms = os.path.join(tmp, "terms.txt")
        with open(src, "w") as fh:
            fh.writelines(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in recs)
        with open(terms, "w") as fh:
            fh.write("\n".join(TERMS) + "\n")
        probe = apertium_backtranslator(pivot)
        res: dict = {}
        runs = itertools.count()

        def runner(stages: list[str]):
            def go() -> None:
                out = os.path.join(tmp, f"out-{next(runs)}")
                cfg = load_config(input=[src], output=out, stages=stages,
                                  overrides=["augment.fraction=1.0", f"augment.pivots={pivot}", f"augment.terms={terms}"]
                                  if "augment" in stages else [])
                res["-".join(stages)] = run(cfg, progress=False)
            return go

        times = _rounds(args.repeats, {"direct": lambda: direct_round_trip(probe, sents),
                                       "without": runner(["normalize"]), "with": runner(["normalize", "augment"])})
    share = [(w[0] - b[0], w[1] - b[1]) for w, b in zip(times["with"], times["without"])]
    print(f"\n[{pivot}] whole augment stage in a Beam run (FnApiRunner, 1 worker): median run with augment "
          f"{_median([t[0] for t in times['with']]):.1f}s wall, without {_median([t[0] for t in times['without']]):.1f}s;"
          f" the stage's share = with - without, per round")
    print(f"[{pivot}] " + _summary("direct", n, times["direct"], times["direct"]))
    print(f"[{pivot}] " + _summary("augment stage", n, share, times["direct"]))
    st = res["normalize-augment"].stats
    print(f"[{pivot}] stats: read {st['read']}, kept {st['kept']}, augmented {st['augmented']}, rows "
          f"{st['shards']['rows']}, balanced {st['balanced']}")
    print(f"[{pivot}] stage counts: {json.dumps(st['stage_stats']['augment']['counts'], sort_keys=True)}")
    ratio = _median([d[0] / s[0] for d, s in zip(times["direct"], share)])
    print(f"whole augment stage: {ratio:.2f}x of the direct round trip per wall second (target >= {TARGET_RATIO})")
    return [f"{pivot} augment stage {ratio:.2f}x"] if ratio < TARGET_RATIO else []


if __name__ == "__main__":
    sys.exit(main())
