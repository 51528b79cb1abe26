"""Language id on short texts: winnow's ``lang`` at its default config and with ``backend: hybrid``,
against lingua's high-accuracy mode alone and fastText lid.176 alone, side by side in one process
(per core); optionally the cost of each config on a long-text corpus through ``winnow run``.

Two labelled sets of short texts: :func:`winnow.demo.langid_evalset.lang_eval_set` (short UI
strings and two-phrase lines in 20 languages, written for winnow) and, where the machine has
them, :func:`winnow.demo.langid_catalogs.catalog_eval_set` (real UI strings of the same 20
languages from the machine's gettext catalogs, ``--catalog-per-lang`` per language; noisier
labels). Every detector weighs the same candidate languages (``lang``'s default list). Each is
timed ``--repeats`` times after a warm-up (lingua loads its models on first use), interleaved;
medians. Each config's peak RSS is measured in a process of its own that builds the detector
and runs it on both sets (``--no-rss`` skips it).

``--long-mb N`` also builds (once) the memory benchmark's corpus of N MB from text on this
machine (man pages, pydoc topics, docstrings: many records are short sections) and runs
``winnow run --stages normalize,lang`` on it for the default config and each ``backend: hybrid``
variant, printing the lang stage's CPU seconds (stats.json) and the run's peak RSS; with
``--long-only``, on the records of that corpus whose first ``max_chars`` are long for lingua
(:data:`winnow.filters.lang.LONG_TEXT` cleaned characters or more) only.

    python bench/lang_bench.py [--repeats 5] [--pairs 40] [--catalog-per-lang 150] [--long-mb 25 [--long-only]]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

#: (name, LangConfig keyword arguments, the same as ``--set`` overrides for ``winnow run``)
CONFIGS: list[tuple[str, dict]] = [
    ("winnow lang, default (hybrid, ensemble)", {}),
    ("winnow lang, ensemble: [cld2]", {"ensemble": ["cld2"]}),
    ("winnow lang, tie_break: product", {"tie_break": "product"}),
    ("winnow lang, tie_break: lingua_high", {"tie_break": "lingua_high"}),
    ("winnow lang, backend: lingua", {"backend": "lingua"}),
]
HIGH = "lingua 2.1.1 high-accuracy"
PEERS: list[tuple[str, dict]] = [
    (HIGH, {"backend": "lingua", "low_accuracy": False, "fast_path": False}),
    ("lingua 2.1.1 low-accuracy", {"backend": "lingua", "fast_path": False}),
    ("fastText lid.176.ftz alone", {"backend": "fasttext", "model_path": "<bundled>"}),
]


def _config(kw: dict) -> object:
    from winnow.filters.lang import LangConfig, bundled_lid_model

    kw = {k: (bundled_lid_model() if v == "<bundled>" else tuple(v) if isinstance(v, list) else v) for k, v in kw.items()}
    return LangConfig(**kw)


def labelled_sets(pairs: int, per_lang: int) -> dict[str, list[tuple[str, str]]]:
    from winnow.demo.langid_catalogs import catalog_eval_set
    from winnow.demo.langid_evalset import lang_eval_set

    sets = {"UI set (winnow's)": lang_eval_set(pairs_per_lang=pairs)}
    cat = catalog_eval_set(per_lang=per_lang) if per_lang > 0 else []
    if len({g for _, g in cat}) >= 10:
        sets["gettext catalogs (machine)"] = cat
    return sets


def peak_rss(kw: dict, pairs: int, per_lang: int) -> float:
    """Peak RSS (MB) of a fresh process that builds the detector and runs it on both sets."""
    import subprocess

    code = ("import json, resource, sys\nsys.path.insert(0, sys.argv[1])\nfrom lang_bench import _config, labelled_sets\n"
            "from winnow.filters.lang import LangFilter\n"
            "f = LangFilter(_config(json.loads(sys.argv[2])))\n"
            "for data in labelled_sets(int(sys.argv[3]), int(sys.argv[4])).values():\n"
            "    f.detect([t for t, _ in data])\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parent), json.dumps(kw), str(pairs),
                          str(per_lang)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1]) / 1024


def short_texts(repeats: int, pairs: int, per_lang: int, rss: bool) -> None:
    from winnow.demo.langid_evalset import LANGS
    from winnow.filters.lang import LangFilter

    runs = CONFIGS + PEERS
    filters = {name: LangFilter(_config(kw)) for name, kw in runs}
    rss_mb = {name: peak_rss(kw, pairs, per_lang) for name, kw in runs} if rss else {}
    for set_name, data in labelled_sets(pairs, per_lang).items():
        texts, gold = [t for t, _ in data], [g for _, g in data]
        print(f"\n{set_name}: {len(texts):,} short texts in {len({*gold})} of the {len(LANGS)} languages "
              f"(median {statistics.median(map(len, texts)):.0f} chars)")
        preds = {name: f.detect(texts) for name, f in filters.items()}  # warm-up (lingua loads models lazily)
        times: dict[str, list[float]] = {name: [] for name in filters}
        for _ in range(repeats):  # interleaved, so load on a shared machine hits every detector alike
            for name, f in filters.items():
                t = time.process_time()
                f.detect(texts)
                times[name].append(time.process_time() - t)
        res = {}
        for name, pred in preds.items():
            acc = sum(p[0] == g for p, g in zip(pred, gold)) / len(gold)
            res[name] = (acc, len(texts) / statistics.median(times[name]))
        peer = res[HIGH]
        for name, (acc, rate) in res.items():
            mem = f"  peak RSS {rss_mb[name]:5,.0f} MB ({rss_mb[name] - rss_mb[HIGH]:+5,.0f} vs lingua high)" if rss_mb else ""
            print(f"  {name:40s} accuracy {acc:.4f}  {rate:9,.0f} texts/s per core  "
                  f"({rate / peer[1]:4.1f}x lingua high-accuracy){mem}")
        ours = res[CONFIGS[0][0]]
        print(f"{CONFIGS[0][0]} vs lingua high-accuracy on the {set_name}: accuracy {ours[0] - peer[0]:+.4f}, "
              f"speed {ours[1] / peer[1]:.1f}x per core")


def long_only(files: list[str], dest: str) -> str:
    """A copy of ``files`` with only the records whose prefix is long for lingua; its glob."""
    import gzip

    from winnow.filters.lang import LONG_TEXT, LangConfig, lingua_length

    m = LangConfig().max_chars
    os.makedirs(dest, exist_ok=True)
    for f in files:
        with gzip.open(f, "rt", encoding="utf-8") as src:
            keep = [ln for ln in src if lingua_length(" ".join(json.loads(ln)["text"][: m + m // 2].split())[:m]) >= LONG_TEXT]
        with gzip.open(os.path.join(dest, os.path.basename(f)), "wt", encoding="utf-8") as out:
            out.writelines(keep)
    return os.path.join(dest, "*.jsonl.gz")


def long_texts(mb: float, workdir: str, only_long: bool) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from memory_bench import ensure_corpus, measure

    files = ensure_corpus(workdir, mb)
    glob_ = os.path.join(os.path.dirname(files[0]), "*.jsonl.gz")
    if only_long:
        glob_ = long_only(files, os.path.join(workdir, f"corpus-{mb:g}MB-long-only", "text"))
    out = os.path.join(workdir, "lang-out")
    code = "import sys\nfrom winnow.pipeline.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    which = "its records long for lingua" if only_long else "all its records"
    print(f"\nwinnow run --stages normalize,lang on the {mb:g} MB corpus of {workdir}, {which} (1 worker)")
    base = None
    for name, kw in CONFIGS:
        sets = [a for k, v in kw.items() for a in ("--set", f"lang.{k}={json.dumps(v) if isinstance(v, list) else v}")]
        r = measure([sys.executable, "-c", code, "run", "--input", glob_, "--output", out, "--overwrite", "--quiet",
                     "--stages", "normalize,lang", "--workers", "1", *sets])
        with open(os.path.join(out, "stats.json")) as fh:
            cpu = json.load(fh)["timing"]["lang"]["cpu_s"]
        base = base or (cpu, r["peak_rss"])
        print(f"  {name:32s} lang CPU {cpu:6.2f} s ({cpu / base[0]:.2f}x default)  "
              f"peak RSS {r['peak_rss'] / 1e6:6,.0f} MB ({r['peak_rss'] / base[1]:.2f}x default)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=40, help="two-phrase lines per language")
    ap.add_argument("--catalog-per-lang", type=int, default=150, help="gettext catalog strings per language (0: none)")
    ap.add_argument("--no-rss", action="store_true", help="skip the per-config peak RSS processes")
    ap.add_argument("--long-mb", type=float, default=0.0, help="also run normalize,lang on a corpus of this many MB")
    ap.add_argument("--long-only", action="store_true", help="with --long-mb: only the records long for lingua")
    ap.add_argument("--workdir", default=".bench/memory")
    a = ap.parse_args()
    short_texts(a.repeats, a.pairs, a.catalog_per_lang, not a.no_rss)
    if a.long_mb > 0:
        long_texts(a.long_mb, a.workdir, a.long_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
