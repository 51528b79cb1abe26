"""The grammar filter (Harper): counted kinds, the rate column, rules off, language gating,
config errors, and the calibration on well-edited prose against text with deliberate errors."""

import json
import random

import pytest

from winnow.errors import ConfigError
from winnow.filters.grammar import DEFAULT_KINDS, GrammarConfig, GrammarFilter
from winnow.demo.grammar_evalset import clean_paragraphs, grammar_eval_set, inject_errors

GOOD = ("The committee reviewed the proposal for the new railway line and recommended that the city "
        "build it. The costs will be shared by the city and the state, and the work should begin next spring.")
BAD = ("The committee reviewed an proposal for the new railway line and recommended that the city "
       "build it. It are shared by the city and the state, and the work could of begun sooner then planned.")


@pytest.fixture(scope="module")
def gf():
    return GrammarFilter()


def test_clean_text_kept_erroneous_text_dropped(gf):
    rec, v = gf.process({"text": GOOD, "modality": "text"})
    assert v.keep and rec["grammar_errors"] == 0 and rec["grammar_errors_per_100_words"] == 0.0
    rec, v = gf.process({"text": BAD, "modality": "text"})
    kinds = json.loads(rec["grammar_kinds"])
    assert not v.keep and v.reason == "grammar_too_many_errors"
    assert rec["grammar_errors"] == sum(kinds.values()) >= 3 and {"Agreement", "WordChoice"} <= set(kinds)
    assert rec["grammar_errors_per_100_words"] == pytest.approx(100 * rec["grammar_errors"] / len(BAD.split()), abs=1e-6)


def test_spelling_of_code_words_is_off_by_default_and_can_be_counted(gf):
    text = "Call getattr on the numpy array, then pass kwargs to the asyncio loop and json.dumps the dict."
    rec, _ = gf.process({"text": text, "modality": "text"})
    assert rec["grammar_errors"] == 0 and "Spelling" not in DEFAULT_KINDS
    rec, _ = GrammarFilter(GrammarConfig(kinds=(*DEFAULT_KINDS, "Spelling"))).process({"text": text, "modality": "text"})
    assert json.loads(rec["grammar_kinds"]).get("Spelling", 0) >= 1


def test_rules_off_and_unknown_rule():
    off = GrammarFilter(GrammarConfig(rules_off=("AnA",)))
    rec, _ = off.process({"text": "This is an book about a old tree that grew in the park for years.", "modality": "text"})
    assert "Miscellaneous" not in json.loads(rec["grammar_kinds"])
    with pytest.raises(ConfigError, match="rules_off"):
        GrammarFilter(GrammarConfig(rules_off=("NoSuchRule",)))


def test_language_gating_short_texts_and_non_text(gf):
    rec, v = gf.process({"text": BAD, "modality": "text", "lang": "de"})
    assert v.keep and rec["grammar_errors_per_100_words"] is None
    rec, v = gf.process({"text": "It are an dog.", "modality": "text"})
    assert v.keep and rec["grammar_errors"] >= 1  # under min_words: annotated, never dropped
    rec, v = gf.process({"text": None, "modality": "image", "image": b"x"})
    assert v.keep and rec["grammar_kinds"] is None
    rec, v = GrammarFilter(GrammarConfig(max_errors_per_100_words=0)).process({"text": BAD, "modality": "text"})
    assert v.keep and rec["grammar_errors"] >= 3  # 0: annotate only


@pytest.mark.parametrize("bad,key", [
    (dict(max_errors_per_100_words=-1), "max_errors_per_100_words"),
    (dict(kinds=("Nonsense",)), "grammar.kinds"),
    (dict(kinds=()), "grammar.kinds"),
    (dict(languages=("de",)), "grammar.languages"),
    (dict(dialect="klingon"), "grammar.dialect"),
    (dict(max_chars=10), "grammar.max_chars"),
])
def test_config_errors(bad, key):
    with pytest.raises(ConfigError, match=key):
        GrammarConfig(**bad)


def test_injected_errors_are_real_edits():
    p = clean_paragraphs(limit=40)
    assert len(p) == 40 and all(len(x.split()) >= 25 for x in p)
    rng = random.Random(0)
    changed = [inject_errors(x, rng, 2) for x in p]
    assert sum(t != x for (t, _), x in zip(changed, p)) >= 30
    assert all(len(t.split()) == len(x.split()) or "could of" in t for (t, _), x in zip(changed, p))


@pytest.mark.slow
def test_default_threshold_calibration():
    """Well-edited prose (stdlib docstrings, pydoc topics) loses under 5%; paragraphs with
    deliberate agreement, article and word-choice errors are mostly caught."""
    clean, bad = grammar_eval_set()
    f = GrammarFilter()
    lost = sum(not f.process({"text": t, "modality": "text"})[1].keep for t in clean) / len(clean)
    caught = sum(not f.process({"text": t, "modality": "text"})[1].keep for t, _ in bad) / len(bad)
    print(f"\ngrammar at max_errors_per_100_words={f.config.max_errors_per_100_words}: clean prose lost "
          f"{lost:.3f} of {len(clean)}, erroneous caught {caught:.3f} of {len(bad)}")
    assert lost < 0.05 and caught >= 0.75
