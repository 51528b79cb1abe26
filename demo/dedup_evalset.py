"""A labelled near-duplicate evaluation set the project ships as code (no data files).

Text: base documents are real text on every Python machine (the ``pydoc`` topics). Each
cluster is a base document and copies mutated at a controlled rate (word insertions, deletions
and swaps at 0.2-1% of words, two neighbouring lines swapped, a one-line header a mirror
adds). Non-duplicates that share the same boilerplate (a long licence-like header and footer)
are added as singletons, so shared boilerplate alone must not merge clusters. Images: base
pictures drawn with Pillow, and copies that are resized,
re-encoded as JPEG, lightly cropped and colour-shifted. Every item carries its true cluster.

:func:`cluster_texts` and :func:`cluster_images` cluster in memory with the same pure steps
as the Beam stages (signatures, bands, star edges, large-star/small-star rounds); the tests run
the Beam stages too.
"""

from __future__ import annotations

import io
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from winnow.filters.dedup.cluster import multi_star_edges, pairwise_scores, representative_rounds, star_edges, star_rounds
from winnow.filters.dedup.config import ImageDedupConfig, MinHashDedupConfig

__all__ = ["Item", "COPY_LINES", "mutate_text", "image_variants", "text_eval_set", "hard_text_eval_set",
           "image_eval_set", "cluster_texts", "cluster_images", "score", "BOILERPLATE"]

#: Shared by many documents that are not duplicates of each other.
BOILERPLATE = (
    "This page is part of the reference documentation. It is distributed under the same licence "
    "as the software it describes, without any warranty, express or implied, including fitness for "
    "a particular purpose. Report errors in this page through the project's issue tracker.",
    "Generated from the reference sources; edits made here will be overwritten. See the index for "
    "related topics, the glossary for terms, and the changelog for what changed in this release.",
)
#: Short lines a mirror or scraper adds to a copy (a header or footer).
COPY_LINES = (
    "Mirrored from the documentation server; last updated in May.",
    "Printed copy for internal training use only.",
    "Archived page, retrieved by the weekly crawl.",
)


@dataclass(frozen=True)
class Item:
    """One evaluation record: its id, content (text or image bytes) and true cluster."""

    id: str
    content: str | bytes
    truth: str
    kind: str  # "base", a mutation description, or "boilerplate"


def _base_texts(min_words: int) -> list[str]:
    from pydoc_data.topics import topics

    return [t.strip() for _, t in sorted(topics.items()) if len(t.split()) >= min_words]


def mutate_text(text: str, rate: float, rng: random.Random, boiler: bool = False, shuffle: bool = False) -> str:
    """A near-duplicate of ``text``: ``rate`` word edits per word, optionally a header line and a line swap."""
    lines = text.split("\n")
    if shuffle and len(lines) > 3:  # two neighbouring lines change places
        i = rng.randrange(len(lines) - 1)
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    words = "\n".join(lines).split(" ")
    for _ in range(max(1, round(rate * len(words)))):
        i, op = rng.randrange(len(words)), rng.random()
        if op < 1 / 3 and len(words) > 1:
            del words[i]
        elif op < 2 / 3:
            words.insert(i, rng.choice(("new", "extra", "also", "then", "here", "very")))
        else:
            j = min(i + 1, len(words) - 1)
            words[i], words[j] = words[j], words[i]
    out = " ".join(words)
    return f"{rng.choice(COPY_LINES)}\n\n{out}" if boiler else out


def text_eval_set(clusters: int = 30, singletons: int = 20, seed: int = 0,
                  rates: tuple[float, ...] = (0.002, 0.005, 0.01), min_words: int = 150) -> list[Item]:
    """Near-duplicate text clusters plus boilerplate-sharing singletons, with ground truth.

    Args:
        clusters: base documents that get 1 to 4 mutated copies each.
        singletons: other base documents, each wrapped in the shared boilerplate.
        seed: picks documents and mutations.
        rates: word-edit rates (edits per word) a copy draws from.
        min_words: base documents have at least this many words.
    """
    rng = random.Random(f"winnow-eval-text-{seed}")
    bases = _base_texts(min_words)
    rng.shuffle(bases)
    if len(bases) < clusters + singletons:
        raise ValueError(f"only {len(bases)} base texts of >= {min_words} words; ask for fewer")
    items: list[Item] = []
    for c in range(clusters):
        base = bases[c]
        truth = f"c{c:04d}"
        items.append(Item(f"{truth}-0", base, truth, "base"))
        for k in range(1, rng.randint(2, 5)):
            rate = rng.choice(rates)
            boiler, shuffle = rng.random() < 0.3, rng.random() < 0.3
            kind = f"rate={rate}" + (",boilerplate" if boiler else "") + (",line-shuffle" if shuffle else "")
            items.append(Item(f"{truth}-{k}", mutate_text(base, rate, rng, boiler, shuffle), truth, kind))
    for s in range(singletons):
        base = bases[clusters + s]
        items.append(Item(f"s{s:04d}", f"{BOILERPLATE[0]}\n\n{base}\n\n{BOILERPLATE[1]}", f"s{s:04d}", "boilerplate"))
    rng.shuffle(items)
    return items


def _long_boilerplate(rng: random.Random, words: int) -> str:
    """A licence-like header of about ``words`` words, the same for every caller with the same seed."""
    vocab = ("software", "licence", "permission", "copy", "modify", "distribute", "provided", "notice",
             "warranty", "express", "implied", "liability", "damages", "author", "holders", "contract",
             "tort", "otherwise", "arising", "connection", "use", "dealings", "granted", "free", "charge",
             "person", "obtaining", "documentation", "files", "restriction", "including", "limitation",
             "rights", "sublicense", "sell", "copies", "subject", "conditions", "above", "shall", "be")
    return " ".join(rng.choice(vocab) for _ in range(words))


def hard_text_eval_set(seed: int = 0, threshold: float = 0.8, families: int = 40, ngram: int = 5,
                       min_words: int = 80) -> list[Item]:
    """A harder labelled set whose truth is the exact shingle Jaccard, not how copies were made.

    Families of copies of one base document (from the ``pydoc`` topics):

    * edit chains: each copy is an edit of the previous one (about 0.85 to its parent), so the
      ends of a chain fall below the threshold while every link is above it;
    * pairs near the threshold: copies edited to an exact Jaccard a little above or a little
      below it;
    * boilerplate-heavy files: different documents behind one long shared header (about as
      long as the body), which share many shingles and LSH bands without being duplicates.

    The true cluster of an item is its connected component in the graph of pairs whose exact
    Jaccard (``ngram``-word shingles, the stage's normalization) reaches ``threshold``, over
    every pair of the set.
    """
    from winnow.filters.dedup.minhash import MinHasher, jaccard

    rng = random.Random(f"winnow-eval-hard-{seed}")
    bases = _base_texts(min_words)
    rng.shuffle(bases)
    groups: list[list[tuple[str, str, str]]] = []  # (id, text, kind) per comparison group
    used = 0
    for f in range(families):
        base = bases[used]
        used += 1
        kind = ("chain", "near", "near", "mixed")[f % 4]
        fam = [(f"f{f:03d}-0", base, "base")]
        if kind == "chain":
            cur = base
            for k in range(1, rng.randint(3, 6)):
                cur = mutate_text(cur, rng.uniform(0.012, 0.022), rng, shuffle=rng.random() < 0.3)
                fam.append((f"f{f:03d}-{k}", cur, f"chain step {k}"))
        elif kind == "near":
            for k in range(1, rng.randint(2, 4)):
                rate = rng.uniform(0.01, 0.035)
                fam.append((f"f{f:03d}-{k}", mutate_text(base, rate, rng, boiler=rng.random() < 0.3),
                            f"near threshold, rate={rate:.3f}"))
        else:
            for k in range(1, rng.randint(2, 5)):
                rate = rng.choice((0.003, 0.008, 0.02, 0.04))
                fam.append((f"f{f:03d}-{k}", mutate_text(base, rate, rng, shuffle=rng.random() < 0.5),
                            f"rate={rate}"))
        groups.append(fam)
    header_rng = random.Random(f"winnow-eval-hard-header-{seed}")
    boiler = []
    for b in range(families // 2):
        body = " ".join(bases[used].split()[:rng.randint(100, 200)])
        used += 1
        header = _long_boilerplate(random.Random(header_rng.random() < 0.5), 150)
        boiler.append((f"b{b:03d}", f"{header}\n\n{body}\n\n{BOILERPLATE[0]}", "boilerplate"))
    groups.append(boiler)

    hasher = MinHasher(ngram=ngram)
    flat = [m for group in groups for m in group]
    sets = [hasher.shingle_hashes(t) for _, t, _ in flat]
    parent = list(range(len(flat)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(flat)):  # every pair: two families may start from near-identical topics
        for j in range(i + 1, len(flat)):
            if jaccard(sets[i], sets[j]) >= threshold:
                parent[find(i)] = find(j)
    items = [Item(iid, text, flat[find(i)][0], kind) for i, (iid, text, kind) in enumerate(flat)]
    rng.shuffle(items)
    return items


def image_variants(img, rng: random.Random) -> list[tuple[str, object, str]]:
    """``(kind, image, format)`` copies of a PIL image: resized, JPEG, cropped 3%, colour-shifted."""
    from PIL import Image, ImageEnhance

    w, h = img.size
    out = []
    s = rng.choice((0.5, 0.75, 1.5, 2.0))
    out.append(("resized", img.resize((max(8, int(w * s)), max(8, int(h * s))), Image.Resampling.BILINEAR), "png"))
    out.append(("jpeg", img, "jpg"))
    dx, dy = max(1, int(w * 0.03)), max(1, int(h * 0.03))
    out.append(("cropped", img.crop((dx, dy, w - dx, h - dy)), "png"))
    shifted = ImageEnhance.Brightness(ImageEnhance.Color(img).enhance(rng.uniform(0.6, 1.4))).enhance(rng.uniform(0.85, 1.15))
    out.append(("colour-shift", shifted, "jpg"))
    return out


_PALETTE = ((214, 39, 40), (44, 160, 44), (31, 90, 200), (240, 210, 30), (128, 60, 170), (255, 127, 14),
            (245, 245, 245), (20, 20, 20), (127, 127, 127), (240, 140, 190), (23, 160, 160), (140, 86, 45))


def _draw(rng: random.Random) -> bytes:
    """A PNG of two to four coloured shapes on a plain or gradient background."""
    from PIL import Image, ImageDraw

    w, h = rng.choice((96, 128, 160, 192)), rng.choice((96, 128, 160, 192))
    c1, c2 = rng.sample(_PALETTE, 2)
    img = Image.composite(Image.new("RGB", (w, h), c1), Image.new("RGB", (w, h), c2),
                          Image.linear_gradient("L").resize((w, h)).rotate(rng.choice((0, 90, 180, 270))))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(2, 4)):
        r = int(min(w, h) * rng.uniform(0.1, 0.3))
        cx, cy = rng.randint(r, w - r), rng.randint(r, h - r)
        box, fill = (cx - r, cy - r, cx + r, cy + r), rng.choice(_PALETTE)
        shape = rng.choice(("ellipse", "rectangle", "triangle"))
        if shape == "ellipse":
            draw.ellipse(box, fill=fill)
        elif shape == "rectangle":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def image_eval_set(clusters: int = 40, singletons: int = 40, seed: int = 0) -> list[Item]:
    """Near-duplicate image clusters (resized, re-encoded, cropped, colour-shifted copies) plus
    distinct singletons, with ground truth."""
    from PIL import Image

    rng = random.Random(f"winnow-eval-image-{seed}")
    items: list[Item] = []
    for c in range(clusters + singletons):
        data = _draw(rng)
        truth = f"{'c' if c < clusters else 's'}{c:04d}"
        items.append(Item(f"{truth}-0", data, truth, "base"))
        if c >= clusters:
            continue
        with Image.open(io.BytesIO(data)) as im:
            img = im.convert("RGB")
        chosen = rng.sample(image_variants(img, rng), rng.randint(1, 4))
        for k, (kind, v, fmt) in enumerate(chosen, 1):
            buf = io.BytesIO()
            if fmt == "jpg":
                v.save(buf, format="JPEG", quality=rng.choice((60, 75, 90)))
            else:
                v.save(buf, format="PNG")
            items.append(Item(f"{truth}-{k}", buf.getvalue(), truth, kind))
    rng.shuffle(items)
    return items


def _components(ids: list[str], edges: Iterable[tuple]) -> dict[str, str]:
    labels, _, _ = star_rounds(edges)
    return {i: (labels.get((0.0, i, ""), (0.0, i, "")))[1] for i in ids}


def cluster_texts(items: list[Item], cfg: MinHashDedupConfig | None = None) -> dict[str, str]:
    """Predicted cluster (its smallest id) of every text item, clustered in memory."""
    from winnow.filters.dedup.lsh import band_keys
    from winnow.filters.dedup.minhash import MinHasher, jaccard, sketch_of, sketch_similarity

    cfg = cfg or MinHashDedupConfig()
    bands, rows = cfg.banding()
    h = MinHasher(cfg.num_perm, cfg.ngram, cfg.seed, window_chars=cfg.window_chars)
    sig, seen = h.signatures([str(i.content) for i in items])
    buckets: dict[bytes, list] = defaultdict(list)
    for i, keys in enumerate(band_keys(sig, bands, rows, cfg.seed)):
        if seen[i]:
            for k in keys:
                buckets[k].append(((0.0, items[i].id, ""), i))

    sketches = sketch_of(sig)

    def check(a: int, b: int) -> bool:
        sa, sb = h.shingle_hashes(str(items[a].content)), h.shingle_hashes(str(items[b].content))
        return jaccard(sa, sb) >= cfg.threshold

    def exact(a: int, b: int) -> float:
        sa, sb = h.shingle_hashes(str(items[a].content)), h.shingle_hashes(str(items[b].content))
        return jaccard(sa, sb)

    def check_sig(a: int, b: int) -> bool:
        est, bar = sketch_similarity(sketches[a], sketches[b]), cfg.signature_threshold()
        if cfg.exact_margin > 0 and abs(est - bar) < cfg.exact_margin:
            return check(a, b)
        return est >= bar

    def similarity(a: int, b: int) -> float:  # what the stage weighs a verified pair by
        est, bar = sketch_similarity(sketches[a], sketches[b]), cfg.signature_threshold()
        if cfg.verify == "exact" or (cfg.exact_margin > 0 and abs(est - bar) < cfg.exact_margin):
            return exact(a, b)
        return float(est)

    verify = {"exact": check, "signature": check_sig}.get(cfg.verify)
    if verify is None:
        edges = [e for members in buckets.values() if len(members) > 1 for e in star_edges(members)]
    else:  # candidates as the stage makes them, then verified once each
        cands = {e for members in buckets.values() if len(members) > 1
                 for e in multi_star_edges(members, cfg.bucket_roots)}
        pos = {(0.0, it.id, ""): i for i, it in enumerate(items)}
        edges = [e for e in sorted(cands) if verify(pos[e[0]], pos[e[1]])]
        if cfg.cluster == "representative":
            weighted = [(a, b, similarity(pos[a], pos[b])) for a, b in edges]
            labels, _, _ = representative_rounds(weighted, cfg.max_rounds)
            return {i.id: labels.get((0.0, i.id, ""), (0.0, i.id, ""))[1] for i in items}
    return _components([i.id for i in items], edges)


def cluster_images(items: list[Item], cfg: ImageDedupConfig | None = None) -> dict[str, str]:
    """Predicted cluster (its smallest id) of every image item, clustered in memory."""
    from winnow.filters.dedup.phash import image_band_keys, images_similar, phash_ycc

    cfg = cfg or ImageDedupConfig()
    hashes = [phash_ycc(bytes(i.content)) for i in items]
    buckets: dict[bytes, list] = defaultdict(list)
    for i, hv in enumerate(hashes):
        for k in image_band_keys(hv[0], cfg.bands, cfg.rows, cfg.seed):
            buckets[k].append(((0.0, items[i].id, ""), hv))
    edges = [e for members in buckets.values() if len(members) > 1
             for e in star_edges(members, lambda a, b: images_similar(a, b, cfg.max_distance, cfg.max_color_distance))]
    return _components([i.id for i in items], edges)


def score(items: list[Item], predicted: dict[str, str]) -> tuple[float, float]:
    """Pairwise ``(precision, recall)`` of ``predicted`` against the items' true clusters."""
    return pairwise_scores(predicted, {i.id: i.truth for i in items})
