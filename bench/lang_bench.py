"""Language id on short texts: winnow's ``lang`` (``backend: hybrid``, and the default ``lingua``) against lingua's
high-accuracy mode alone and fastText lid.176 alone, side by side in one process (per core).

The labelled set is :func:`winnow.demo.langid_evalset.lang_eval_set` (short UI strings and
two-phrase lines in 20 languages, written for winnow). Every detector weighs the same candidate
languages (``lang``'s default list). Each is timed ``--repeats`` times after a warm-up; medians.

    python bench/lang_bench.py [--repeats 5] [--pairs 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=40, help="two-phrase lines per language")
    a = ap.parse_args()
    from winnow.filters.lang import LangConfig, LangFilter
    from winnow.demo.langid_evalset import LANGS, lang_eval_set

    data = lang_eval_set(pairs_per_lang=a.pairs)
    texts, gold = [t for t, _ in data], [g for _, g in data]
    print(f"{len(texts):,} short texts in {len(LANGS)} languages (median {statistics.median(map(len, texts)):.0f} chars)")
    runs = [
        ("winnow lang (hybrid)", LangConfig(backend="hybrid")),
        ("lingua 2.1.1 high-accuracy", LangConfig(backend="lingua", low_accuracy=False, fast_path=False)),
        ("fastText lid.176.ftz alone", LangConfig(backend="hybrid", ft_confidence=0.0)),
        ("winnow lang (lingua + fast path, default)", LangConfig(backend="lingua")),
    ]
    filters = {name: LangFilter(cfg) for name, cfg in runs}
    preds = {name: f.detect(texts) for name, f in filters.items()}  # warm-up (lingua loads models lazily)
    times: dict[str, list[float]] = {name: [] for name in filters}
    for _ in range(a.repeats):  # interleaved, so load on a shared machine hits every detector alike
        for name, f in filters.items():
            t = time.perf_counter()
            f.detect(texts)
            times[name].append(time.perf_counter() - t)
    res = {}
    for name, pred in preds.items():
        acc = sum(p[0] == g for p, g in zip(pred, gold)) / len(gold)
        res[name] = (acc, len(texts) / statistics.median(times[name]))
    peer = res["lingua 2.1.1 high-accuracy"]
    for name, (acc, rate) in res.items():
        print(f"  {name:32s} accuracy {acc:.4f}  {rate:9,.0f} texts/s  ({rate / peer[1]:.1f}x lingua high-accuracy)")
    ours = res["winnow lang (hybrid)"]
    print(f"hybrid vs lingua high-accuracy: accuracy {ours[0] - peer[0]:+.4f}, speed {ours[1] / peer[1]:.1f}x per core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
