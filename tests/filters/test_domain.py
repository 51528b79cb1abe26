"""Domain scoring: features, KL and DSIR, verdicts, config errors, and ranking quality (AUC)."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import pytest

from winnow.errors import ConfigError, InputError
from winnow.filters.base import KEEP, drop
from winnow.filters.domain import (
    DomainConfig,
    DomainReference,
    DomainScorer,
    count_features,
    domain_fields,
    domain_verdict,
    featurize,
    keep_count,
    locate_rank,
    log_distribution,
    read_reference_texts,
    score_prefix,
    selection_key,
)

REF = (DomainReference("python", ("unused.txt",)),)


def _cfg(**kw) -> DomainConfig:
    return DomainConfig(references=kw.pop("references", REF), **kw)


def test_featurize_unigrams_and_bigrams_are_stable():
    f = featurize("The cat. the CAT", 1 << 16)
    assert len(f) == 4 + 3  # 4 words, 3 pairs
    assert f[0] == f[2] == featurize("the", 1 << 16)[0]  # lower-cased
    assert f[4] == f[6]  # "the cat" twice
    assert len(featurize("the cat", 1 << 16, bigrams=False)) == 2
    assert len(featurize("!!! ???", 1 << 16)) == 0
    assert (featurize("x y z", 256) < 256).all()


def test_kl_is_zero_for_the_domain_itself_and_grows_with_distance():
    B = 1 << 12
    dom = "alpha beta gamma delta " * 50
    counts = {"python": count_features([dom], B)}
    s = DomainScorer(_cfg(buckets=B, smoothing=1e-6), counts, background_counts=None)
    kl_same, _ = s.scores(dom)
    kl_near, _ = s.scores("alpha beta gamma delta alpha beta gamma omega")
    kl_far, _ = s.scores("zeta eta theta iota kappa lambda")
    assert kl_same[0] == pytest.approx(0.0, abs=1e-3)
    assert kl_same[0] < kl_near[0] < kl_far[0]


def test_dsir_is_the_mean_log_ratio_against_the_background():
    B = 1 << 10
    counts = {"python": count_features(["import module def class"] * 20, B)}
    bg = count_features(["import module def class", "garden flower tree leaf"] * 10, B)
    s = DomainScorer(_cfg(buckets=B, bigrams=False, smoothing=0.01), counts, bg)
    _, d_in = s.scores("import module")
    _, d_out = s.scores("garden flower")
    assert d_in[0] > 0 > d_out[0]
    f = featurize("import module", B, bigrams=False)
    logq, logb = log_distribution(counts["python"], 0.01), log_distribution(bg, 0.01)
    assert d_in[0] == pytest.approx(float(np.mean(logq[f] - logb[f])))


def test_several_domains_label_the_closest_and_add_per_domain_columns():
    B = 1 << 12
    refs = (DomainReference("code", ("a",)), DomainReference("garden", ("b",)))
    counts = {"code": count_features(["import module def class return"] * 10, B),
              "garden": count_features(["garden flower tree leaf soil"] * 10, B)}
    cfg = _cfg(references=refs, buckets=B)
    s = DomainScorer(cfg, counts)
    a = s.annotate({"modality": "text", "text": "the tree and the flower in the garden"})
    assert a["domain"] == "garden" and a["domain_kl"] == a["domain_kl_garden"] < a["domain_kl_code"]
    assert [f.name for f in domain_fields(cfg)] == ["domain", "domain_kl", "domain_dsir", "domain_kl_code",
                                                     "domain_kl_garden"]
    pinned = DomainScorer(DomainConfig(references=refs, buckets=B, select_domain="code"), counts)
    b = pinned.annotate({"modality": "text", "text": "the tree and the flower in the garden"})
    assert b["domain"] == "garden" and b["domain_kl"] == b["domain_kl_code"]


def _rec(kl, dsir=0.0, modality="text", text="t", id="a"):
    return {"id": id, "source": "s", "modality": modality, "text": text, "domain_kl": kl, "domain_dsir": dsir}


@pytest.mark.parametrize(
    "record, cfg_kw, cut, expected",
    [
        (_rec(1.0), {}, (2.0, 0), KEEP),
        (_rec(3.0), {}, (2.0, 0), drop("domain_below_threshold")),
        (_rec(2.0), {}, (2.0, 1 << 64), KEEP),  # tie on the score: the hash decides
        (_rec(2.0), {}, (2.0, -1), drop("domain_below_threshold")),
        (_rec(None), {}, (2.0, 0), drop("domain_no_words")),
        (_rec(9.0, modality="image_text"), {}, (2.0, 0), KEEP),  # not a scored modality
        (_rec(9.0, text=None), {}, (2.0, 0), KEEP),
        (_rec(9.0), {}, None, KEEP),  # no cut: annotate only
        (_rec(1.5), {"threshold": 1.5}, None, KEEP),
        (_rec(1.6), {"threshold": 1.5}, None, drop("domain_below_threshold")),
        (_rec(9.0, dsir=0.4), {"score": "dsir", "threshold": 0.3}, None, KEEP),
        (_rec(0.0, dsir=0.2), {"score": "dsir", "threshold": 0.3}, None, drop("domain_below_threshold")),
        (_rec(9.0, dsir=0.5), {"score": "dsir"}, (-0.4, 1 << 64), KEEP),
        (_rec(0.0, dsir=0.3), {"score": "dsir"}, (-0.4, 1 << 64), drop("domain_below_threshold")),
    ],
)
def test_verdicts(record, cfg_kw, cut, expected):
    assert domain_verdict(record, _cfg(**cfg_kw), cut) == expected


def test_selection_key_orders_by_score_then_hash():
    cfg = _cfg()
    assert selection_key(_rec(1.0, id="a"), cfg)[0] == 1.0
    assert selection_key(_rec(None), cfg)[0] == math.inf
    assert selection_key(_rec(1.0, modality="image"), cfg) is None
    assert selection_key(_rec(1.0, id="a"), cfg)[1] != selection_key(_rec(1.0, id="b"), cfg)[1]
    assert selection_key(_rec(0, dsir=2.0), _cfg(score="dsir"))[0] == -2.0


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"references": ()}, "domain.references"),
        ({"keep_fraction": 0.0}, "domain.keep_fraction"),
        ({"keep_fraction": 1.5}, "domain.keep_fraction"),
        ({"select_domain": "nope"}, "domain.select_domain"),
        ({"buckets": 10}, "domain.buckets"),
        ({"smoothing": 0}, "domain.smoothing"),
        ({"threshold": float("inf")}, "domain.threshold"),
        ({"references": (REF[0], REF[0])}, "domain.references"),
    ],
)
def test_config_errors(kw, key):
    with pytest.raises(ConfigError) as e:
        DomainConfig(**kw) if "references" in kw else _cfg(**kw)
    assert e.value.key == key


def test_reference_names_must_be_snake_case_and_paths_given():
    with pytest.raises(ConfigError, match="snake_case"):
        DomainReference("Python Docs", ("a",))
    with pytest.raises(ConfigError, match="at least one file"):
        DomainReference("python", ())


def test_reading_references_txt_jsonl_gz_and_missing(tmp_path):
    (tmp_path / "a.txt").write_text("plain text file")
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(b'{"text": "one"}\n{"text": "two"}\n{"other": 1}\n'))
    ref = DomainReference("x", (str(tmp_path / "a.txt"), str(tmp_path / "*.jsonl.gz")))
    assert list(read_reference_texts(ref)) == ["plain text file", "one", "two"]
    with pytest.raises(InputError, match="matches no file"):
        list(read_reference_texts(DomainReference("x", (str(tmp_path / "none-*.txt"),))))


# ---------------------------------------------------------------------------------------------
# Ranking quality: a planted off-domain set against an in-domain set, on real machine text.


def _foreign_man_pages(limit: int = 300) -> list[str]:
    from winnow.demo.text import man_sections

    out: list[str] = []
    root = Path("/usr/share/man")
    for lang in ("de", "fr", "es", "it", "pt", "pl", "nl", "sv"):
        for p in sorted((root / lang).glob("man1/*.gz"))[:40]:
            try:
                raw = gzip.decompress(p.read_bytes()).decode("utf-8")
            except (OSError, EOFError, UnicodeDecodeError, zlib.error):
                continue
            out += [t for _, t in man_sections(raw)[1] if len(t) >= 200][:2]
    return out[:limit]


def _auc(pos: list[float], neg: list[float]) -> float:
    """P(score of an in-domain record > score of an off-domain one), ties counting half."""
    neg_s = np.sort(np.asarray(neg))
    lo = np.searchsorted(neg_s, pos, "left")
    hi = np.searchsorted(neg_s, pos, "right")
    return float(np.sum(lo + 0.5 * (hi - lo)) / (len(pos) * len(neg)))


def test_planted_off_domain_set_ranks_below_the_in_domain_set():
    from winnow.demo.domain import _python_reference
    from winnow.demo.text import _docstring_docs, _pydoc_docs

    off = _foreign_man_pages()
    if len(off) < 50:
        pytest.skip("needs non-English man pages under /usr/share/man")
    reference = [d["text"] for d in _python_reference()]  # modules disjoint from the in-domain set
    in_domain = [d.text for d in [*_pydoc_docs(), *_docstring_docs()] if len(d.text) >= 200]
    cfg = _cfg()
    counts = {"python": count_features(reference, cfg.buckets)}
    background = count_features(in_domain + off, cfg.buckets)  # DSIR: the corpus being curated
    s = DomainScorer(cfg, counts, background)
    kl_in, ds_in = zip(*(s.scores(t) for t in in_domain))
    kl_off, ds_off = zip(*(s.scores(t) for t in off))
    auc_kl = _auc([-k[0] for k in kl_in], [-k[0] for k in kl_off])
    auc_dsir = _auc([d[0] for d in ds_in], [d[0] for d in ds_off])
    print(f"\nAUC in-domain ({len(in_domain)} Python docs) vs planted off-domain ({len(off)} non-English man "
          f"page sections): KL {auc_kl:.4f}, DSIR {auc_dsir:.4f}")
    assert auc_kl >= 0.9
    assert auc_dsir >= 0.9


# ---------------------------------------------------------------------------------------------
# The exact cut's pure pieces


def test_score_prefix_preserves_order():
    rng = np.random.default_rng(0)
    xs = sorted([*rng.normal(0, 20, 5000).tolist(), 0.0, -0.0, math.inf, -math.inf, 1e-300, -1e-300])
    ps = [score_prefix(x) for x in xs]
    assert ps == sorted(ps)


@pytest.mark.parametrize("n, f, k", [(0, 0.8, 0), (1, 0.8, 1), (10, 0.8, 8), (9337, 0.8, 7470), (3, 0.01, 1),
                                     (5, 1.0, 5), (7, 0.5, 4)])
def test_keep_count(n, f, k):
    assert keep_count(n, f) == k


@pytest.mark.parametrize("counts, k, expected", [
    ([(5, 2), (1, 3)], 1, (1, 1)),
    ([(5, 2), (1, 3)], 3, (1, 3)),
    ([(5, 2), (1, 3)], 4, (5, 1)),
    ([(5, 2), (1, 3)], 5, (5, 2)),
    ([(5, 2), (1, 3)], 6, None),
    ([(5, 2)], 0, None),
])
def test_locate_rank(counts, k, expected):
    assert locate_rank(counts, k) == expected
