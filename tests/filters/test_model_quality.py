"""Model quality: classifier training, the bigram model against a direct computation, thresholds."""

import math
import re
from collections import Counter

import pytest

from winnow.errors import ConfigError
from winnow.filters.model_quality import (
    BigramLM,
    ModelQualityConfig,
    ModelQualityScorer,
    hist_quantile,
    judge,
    load_reference,
    train_classifier,
)

REF = [
    "The function returns a new list containing the items of the iterable in sorted order.",
    "A class defines the attributes and methods shared by its instances.",
    "The module provides functions for working with regular expressions and patterns.",
    "Each argument is evaluated from left to right before the call is made.",
] * 5
BACKGROUND = [
    "buy cheap watches now click here best price best price",
    "lol omg this is sooo random haha",
    "WINNER WINNER claim your prize today free free free",
    "xx yy zz 11 22 33 qq ww ee",
] * 5


def _direct_perplexity(ref, text, d=0.75):
    """The same model, computed word by word with plain dicts."""
    toks = [re.findall(r"\w+", t.lower()) for t in ref]
    vocab = {w for s in toks for w in s}
    uni = Counter(w for s in toks for w in s)
    big = Counter((a, b) for s in toks for a, b in zip(s, s[1:]))
    ctx = Counter()
    foll = Counter()
    for (a, _), c in big.items():
        ctx[a] += c
        foll[a] += 1
    total = sum(uni.values())

    def p_uni(w):
        return (uni.get(w, 0) + 1) / (total + len(vocab) + 1)

    words = re.findall(r"\w+", text.lower())
    lp = math.log(p_uni(words[0]))
    for a, b in zip(words, words[1:]):
        if ctx[a] > 0:
            p = max(big[(a, b)] - d, 0) / ctx[a] + d * foll[a] / ctx[a] * p_uni(b)
        else:
            p = p_uni(b)
        lp += math.log(p)
    return math.exp(-lp / len(words))


def test_bigram_perplexity_matches_a_direct_computation_and_batches():
    lm = BigramLM.from_bytes(BigramLM.train(REF).to_bytes())
    texts = ["The function returns a new list.", "omg free prize click here", "unseen words entirely zzz",
             "the the the", "one"]
    batch = lm.perplexities([re.findall(r"\w+", t.lower()) for t in texts])
    for t, got in zip(texts, batch):
        if len(t.split()) < 2:
            assert got is None
        else:
            assert got == pytest.approx(_direct_perplexity(REF, t), rel=1e-9)
            assert lm.perplexity(t) == pytest.approx(got, rel=1e-12)
    assert batch[0] < batch[1]  # reference-like text is less surprising


def test_classifier_trained_in_process_prefers_reference_text_and_is_reproducible():
    cfg = ModelQualityConfig(epochs=20)
    a = train_classifier(REF, BACKGROUND, cfg)
    assert a == train_classifier(REF, BACKGROUND, cfg)  # one thread, fixed seed: same bytes
    s = ModelQualityScorer(cfg, {"classifier": a, "lm": BigramLM.train(REF).to_bytes()})
    (good, ppl_good), (bad, ppl_bad) = s.score(["The method returns the items of the list in order.",
                                                "click here free prize winner lol"])
    assert good > 0.5 > bad and ppl_good < ppl_bad


def test_both_models_off_annotates_nothing():
    s = ModelQualityScorer(ModelQualityConfig(classifier="off", perplexity="off"))
    assert s.score(["some text here", ""]) == [(None, None), (None, None)]


def test_reference_sources(tmp_path):
    assert len(load_reference("pydoc")) > 50
    (tmp_path / "ref.txt").write_text("first doc\n\nsecond doc\n")
    assert load_reference(str(tmp_path / "ref.txt")) == ["first doc", "second doc"]
    (tmp_path / "ref.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
    assert load_reference(str(tmp_path / "ref.jsonl")) == ["a", "b"]
    with pytest.raises(ConfigError):
        load_reference(str(tmp_path / "missing.txt"))


def test_hist_quantile_and_judge():
    h = {"edges": [0, 1, 2, 3, 4], "counts": [10, 10, 10, 10], "n": 40}
    assert hist_quantile(h, 0.25) == 1 and hist_quantile(h, 0.5) == 2 and hist_quantile(h, 0.0) == 0
    cases = [((0.2, 50.0, 0.5, None), "model_quality_low_score"), ((0.7, 50.0, 0.5, 40.0), "model_quality_high_perplexity"),
             ((0.7, 30.0, 0.5, 40.0), None), ((None, None, 0.5, 40.0), None)]
    for args, expected in cases:
        v = judge(*args)
        assert (None if v.keep else v.reason) == expected, args


@pytest.mark.parametrize("bad,match", [
    (dict(classifier="bert"), "classifier"),
    (dict(classifier="path"), "classifier_path"),
    (dict(perplexity="kenlm"), "kenlm_path"),
    (dict(min_score=0.5, keep_fraction=0.5), "not both"),
    (dict(keep_fraction=0.0), "fraction"),
    (dict(reference="docs.csv"), "reference"),
])
def test_bad_config(bad, match):
    with pytest.raises(ConfigError, match=match):
        ModelQualityConfig(**bad)


def test_kenlm_missing_is_a_config_error(tmp_path):
    try:
        import kenlm  # noqa: F401
        pytest.skip("kenlm is installed here")
    except ImportError:
        pass
    with pytest.raises(ConfigError, match="kenlm"):
        ModelQualityScorer(ModelQualityConfig(classifier="off", perplexity="kenlm", kenlm_path=str(tmp_path / "x.arpa")))


def test_nothing_to_tell_apart_gives_no_classifier_instead_of_an_error():
    from winnow.filters.model_quality import ModelQualityConfig, train_classifier

    ref = ["The reference document explains how the parser reads each line of the input file."]
    assert train_classifier(ref, list(ref), ModelQualityConfig()) is None  # background = reference only
    assert train_classifier(ref, [], ModelQualityConfig()) is None
