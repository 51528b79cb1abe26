"""Near-duplicate benchmark: MinHash signature throughput against datasketch, the whole
``minhash_dedup`` stage, and peak memory on a corpus with one huge cluster and one huge text.

Measured in one run, each ``--repeats`` times (medians printed):

* signatures, single process (per core): winnow's ``MinHasher.signatures`` in batches, and the
  peer, datasketch ``MinHash.update_batch`` with the same ``num_perm`` on the same documents,
  fed the same normalized word 5-gram shingles built in Python (what a datasketch user writes).
  MB/s and docs/s for both and the ratio; the datasketch time without building shingles is
  printed too, for transparency;
* the whole stage on Beam's FnApiRunner (subprocess, its own peak RSS): stages ``normalize``
  versus ``normalize, minhash_dedup`` on the same JSONL corpus with planted near-duplicates;
* stress (``--cluster``): one cluster of ``--cluster`` near-duplicate members plus one
  ``--big-mb`` MB document, through ``minhash_dedup``; peak RSS, rounds, and the same size of
  corpus with no cluster for comparison.

* labelled precision/recall (``--eval-seeds``): the harder labelled set
  (:func:`~winnow.demo.dedup_evalset.hard_text_eval_set`: edit chains, pairs just below the
  threshold, boilerplate-heavy files; truth from exact 5-gram Jaccard) at threshold 0.8:
  winnow's clustering at its defaults (signature verification), with ``verify: exact``, with
  ``verify: none`` and with ``cluster: representative``, against the peer, datasketch
  ``MinHashLSH(threshold=0.8, num_perm=128)`` plus union-find over the same shingles; scored
  against the set's truth (components of the exact-Jaccard graph) and pair by pair (a pair in
  one cluster is right when its own exact Jaccard reaches 0.8), with the cluster sizes.
  ``--eval-only`` runs just this part.

    python bench/dedup_bench.py [--mb 16] [--repeats 3] [--cluster 50000] [--big-mb 10] [--eval-only]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def corpus_texts(mb: float, seed: int = 0) -> list[str]:
    from winnow.demo.text import clean_records

    return [r["text"] for r in clean_records(int(mb * 1e6), seed, "/usr/share/man")]


def ours(texts: list[str], num_perm: int, batch: int) -> float:
    from winnow.filters.dedup.minhash import MinHasher

    h = MinHasher(num_perm=num_perm, ngram=5, seed=1)
    t = time.perf_counter()
    for i in range(0, len(texts), batch):
        h.signatures(texts[i:i + batch])
    return time.perf_counter() - t


def peer(texts: list[str], num_perm: int) -> tuple[float, float]:
    from datasketch import MinHash

    from winnow.filters.dedup.minhash import normalize_bytes

    t = time.perf_counter()
    t_update = 0.0
    for d in texts:
        w = normalize_bytes(d).split()
        sh = [b" ".join(w[i:i + 5]) for i in range(max(1, len(w) - 4))] if w else []
        u = time.perf_counter()
        m = MinHash(num_perm=num_perm, seed=1)
        m.update_batch(sh)
        t_update += time.perf_counter() - u
    return time.perf_counter() - t, t_update


def run_stage(inp: str, out: str, stages: str) -> dict:
    """One pipeline run in a subprocess: wall seconds and its peak RSS."""
    code = (
        "import json, resource, sys, time\n"
        "from winnow.pipeline.configure import load_config\nfrom winnow.pipeline.runner import run\n"
        f"cfg = load_config(input=[{inp!r}], output={out!r}, stages={stages.split(',')!r}, overrides=['sink.overwrite=true'])\n"
        "t = time.perf_counter(); r = run(cfg); el = time.perf_counter() - t\n"
        "st = r.stats; mh = st['stage_stats'].get('minhash_dedup', {})\n"
        "print(json.dumps({'elapsed': el, 'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
        " 'read': st['read'], 'kept': st['kept'], 'balanced': st['balanced'],"
        " 'rounds': mh.get('cc_rounds'), 'converged': mh.get('cc_converged'),"
        " 'largest_cluster': (mh.get('cluster_sizes') or {}).get('max')}))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def write_jsonl(path: str, texts: list[str], prefix: str = "d") -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for i, t in enumerate(texts):
            line = json.dumps({"id": f"{prefix}{i:08d}", "text": t}, ensure_ascii=False) + "\n"
            fh.write(line)
            n += len(line.encode())
    return n


def with_near_dups(texts: list[str], frac: float, seed: int = 0) -> list[str]:
    from winnow.demo.dedup_evalset import mutate_text

    rng = random.Random(seed)
    extra = [mutate_text(t, 0.005, rng) for t in rng.sample(texts, int(frac * len(texts))) if len(t.split()) >= 100]
    return texts + extra


def stress_corpus(members: int, big_mb: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """(with one ``members``-strong cluster and a ``big_mb`` MB text, same-size corpus without the cluster)."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(20000)]
    base = [rng.choice(vocab) for _ in range(120)]
    cluster = []
    for _ in range(members):
        w = list(base)
        w[rng.randrange(len(w))] = rng.choice(vocab)
        cluster.append(" ".join(w))
    unique = [" ".join(rng.choice(vocab) for _ in range(120)) for _ in range(members)]
    big_words = []
    size = 0
    while size < big_mb * 1e6:
        x = rng.choice(vocab)
        big_words.append(x)
        size += len(x) + 1
    big = " ".join(big_words)
    return cluster + [big], unique + [big]


def datasketch_clusters(items: list, threshold: float = 0.8, num_perm: int = 128) -> dict[str, str]:
    """The plain library pipeline: MinHashLSH candidates, union-find, no verification."""
    from datasketch import MinHash, MinHashLSH

    from winnow.filters.dedup.minhash import normalize_bytes

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    parent = {i.id: i.id for i in items}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for it in items:
        w = normalize_bytes(str(it.content)).split()
        m = MinHash(num_perm=num_perm, seed=1)
        m.update_batch([b" ".join(w[i:i + 5]) for i in range(max(1, len(w) - 4))])
        for other in lsh.query(m):
            a, b = find(it.id), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
        lsh.insert(it.id, m)
    return {i.id: find(i.id) for i in items}


def pair_score(items: list, pred: dict[str, str], threshold: float = 0.8) -> tuple[float, float]:
    """Pairwise precision / recall where a pair is a true duplicate when its own exact 5-gram
    Jaccard reaches ``threshold`` (no chaining in the truth)."""
    from itertools import combinations

    from winnow.filters.dedup.minhash import MinHasher, jaccard

    h = MinHasher()
    sets = {i.id: h.shingle_hashes(str(i.content)) for i in items}
    tp = fp = fn = 0
    for a, b in combinations(sorted(sets), 2):
        same, true = pred[a] == pred[b], jaccard(sets[a], sets[b]) >= threshold
        tp += same and true
        fp += same and not true
        fn += true and not same
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0)


def size_counts(pred: dict[str, str]) -> dict[int, int]:
    """Clusters of 2 or more records by size."""
    from collections import Counter

    sizes = Counter(Counter(pred.values()).values())
    return {k: sizes[k] for k in sorted(sizes) if k > 1}


def labelled_eval(seeds: int) -> None:
    from winnow.filters.dedup.config import MinHashDedupConfig
    from winnow.demo.dedup_evalset import cluster_texts, hard_text_eval_set, score

    print(f"labelled near-duplicates (hard set, truth: components of exact 5-gram Jaccard >= 0.8; pairwise: each "
          f"pair's own Jaccard), seeds 0..{seeds - 1}: precision / recall")
    rows: dict[str, list] = {}
    for seed in range(seeds):
        items = hard_text_eval_set(seed=seed)
        runs = {"winnow default (verify: signature)": cluster_texts(items, MinHashDedupConfig()),
                "winnow verify: exact": cluster_texts(items, MinHashDedupConfig(verify="exact")),
                "winnow verify: none": cluster_texts(items, MinHashDedupConfig(verify="none")),
                "winnow cluster: representative": cluster_texts(items, MinHashDedupConfig(cluster="representative")),
                "datasketch MinHashLSH + union-find": datasketch_clusters(items)}
        for name, pred in runs.items():
            rows.setdefault(name, []).append((score(items, pred), pair_score(items, pred), size_counts(pred)))
    for name, scores in rows.items():
        p = statistics.mean(x[0][0] for x in scores)
        r = statistics.mean(x[0][1] for x in scores)
        pp = statistics.mean(x[1][0] for x in scores)
        pr = statistics.mean(x[1][1] for x in scores)
        each = "  ".join(f"{a:.3f}/{b:.3f}" for (a, b), _, _ in scores)
        sizes: dict[int, int] = {}
        for _, _, c in scores:
            for k, v in c.items():
                sizes[k] = sizes.get(k, 0) + v
        print(f"  {name:38s} mean {p:.3f} / {r:.3f}   pairwise {pp:.3f} / {pr:.3f}   per seed {each}   "
              f"cluster sizes {dict(sorted(sizes.items()))}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=16.0, help="MB of real text for the signature and stage runs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--cluster", type=int, default=50000, help="members of the stress cluster (0 skips it)")
    ap.add_argument("--big-mb", type=float, default=10.0)
    ap.add_argument("--workdir", default=".bench/dedup")
    ap.add_argument("--eval-seeds", type=int, default=3, help="seeds of the labelled set (0 skips it)")
    ap.add_argument("--eval-only", action="store_true", help="only the labelled precision/recall")
    a = ap.parse_args()
    if a.eval_seeds:
        labelled_eval(a.eval_seeds)
    if a.eval_only:
        return 0

    texts = corpus_texts(a.mb)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    print(f"corpus: {len(texts):,} real documents, {nbytes / 1e6:.1f} MB, num_perm={a.num_perm}, 5-word shingles")
    o, pe, pu = [], [], []
    for _ in range(a.repeats):
        o.append(ours(texts, a.num_perm, a.batch))
        t, u = peer(texts, a.num_perm)
        pe.append(t)
        pu.append(u)
    mo, mp, mu = statistics.median(o), statistics.median(pe), statistics.median(pu)
    print("signatures, one process (per core), median of", a.repeats)
    print(f"  winnow MinHasher      {nbytes / 1e6 / mo:8.1f} MB/s {len(texts) / mo:10,.0f} docs/s")
    print(f"  datasketch 2.0.0      {nbytes / 1e6 / mp:8.1f} MB/s {len(texts) / mp:10,.0f} docs/s"
          f"   (update_batch alone: {nbytes / 1e6 / mu:.1f} MB/s)")
    print(f"  ratio winnow / datasketch: {mp / mo:.1f}x  (vs update_batch alone: {mu / mo:.1f}x)")

    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir, exist_ok=True)
    src = os.path.join(a.workdir, "stage.jsonl")
    docs = with_near_dups(texts, 0.1)
    size = write_jsonl(src, docs)
    print(f"\nwhole stage on FnApiRunner, 1 worker: {len(docs):,} records ({size / 1e6:.1f} MB JSONL, 10% near-duplicates added)")
    for stages in ("normalize", "normalize,minhash_dedup"):
        r = run_stage(src, os.path.join(a.workdir, "out-stage"), stages)
        print(f"  {stages:24s} {r['elapsed']:7.1f} s  {size / 1e6 / r['elapsed']:6.2f} MB/s "
              f"{r['read'] / r['elapsed']:8,.0f} docs/s  peak RSS {r['rss_mb']:7.0f} MB  kept {r['kept']:,}"
              + (f"  cc rounds {r['rounds']}" if r["rounds"] is not None else ""))

    if a.cluster:
        with_cluster, without = stress_corpus(a.cluster, a.big_mb)
        print(f"\nstress: one cluster of {a.cluster:,} near-duplicates plus one {a.big_mb:g} MB document")
        for name, corpus in (("with the cluster", with_cluster), ("no cluster (same size)", without)):
            path = os.path.join(a.workdir, "stress.jsonl")
            size = write_jsonl(path, corpus)
            r = run_stage(path, os.path.join(a.workdir, "out-stress"), "minhash_dedup")
            print(f"  {name:24s} {size / 1e6:6.1f} MB  {r['elapsed']:7.1f} s  peak RSS {r['rss_mb']:7.0f} MB  "
                  f"kept {r['kept']:,} of {r['read']:,}  largest cluster {r['largest_cluster']}  "
                  f"cc rounds {r['rounds']} converged {r['converged']} balanced {r['balanced']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
