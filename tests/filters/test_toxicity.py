"""Toxicity: the fast scorer equals alt-profanity-check's predict_prob; threshold and backends."""

import numpy as np
import pytest

from winnow.errors import ConfigError
from winnow.filters.toxicity import ProfanityScorer, ToxicityConfig, ToxicityFilter, chunks

TEXTS = [
    "The committee will publish its final report next spring.",
    "you are a fucking idiot and everybody hates you",
    "What a shit show, total bullshit from start to end.",
    "",
    "Numbers only 1234 5678",
    "The process was killed by the kernel after it ran out of memory.",
    "A long calm paragraph about gardens. " * 40,
]


def test_scores_equal_profanity_check():
    import profanity_check

    ref = profanity_check.predict_prob(TEXTS)
    mine = ProfanityScorer().score_many(TEXTS)
    np.testing.assert_allclose(mine, ref, rtol=0, atol=1e-9)


CASES = [
    (TEXTS[0], None),
    (TEXTS[1], "toxicity_toxic"),
    (TEXTS[2], "toxicity_toxic"),
    # one abusive paragraph inside a long calm text is found through the windows
    ("A long calm paragraph about gardens and their flowers in spring. " * 60
     + "You are a fucking idiot. Shut up, you stupid bitch. Everybody hates your shit. Fuck off, asshole. " * 3
     + "More calm words about gardens follow here. " * 20, "toxicity_toxic"),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_rules(text, expected):
    rec, v = ToxicityFilter().process({"text": text, "modality": "text"})
    assert (None if v.keep else v.reason) == expected
    assert 0.0 <= rec["toxicity_score"] <= 1.0


def test_threshold_one_keeps_everything_and_non_text_passes():
    f = ToxicityFilter(ToxicityConfig(threshold=1.0))
    assert f.process({"text": TEXTS[1], "modality": "text"})[1].keep
    rec, v = f.process({"text": None, "modality": "image", "image": b"x"})
    assert v.keep and rec["toxicity_score"] is None


def test_only_configured_languages_are_scored():
    f = ToxicityFilter()
    rec, v = f.process({"text": TEXTS[1], "modality": "text", "lang": "de"})
    assert v.keep and rec["toxicity_score"] is None
    rec, v = f.process({"text": TEXTS[1], "modality": "text", "lang": "en"})
    assert not v.keep
    rec, v = ToxicityFilter(ToxicityConfig(languages=())).process({"text": TEXTS[1], "modality": "text", "lang": "de"})
    assert not v.keep


def test_chunks_cover_the_text():
    text = "word " * 1000
    parts = chunks(text, 300)
    assert " ".join(parts).split() == text.split() and all(len(p) <= 300 for p in parts)
    assert chunks("short", 0) == ["short"]


def test_chunks_pack_whole_sentences_and_cut_long_ones():
    sents = [f"Sentence number {i} says something {'long ' * (i % 7)}here." for i in range(200)]
    text = " ".join(sents) + " " + "x" * 50 + " " + "y" * 900 + " tail"
    parts = chunks(text, 250)
    assert "".join("".join(parts).split()) == "".join(text.split())  # every character, in order, once
    assert all(len(p) <= 250 for p in parts)
    # A window ends at a sentence end unless a sentence was longer than a window.
    assert sum(p.endswith(".") for p in parts) >= len(parts) - 6


def test_chunks_max_windows_spread_over_the_text():
    text = "word " * 100_000  # no sentence break: cut at spaces
    parts = chunks(text, 1000)
    assert len(parts) > 400
    capped = chunks(text, 1000, max_windows=10)
    assert len(capped) == 10 and capped[0] == parts[0] and capped[-1] == parts[-1]
    assert chunks(text, 1000, max_windows=1) == parts[:1]
    assert chunks(text, 1000, max_windows=10_000) == parts


@pytest.mark.parametrize("cfg,match", [
    (dict(backend="perspective"), "toxicity.backend"),
    (dict(backend="fasttext"), "toxicity.model_path"),
    (dict(threshold=1.5), "toxicity.threshold"),
    (dict(max_windows=-1), "toxicity.max_windows"),
])
def test_bad_config(cfg, match):
    with pytest.raises(ConfigError, match=match):
        ToxicityConfig(**cfg)


def test_optional_backends_fail_clearly(tmp_path):
    with pytest.raises(ConfigError, match="model_path"):
        ToxicityFilter(ToxicityConfig(backend="fasttext", model_path=str(tmp_path / "missing.bin")))
    with pytest.raises(ConfigError, match="transformers|model directory"):
        ToxicityFilter(ToxicityConfig(backend="transformers", model_path=str(tmp_path / "missing")))


def test_fasttext_backend_with_a_trained_model(tmp_path):
    fasttext = pytest.importorskip("fasttext")
    train = tmp_path / "tox.txt"
    lines = [f"__label__toxic you {w} idiot" for w in ("stupid", "dumb", "worthless", "pathetic")] * 20
    lines += [f"__label__ok the {w} report is ready" for w in ("annual", "final", "weekly", "new")] * 20
    train.write_text("\n".join(lines) + "\n")
    model = fasttext.train_supervised(input=str(train), epoch=20, thread=1, seed=0, verbose=0)
    path = tmp_path / "tox.bin"
    model.save_model(str(path))
    f = ToxicityFilter(ToxicityConfig(backend="fasttext", model_path=str(path), threshold=0.5))
    bad, v = f.process({"text": "you stupid idiot", "modality": "text"})
    good, w = f.process({"text": "the final report is ready", "modality": "text"})
    assert not v.keep and w.keep and bad["toxicity_score"] > good["toxicity_score"]
