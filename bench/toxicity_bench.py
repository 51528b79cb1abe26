"""Toxicity on one huge record without punctuation: the window split is linear and the scored
windows are capped (``toxicity.max_windows``), so a 60 MB record costs about 7.5x an 8 MB one
to split and the same to score.

    python bench/toxicity_bench.py [--sizes 8,60]
"""

from __future__ import annotations

import argparse
import random
import sys
import time


def unpunctuated(mb: float, seed: int = 0) -> str:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(5000)] + ["the", "and", "of", "to", "a", "in"]
    words, size = [], 0
    while size < mb * 1e6:
        w = rng.choice(vocab)
        words.append(w)
        size += len(w) + 1
    return " ".join(words)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="8,60", help="record sizes in MB, comma-separated")
    a = ap.parse_args()
    from winnow.filters.toxicity import ToxicityConfig, ToxicityFilter, chunks

    f = ToxicityFilter(ToxicityConfig(languages=()))
    cfg = f.config
    base = None
    print(f"one record without punctuation, chunk_chars={cfg.chunk_chars}, max_windows={cfg.max_windows}")
    for mb in (float(x) for x in a.sizes.split(",")):
        text = unpunctuated(mb)
        t = time.perf_counter()
        n = len(chunks(text, cfg.chunk_chars))
        split = time.perf_counter() - t
        t = time.perf_counter()
        rec, verdict = f.process({"text": text, "modality": "text"})
        whole = time.perf_counter() - t
        base = base or (mb, split, whole)
        print(f"  {mb:5.0f} MB: {n:,} windows, split {split:6.2f} s, whole record scored {whole:6.2f} s "
              f"(score {rec['toxicity_score']:.3f}); vs {base[0]:g} MB: size x{mb / base[0]:.1f}, "
              f"split x{split / base[1]:.1f}, whole x{whole / base[2]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
