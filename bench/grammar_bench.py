"""The grammar stage's calibration and speed: well-edited prose (stdlib docstrings and the
pydoc topics, read at run time) against the same kind of paragraphs with deliberate agreement,
article and word-choice errors; the share dropped at several thresholds, and throughput of
``GrammarFilter`` against Harper's own ``Linter.lint`` on the same texts (the peer: what the
filter costs beyond the checker).

    python bench/grammar_bench.py [--n 150]
"""

from __future__ import annotations

import argparse
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=150, help="clean paragraphs (and at most as many erroneous)")
    a = ap.parse_args()
    import harper

    from winnow.filters.grammar import GrammarConfig, GrammarFilter
    from winnow.demo.grammar_evalset import grammar_eval_set

    clean, bad = grammar_eval_set(n=a.n)
    texts = clean + [t for t, _ in bad]
    words = sum(len(t.split()) for t in texts)
    sents = sum(t.count(". ") + 1 for t in texts)
    f = GrammarFilter(GrammarConfig(max_errors_per_100_words=0))
    lin = harper.Linter()
    for x in texts[:20]:  # warm-up: a Linter's first calls are slower
        f.check(x)
        lin.lint(x, language="plaintext")
    ours = peer = 0.0
    # Each linter sees every text once, in turn: half the texts first to one, half first to the
    # other (a text linted a second time is faster, whichever linter sees it).
    res = [None] * len(texts)
    for i, x in enumerate(texts):
        for who in ((0, 1) if i % 2 else (1, 0)):
            t = time.perf_counter()
            if who == 0:
                res[i] = f.check(x)
            else:
                lin.lint(x, language="plaintext")
            dt = time.perf_counter() - t
            ours, peer = (ours + dt, peer) if who == 0 else (ours, peer + dt)
    print(f"{len(clean)} clean paragraphs, {len(bad)} with deliberate errors; {words:,} words, ~{sents:,} sentences")
    print(f"  GrammarFilter   {words / ours:8,.0f} words/s {sents / ours:6,.0f} sentences/s")
    print(f"  harper lint     {words / peer:8,.0f} words/s {sents / peer:6,.0f} sentences/s  (ratio {peer / ours:.2f})")
    rc, rb = res[:len(clean)], res[len(clean):]
    default = GrammarConfig().max_errors_per_100_words
    for th in (0.5, 1.0, 1.5, 2.0, 3.0):
        lost = sum(r[1] > th and r[3] >= 20 for r in rc) / len(rc)
        caught = sum(r[1] > th and r[3] >= 20 for r in rb) / len(rb)
        mark = "  <- default" if th == default else ""
        print(f"  max {th:3.1f} errors/100 words: clean prose dropped {lost:6.1%}, erroneous caught {caught:6.1%}{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
