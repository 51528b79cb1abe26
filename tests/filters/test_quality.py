"""Heuristic quality rules: one literal input per rule and the reason it must give."""

import pytest

from winnow.errors import ConfigError
from winnow.filters.quality import QUALITY_REASONS, QualityConfig, QualityFilter

GOOD = "\n".join([
    "The river town grew slowly around an old stone bridge over the water.",
    "Farmers brought apples and grain to the market every Saturday morning.",
    "Children learned to read in a small school near the church with their teacher.",
    "A storm in the autumn of that year damaged many roofs and fences.",
    "Workers rebuilt the mill with timber cut from the northern forest.",
    "Travelers often stopped at the inn to rest their horses and have supper.",
    "Letters from the capital arrived twice a month by coach along the valley road.",
])
assert len(GOOD.split()) >= 50

OFF = dict(c4=False, fineweb=False)
NGRAM_ONLY = dict(c4=False, fineweb=False, min_stop_words=0, max_dup_line_ratio=1.0, max_dup_para_ratio=1.0,
                  max_dup_line_char_ratio=1.0, max_dup_para_char_ratio=1.0)


def _lines(words_per_line, n, end="."):
    vocab = ("amber basin cedar delta ember fable garnet harbor island jasper kettle lantern meadow "
             "nectar orchard pepper quarry raven saddle timber umber valley willow yonder zephyr").split()
    out = []
    for i in range(n):
        out.append(" ".join(vocab[(i * words_per_line + k) % len(vocab)] + ("" if k else str(i)) for k in range(words_per_line)) + end)
    return out


CASES = [
    # (id, text, lang, config overrides, expected reason or None)
    ("good", GOOD, "en", {}, None),
    ("gopher_word_count", "Far too short to be a document.", "en", {}, "quality_gopher_word_count"),
    ("gopher_word_count_max", GOOD, "en", {"max_words": 20, "min_words": 0}, "quality_gopher_word_count"),
    ("gopher_mean_word_length", ("it is to be so. " * 15).strip(), "en", {}, "quality_gopher_mean_word_length"),
    ("gopher_mean_word_length_long", " ".join(["internationalization"] * 60), "en", {}, "quality_gopher_mean_word_length"),
    ("gopher_symbol_ratio", GOOD + "\n" + " ".join(["#tag"] * 10), "en", {}, "quality_gopher_symbol_ratio"),
    ("gopher_bullet_lines", "\n".join("- " + s for s in GOOD.split("\n")), "en", {}, "quality_gopher_bullet_lines"),
    ("gopher_ellipsis_lines", "\n".join(s[:-1] + "..." if i % 2 else s for i, s in enumerate(GOOD.split("\n"))),
     "en", {}, "quality_gopher_ellipsis_lines"),
    ("gopher_alpha_words", GOOD + "\n" + " ".join(str(1000 + i) for i in range(25)), "en", {},
     "quality_gopher_alpha_words"),
    ("gopher_stop_words", "\n".join(_lines(8, 8)), "en", {}, "quality_gopher_stop_words"),
    ("gopher_stop_words_german_list", GOOD, "de", {}, "quality_gopher_stop_words"),
    ("gopher_dup_lines", GOOD + "\n" + "\n".join(GOOD.split("\n")[:4]), "en", {}, "quality_gopher_dup_lines"),
    ("gopher_dup_paragraphs", "\n\n".join(GOOD.split("\n") + GOOD.split("\n")[:4]), "en",
     {"max_dup_line_ratio": 1.0}, "quality_gopher_dup_paragraphs"),
    ("gopher_dup_line_chars", GOOD + "\n" + "\n".join(GOOD.split("\n")[:2]), "en", {"max_dup_line_ratio": 1.0},
     "quality_gopher_dup_line_chars"),
    ("gopher_dup_paragraph_chars", GOOD.replace("\n", " ") + "\n\n" + GOOD.split("\n")[0] + " " + GOOD.split("\n")[1]
     + "\n\nclosing words here.\n\n" + (GOOD.split("\n")[0] + " " + GOOD.split("\n")[1] + "\n\n") * 2, "en",
     {"max_dup_line_ratio": 1.0, "max_dup_para_ratio": 1.0, "max_dup_line_char_ratio": 1.0},
     "quality_gopher_dup_paragraph_chars"),
    ("gopher_top_2gram", " ".join(f"stone bridge word{i}" for i in range(30)), "en", NGRAM_ONLY,
     "quality_gopher_top_2gram"),
    ("gopher_top_3gram", " ".join(f"old stone bridge w{i}" for i in range(25)), "en",
     {**NGRAM_ONLY, "top_ngram_max": (1.0, 0.18, 0.16)}, "quality_gopher_top_3gram"),
    ("gopher_top_4gram", " ".join(f"the old stone bridge w{i}" for i in range(25)), "en",
     {**NGRAM_ONLY, "top_ngram_max": (1.0, 1.0, 0.16)}, "quality_gopher_top_4gram"),
    ("gopher_dup_5gram", GOOD.replace("\n", " ") + " " + GOOD.split("\n")[0], "en", NGRAM_ONLY,
     "quality_gopher_dup_5gram"),
    ("gopher_dup_10gram", GOOD.replace("\n", " ") + " " + GOOD.split("\n")[0], "en",
     {**NGRAM_ONLY, "dup_ngram_max": (1, 1, 1, 1, 1, 0.10)}, "quality_gopher_dup_10gram"),
    ("c4_lorem_ipsum", GOOD + "\nLorem ipsum dolor sit amet, consectetur elit.", "en", {}, "quality_c4_lorem_ipsum"),
    ("c4_curly_bracket", GOOD + "\nUse a dict such as {1: 2} for this.", "en", {}, "quality_c4_curly_bracket"),
    ("c4_too_few_sentences", GOOD.replace(".", ""), "en", {}, "quality_c4_too_few_sentences"),
    ("c4_citations_removed_before_the_punctuation_check", GOOD.replace(".", ".[1]"), "en", {"fineweb": False}, None),
    ("c4_javascript_lines_removed", "\n".join(s[:-1] + " with javascript." for s in GOOD.split("\n")), "en", {},
     "quality_c4_too_few_sentences"),
    ("fineweb_line_punct", GOOD.replace(".", ""), "en", {"c4": False}, "quality_fineweb_line_punct"),
    ("fineweb_short_lines", "\n".join(_lines(3, 25)), "en", {"c4": False, "min_stop_words": 0},
     "quality_fineweb_short_lines"),
    ("fineweb_dup_line_chars", GOOD + "\n" + GOOD.split("\n")[0], "en", {}, "quality_fineweb_dup_line_chars"),
    ("fineweb_list_ratio", "\n".join(_lines(3, 25)), "en",
     {"c4": False, "min_stop_words": 0, "fineweb_max_short_line_ratio": 1.0}, "quality_fineweb_list_ratio"),
    ("zh_words_are_characters", "河流小镇围绕着一座古老的石桥慢慢发展起来。" * 4, "zh", {**OFF, "gopher_repetition": False}, None),
    ("families_off", "Far too short.", "en", {"gopher_quality": False, "gopher_repetition": False, "c4": False,
                                            "fineweb": False}, None),
]


@pytest.mark.parametrize("case_id,text,lang,overrides,expected", CASES, ids=[c[0] for c in CASES])
def test_rule_table(case_id, text, lang, overrides, expected):
    f = QualityFilter(QualityConfig(**overrides))
    rec, verdict = f.process({"id": case_id, "text": text, "modality": "text", "lang": lang})
    assert (None if verdict.keep else verdict.reason) == expected, case_id
    assert rec["quality_words"] > 0


def test_every_reason_is_covered_by_the_table():
    seen = {c[4] for c in CASES if c[4]}
    untested = set(QUALITY_REASONS) - seen
    # The 6-9 gram rules share the 5- and 10-gram code path.
    assert untested <= {f"quality_gopher_dup_{n}gram" for n in (6, 7, 8, 9)}, untested


def test_annotations_and_non_text_records():
    f = QualityFilter()
    rec, v = f.process({"text": GOOD, "modality": "text", "lang": "en"})
    assert v.keep and rec["quality_words"] == len(GOOD.split())
    assert rec["quality_alpha_ratio"] == 1.0 and rec["quality_line_punct_ratio"] == 1.0
    assert 3 < rec["quality_mean_word_length"] < 10
    img, v = f.process({"text": "a cat", "modality": "image_text", "image": b"x"})
    assert v.keep and img["quality_words"] is None


@pytest.mark.parametrize("words,with_letter", [
    ("(hello), world. x86_64 --verbose", 4),
    ("1.2.3 -- 42 ... \u2014 \u00ab\u00bb 3.14% _", 0),
    ("\u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0 \u0562\u0561\u0580\u0565\u0582", 2),  # Georgian, Armenian
    ("\u1edf \u1ea1 \u0111\u00f3 42", 3),  # Vietnamese one-letter words (Latin Extended Additional)
    ("\u00bd \u2460 \u00b2 \u216b 10\u00b2 x\u00b2 (a) 1.5", 2),  # numbers that are not digits are no letters
    ("\u6f22\u5b57 \u3072\u3089\u304c\u306a \ud55c\uae00 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0928\u092e\u0938\u094d\u0924\u0947", 5),
])
def test_words_with_a_letter_in_any_script(words, with_letter):
    from winnow.filters.quality_gopher import alpha_words

    assert alpha_words(words.split()) == with_letter


def test_c4_rewrite_keeps_only_c4_lines():
    text = GOOD + "\nClick here\nThis site uses cookies to improve things."
    rec, v = QualityFilter(QualityConfig(c4_rewrite=True, fineweb=False)).process({"text": text, "modality": "text"})
    assert v.keep and rec["text"] == GOOD


def test_small_and_large_documents_agree_on_ngram_rules(monkeypatch):
    from winnow.filters import quality_repetition as rep

    f = QualityFilter(QualityConfig(**NGRAM_ONLY))
    words = (GOOD.replace("\n", " ") + " " + GOOD.split("\n")[0]).split()
    monkeypatch.setattr(rep, "_SMALL", 10**9)  # the Counter path
    assert rep.gopher_ngrams(f.config, words) == "quality_gopher_dup_5gram"
    monkeypatch.setattr(rep, "_SMALL", 2)  # the numpy path on the same words
    assert rep.gopher_ngrams(f.config, words) == "quality_gopher_dup_5gram"


def _ngram_rules_by_definition(words, cfg):
    """Gopher's n-gram rules written out plainly (no bounds, no shortcuts), for comparison."""
    from collections import Counter

    total = sum(map(len, words))
    for n, limit in zip((2, 3, 4), cfg.top_ngram_max):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        if not grams:
            continue
        counts = Counter(grams)
        best = max(counts.values())
        gram = next(g for g in grams if counts[g] == best)  # the first seen of the most frequent
        if best > 1 and sum(map(len, gram)) * best / total > limit:
            return f"quality_gopher_top_{n}gram"
    for n, limit in zip((5, 6, 7, 8, 9, 10), cfg.dup_ngram_max):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        counts = Counter(grams)
        covered = set()
        for i, g in enumerate(grams):
            if counts[g] > 1:
                covered.update(range(i, i + n))
        if sum(len(words[i]) for i in covered) / total > limit:
            return f"quality_gopher_dup_{n}gram"
    return None


def test_ngram_paths_agree_on_ties_and_random_repetition(monkeypatch):
    """The numpy path (hashes of this process) and the Counter path give the same reason on
    documents full of equally frequent n-grams of different lengths: a tie is broken by first
    occurrence, never by hash order, so a verdict cannot change between workers."""
    import random

    from winnow.filters import quality_repetition as rep

    vocab = "a an the river stone bridge apple orchard x lantern meadow quarry".split()
    rng = random.Random(7)
    docs = []
    for _ in range(400):
        phrase = [rng.choice(vocab) for _ in range(rng.randint(2, 6))]
        words = []
        while len(words) < rng.randint(20, 300):
            words += phrase if rng.random() < 0.4 else [rng.choice(vocab)]
        docs.append(words)
    # The tie case by hand: "a b" and "long words" both occur twice; the first seen decides.
    docs.append("a b long words a b long words".split())
    reasons = set()
    for top in ((0.20, 0.18, 0.16), (0.35, 0.3, 0.3), (0.08, 0.08, 0.08)):
        cfg = QualityConfig(**NGRAM_ONLY, top_ngram_max=top)
        f = QualityFilter(cfg)
        monkeypatch.setattr(rep, "_SMALL", 10**9)
        small = [rep.gopher_ngrams(f.config, w) for w in docs]
        monkeypatch.setattr(rep, "_SMALL", 0)
        large = [rep.gopher_ngrams(f.config, w) for w in docs]
        assert small == large
        assert small == [_ngram_rules_by_definition(w, cfg) for w in docs]
        reasons |= set(small)
    assert {"quality_gopher_top_2gram", "quality_gopher_top_3gram", "quality_gopher_dup_5gram", None} <= reasons


@pytest.mark.parametrize("bad", [dict(min_words=100, max_words=10), dict(max_dup_line_ratio=1.5),
                                 dict(top_ngram_max=(0.2,)), dict(min_stop_words=-1)])
def test_bad_config(bad):
    with pytest.raises(ConfigError):
        QualityConfig(**bad)


def test_each_rule_family_owns_its_reasons_in_its_own_module():
    from winnow.filters import quality_c4, quality_fineweb, quality_gopher, quality_repetition

    families = {quality_gopher.GOPHER_QUALITY_REASONS: "quality_gopher_",
                quality_repetition.GOPHER_REPETITION_REASONS: "quality_gopher_",
                quality_c4.C4_REASONS: "quality_c4_", quality_fineweb.FINEWEB_REASONS: "quality_fineweb_"}
    assert all(r.startswith(prefix) for reasons, prefix in families.items() for r in reasons)
    # Together, in the order the filter runs them, they are the stage's reasons, each once.
    assert tuple(r for reasons in families for r in reasons) == QUALITY_REASONS
    assert len(set(QUALITY_REASONS)) == len(QUALITY_REASONS)
