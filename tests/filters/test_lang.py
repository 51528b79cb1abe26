"""Language identification: lingua on literal sentences, keep-list and score rules, config errors."""

import pytest

from winnow.errors import ConfigError
from winnow.filters.lang import LangConfig, LangFilter

SENTENCES = [
    ("The committee will publish its final report on the new railway next spring.", "en"),
    ("Der Ausschuss wird seinen Abschlussbericht über die neue Eisenbahn im Frühjahr veröffentlichen.", "de"),
    ("Le comité publiera son rapport final sur le nouveau chemin de fer au printemps prochain.", "fr"),
    ("El comité publicará su informe final sobre el nuevo ferrocarril la próxima primavera.", "es"),
    ("Комитет опубликует свой окончательный доклад о новой железной дороге следующей весной.", "ru"),
    ("委员会将于明年春天发布关于新铁路的最终报告。", "zh"),
    ("委員会は来年の春に新しい鉄道に関する最終報告書を公表する予定です。", "ja"),
]


@pytest.fixture(scope="module")
def detector():
    return LangFilter(LangConfig(backend="lingua"))


@pytest.fixture(scope="module")
def default_detector():
    return LangFilter(LangConfig(backend="hybrid", tie_break="lingua_high"))


@pytest.mark.parametrize("text,lang", SENTENCES)
@pytest.mark.parametrize("which", ["default_detector", "detector"])
def test_detects(request, which, text, lang):
    rec, v = request.getfixturevalue(which).process({"text": text, "modality": "text"})
    assert v.keep and rec["lang"] == lang and 0 < rec["lang_score"] <= 1


CASES = [
    # (config, text, expected reason or None)
    (dict(keep=("en",)), SENTENCES[0][0], None),
    (dict(keep=("en",)), SENTENCES[1][0], "lang_not_kept"),
    (dict(keep=("en", "de")), SENTENCES[1][0], None),
    (dict(min_score=0.99), "Hello", "lang_low_score"),
    (dict(keep=("en",)), "1234 5678 !!!", "lang_unknown"),
    (dict(), "1234 5678 !!!", None),  # no keep-list and no min score: annotate only
]


@pytest.mark.parametrize("cfg,text,expected", CASES)
def test_rules(cfg, text, expected):
    rec, v = LangFilter(LangConfig(**cfg)).process({"text": text, "modality": "text"})
    assert (None if v.keep else v.reason) == expected


def test_batch_and_non_text(default_detector):
    detector = default_detector
    recs = [{"text": SENTENCES[0][0], "modality": "text"}, {"text": None, "modality": "image", "image": b"x"},
            {"text": SENTENCES[2][0], "modality": "image_text", "image": b"x"}]
    out = detector.process_batch(recs)
    assert [r["lang"] for r, _ in out] == ["en", None, "fr"] and all(v.keep for _, v in out)


@pytest.mark.parametrize("bad,match", [
    (dict(backend="cld3"), "lang.backend"),
    (dict(backend="fasttext"), "lang.model_path"),
    (dict(min_score=2.0), "lang.min_score"),
    (dict(ft_confidence=1.5), "lang.ft_confidence"),
    (dict(ft_agree_confidence=-0.1), "lang.ft_agree_confidence"),
    (dict(tie_break="vote"), "lang.tie_break"),
    (dict(ensemble=("cld3",)), "lang.ensemble"),
    (dict(keep=("english",)), "ISO 639-1"),
])
def test_bad_config(bad, match):
    with pytest.raises(ConfigError, match=match):
        LangConfig(**bad)


def test_fasttext_backend_missing_model_file(tmp_path):
    with pytest.raises(ConfigError, match="model_path"):
        LangFilter(LangConfig(backend="fasttext", model_path=str(tmp_path / "lid.176.bin")))


FAST_CASES = [
    # (text, the fast path's shortlist (None: every candidate), the language detected)
    # Two stop-word hits for one language settle it without lingua.
    ("Return the value of the attribute.", ("en",), "en"),
    # A Chinese man-page line with English option words is Chinese (a Han character weighs three letters).
    ("/var/run/utmp \u5f53\u524d\u767b\u5f55\u4f1a\u8bdd\u7684\u5217\u8868\u3002 /var/log/wtmp "
     "\u5148\u524d\u7684\u767b\u5f55\u4f1a\u8bdd\u5217\u8868\u3002 Note: in that case", ("ja", "zh"), "zh"),
    # Danish shares stop words with Dutch ("er", "en"): lingua weighs the two.
    ("Hvis $MANPATH er angivet, s\u00e5 vil manpath vise dets indhold og udstede en advarsel.", ("da", "nl"), "da"),
    # Languages without a stop-word list are never settled by the English words they quote.
    ("\u0397 \u03c4\u03b1\u03b9\u03bd\u03af\u03b1 The Matrix \u03ba\u03c5\u03ba\u03bb\u03bf\u03c6\u03cc\u03c1"
     "\u03b7\u03c3\u03b5 \u03c4\u03bf 1999 \u03ba\u03b1\u03b9 \u03ad\u03b3\u03b9\u03bd\u03b5 \u03c0\u03b1"
     "\u03b3\u03ba\u03cc\u03c3\u03bc\u03b9\u03bf \u03c6\u03b1\u03b9\u03bd\u03cc\u03bc\u03b5\u03bd\u03bf", None, "el"),
    ("Bo\u0323\u0302 phim The Matrix \u0111\u01b0\u01a1\u0323c ph\u00e1t h\u00e0nh n\u0103m 1999 v\u00e0 tr\u01a1\u0309 "
     "th\u00e0nh hi\u1ec7n t\u01b0\u01a1\u0323ng v\u0103n h\u00f3a to\u00e0n c\u00e2\u0300u", None, "vi"),
    ("\u0e20\u0e32\u0e29\u0e32\u0e44\u0e1e\u0e17\u0e2d\u0e19 is the \u0e20\u0e32\u0e29\u0e32\u0e42\u0e1b"
     "\u0e23\u0e41\u0e01\u0e23\u0e21\u0e23\u0e30\u0e14\u0e31\u0e1a\u0e2a\u0e39\u0e07", None, "th"),
]


@pytest.mark.parametrize("text,shortlist,lang", FAST_CASES)
def test_fast_path_cases(detector, text, shortlist, lang):
    assert detector._shortlist(text) == shortlist
    assert detector.detect([text])[0][0] == lang


@pytest.mark.slow
def test_fast_path_agrees_with_every_candidate_on_real_text():
    """The stop-word and script shortcuts pick lingua's own answer on real multilingual text;
    the hybrid names the language of the man page's directory at least as often as lingua's
    high-accuracy mode does (those labels are noisy: localized pages quote English, so the
    figures compare detectors, they do not grade them)."""
    from winnow.demo.text import clean_records

    from pathlib import Path

    man = Path("/usr/share/man")
    if not man.is_dir() or sum(1 for d in man.iterdir() if d.is_dir() and not d.name.startswith("man")) < 5:
        pytest.skip("needs man pages in several languages under /usr/share/man")
    recs = list(clean_records(600_000, 3, str(man)))
    texts, labels = [r["text"] for r in recs], [r["lang"] for r in recs]
    assert len(texts) > 500
    fast = [lang for lang, _ in LangFilter(LangConfig(backend="lingua")).detect(texts)]
    full = [lang for lang, _ in LangFilter(LangConfig(backend="lingua", fast_path=False)).detect(texts)]
    hybrid = [lang for lang, _ in LangFilter(LangConfig(backend="hybrid", tie_break="lingua_high")).detect(texts)]
    ens = [lang for lang, _ in LangFilter(LangConfig()).detect(texts)]
    high = [lang for lang, _ in LangFilter(LangConfig(backend="lingua", low_accuracy=False, fast_path=False)).detect(texts)]
    acc_h, acc_e, acc_high = (sum(a == b for a, b in zip(pred, labels)) / len(texts) for pred in (hybrid, ens, high))
    print(f"the man directory's language: lingua_high tie-break {acc_h:.3f}, ensemble (default) {acc_e:.3f}, "
          f"lingua high-accuracy {acc_high:.3f} of {len(texts)} texts")
    assert acc_h >= acc_high and acc_e >= acc_high
    agree = sum(a == b for a, b in zip(fast, full)) / len(texts)
    print(f"fast path agrees with the full candidate list on {agree:.3f} of {len(texts)} texts")
    assert agree >= 0.95
    assert len(set(full)) >= 8  # the sample really is multilingual


def test_hybrid_with_the_ensemble_tie_break_is_the_default_and_reads_the_bundled_model():
    from winnow.filters.lang import bundled_lid_model

    assert LangConfig().backend == "hybrid" and LangConfig().tie_break == "ensemble"
    assert LangConfig().ensemble == ("cld2", "langid")
    f = LangFilter(LangConfig(tie_break="lingua_high"))
    assert f.config.backend == "hybrid" and f._ft is not None and f.config.tie_break == "lingua_high"
    assert bundled_lid_model().endswith("lid.176.ftz")
    # Long texts take the lingua path, in low-accuracy mode (lingua's high-accuracy mode is
    # trigram-only there too); short ones ask high-accuracy detectors of their own.
    assert f.config.lingua_low_accuracy() is True and LangConfig(backend="lingua").lingua_low_accuracy() is True


LENGTHS = [
    # (text, lingua's cleaned length: punctuation, digits and symbols out, whitespace runs as one space)
    ("Save changes", 12),
    ("  Open   the settings!  ", 17),
    ("-f, --force (1) <x@y.z>", 13),
    ("\u4fdd\u5b58\u66f4\u6539\u3002 OK", 7),
    ("", 0),
]


@pytest.mark.parametrize("text,n", LENGTHS)
def test_lingua_length(text, n):
    from winnow.filters.lang import lingua_length

    assert lingua_length(text) == n


def _pydoc_sentences(n: int = 400, cut: bool = True, seed: int = 0) -> list[str]:
    """English prose sentences from pydoc_data.topics (machine text), seeded; ``cut``: a
    random run of 1-12 words of each."""
    import random
    import re

    from pydoc_data.topics import topics

    rng = random.Random(seed)
    out = []
    for key in sorted(topics):
        for sent in re.split(r"(?<=[.!?])\s+", topics[key]):
            words = sent.split()
            # Prose only: mostly alphabetic words (no code, no tables).
            if len(words) < 4 or sum(w.strip(".,;:()").isalpha() for w in words) < 0.8 * len(words):
                continue
            k = rng.choice((1, 2, 3, 4, 6, 8, 12)) if cut else len(words)
            s = rng.randrange(0, len(words) - min(k, len(words)) + 1)
            out.append(" ".join(words[s:s + k]))
    rng.shuffle(out)
    return out[:n]


def _long_texts() -> list[str]:
    from winnow.filters.lang import LONG_TEXT, lingua_length

    long = [" ".join(t for t, _ in SENTENCES[i:i + 3]) for i in range(len(SENTENCES))]
    prose = _pydoc_sentences(n=120, cut=False)
    long += [" ".join(prose[i:i + 3]) for i in range(0, len(prose), 3)]
    long = [t for t in long if lingua_length(" ".join(t[:300].split())[:200]) >= LONG_TEXT]
    assert len(long) >= 40
    return long


def test_hybrid_long_texts_lingua_take_the_lingua_path_unchanged():
    """``long_texts: lingua``: from 120 cleaned characters on, hybrid answers exactly as the
    ``lingua`` path (labels and scores), asks no high-accuracy detector and not even fastText."""
    long = _long_texts()
    hyb = LangFilter(LangConfig(backend="hybrid", tie_break="lingua_high", long_texts="lingua"))
    hyb._ft = type("NoFastText", (), {"f": None})()  # a long text reaching fastText would raise
    assert hyb.detect(long) == LangFilter(LangConfig(backend="lingua")).detect(long)
    assert hyb._high == {}


def test_hybrid_long_texts_fast_path_then_sure_fasttext_then_lingua():
    """The default ``long_texts: fasttext``, against its rule written out: the fast path's single
    language (score 1), else fastText's top candidate at ``ft_confidence`` or more (its
    probability), else the ``lingua`` path's answer. Both of the last two occur."""
    from winnow.filters.fasttext_util import ft_predict

    long = _long_texts()
    long += ["Ceci est un texte assez long : il faut bien plus de cent vingt lettres pour que la "
             "detection passe par le chemin des textes longs, alors ecrivons encore.",
             "Dit is een tamelijk lange tekst: er zijn meer dan honderdtwintig letters nodig voordat "
             "de taaldetectie het pad voor lange teksten neemt, dus schrijven we verder."]
    seen = {"fast": 0, "fasttext": 0, "lingua": 0}
    for cfg in (LangConfig(), LangConfig(ft_confidence=0.6), LangConfig(fast_path=False)):
        hyb = LangFilter(cfg)
        ling = LangFilter(LangConfig(backend="lingua", fast_path=cfg.fast_path)).detect(long)
        m, ways = cfg.max_chars, {"fast": 0, "fasttext": 0, "lingua": 0}
        want = []
        for t, lg in zip(long, ling):
            p = " ".join(t[: m + m // 2].split())[:m].rstrip()
            langs = hyb._shortlist(p) if cfg.fast_path else None
            (lab,), (prob,) = (x[0] for x in ft_predict(hyb._ft, [p], k=1))
            code = lab.removeprefix("__label__")
            if langs is not None and len(langs) == 1:
                want.append((langs[0], 1.0))
                ways["fast"] += 1
            elif prob >= cfg.ft_confidence and code in hyb._cands:
                want.append((code, round(min(1.0, float(prob)), 6)))
                ways["fasttext"] += 1
            else:
                want.append(lg)
                ways["lingua"] += 1
        assert hyb.detect(long) == want, cfg
        seen = {k: v + ways[k] for k, v in seen.items()}
    assert min(seen.values()) > 0, seen


def test_hybrid_long_texts_fasttext_at_least_as_accurate_as_the_lingua_path():
    """Labelled long texts (phrases of one language joined until 120 letters or more): fastText
    where it is sure is right at least as often as the ``lingua`` path alone."""
    import random

    from winnow.demo.langid_evalset import PHRASES
    from winnow.filters.lang import LONG_TEXT, lingua_length

    rng, data = random.Random(7), []
    for lang, phrases in PHRASES.items():
        for _ in range(12):
            t = ""
            while lingua_length(t[:200]) < LONG_TEXT and len(t) < 400:
                t = f"{t} {rng.choice(phrases)}".strip()
            if lingua_length(t[:200]) >= LONG_TEXT:
                data.append((t, lang))
    assert len({g for _, g in data}) >= 18
    texts, gold = [t for t, _ in data], [g for _, g in data]

    def acc(cfg: LangConfig) -> float:
        return sum(a == g for (a, _), g in zip(LangFilter(cfg).detect(texts), gold)) / len(gold)

    new, old = acc(LangConfig()), acc(LangConfig(long_texts="lingua"))
    print(f"\n{len(texts)} long texts: long_texts fasttext {new:.4f}, lingua {old:.4f}")
    assert new >= old >= 0.9


def test_hybrid_as_accurate_as_lingua_high_accuracy_on_short_texts():
    """Labelled short UI strings in 20 languages: the hybrid is at least as accurate as lingua's
    high-accuracy mode over the same candidates, and asks lingua's high-accuracy mode only for
    the few texts fastText and lingua's low-accuracy mode disagree on. The default
    ``tie_break: ensemble`` (no high-accuracy models) is at least as accurate too;
    ``tie_break: product`` still beats each detector alone."""
    from winnow.demo.langid_evalset import lang_eval_set

    data = lang_eval_set()
    texts, gold = [t for t, _ in data], [g for _, g in data]
    hyb = LangFilter(LangConfig(backend="hybrid", tie_break="lingua_high"))
    calls = []
    real_high_for = hyb._high_for

    def high_for(langs):
        det = real_high_for(langs)

        class Spy:
            def compute_language_confidence_values(self, t):
                calls.append((t, langs))
                return det.compute_language_confidence_values(t)

        return Spy()

    hyb._high_for = high_for

    def acc(f):
        return sum(a == b for (a, _), b in zip(f.detect(texts), gold)) / len(gold)

    got = acc(hyb)
    ref = acc(LangFilter(LangConfig(backend="lingua", low_accuracy=False, fast_path=False)))
    low = acc(LangFilter(LangConfig(backend="lingua", fast_path=False)))
    from winnow.filters.lang import bundled_lid_model

    ft = acc(LangFilter(LangConfig(backend="fasttext", model_path=bundled_lid_model())))
    prod = LangFilter(LangConfig(backend="hybrid", tie_break="product"))
    got_prod = acc(prod)
    ens = LangFilter(LangConfig())
    got_ens = acc(ens)
    print(f"\n{len(texts)} short texts: ensemble (default) {got_ens:.4f}, lingua_high tie-break {got:.4f}, "
          f"product tie-break {got_prod:.4f}, lingua high-accuracy "
          f"{ref:.4f}, low-accuracy {low:.4f}, fastText alone {ft:.4f}; lingua high-accuracy asked for "
          f"{len(calls)} ({len(calls) / len(texts):.0%})")
    assert got >= ref >= 0.98 and got > ft
    assert 0 < len(calls) < 0.15 * len(texts) and all(2 <= len(langs) <= 3 for _, langs in calls)
    assert got_prod > max(ft, low) and prod._high == {}
    assert got_ens >= ref and ens._high == {} and ens._extra is not None


def test_hybrid_at_least_as_accurate_as_lingua_high_accuracy_on_english_snippets():
    """A set built another way: English prose from pydoc_data.topics cut to 1-12 words."""
    texts = _pydoc_sentences(n=400)
    assert len(texts) == 400

    def acc(cfg):
        return sum(lang == "en" for lang, _ in LangFilter(cfg).detect(texts)) / len(texts)

    got = acc(LangConfig(backend="hybrid", tie_break="lingua_high"))
    ens = acc(LangConfig())
    ref = acc(LangConfig(backend="lingua", low_accuracy=False, fast_path=False))
    print(f"\n{len(texts)} English snippets: ensemble (default) {ens:.4f}, lingua_high tie-break {got:.4f}, "
          f"lingua high-accuracy {ref:.4f}")
    assert got >= ref and ens >= ref


def test_hybrid_output_is_byte_identical_across_processes():
    import json
    import subprocess
    import sys

    code = ("import json\nfrom winnow.demo.langid_evalset import lang_eval_set\n"
            "from winnow.filters.lang import LangConfig, LangFilter\n"
            "texts = [t for t, _ in lang_eval_set(pairs_per_lang=10)]\n"
            "texts += [a + ' ' + b for a, b in zip(texts[::2], texts[1::2])]  # some long enough for the lingua path\n"
            "print(json.dumps(LangFilter(LangConfig(backend='hybrid')).detect(texts)))\n")
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert outs[0] == outs[1] and len(json.loads(outs[0])) > 400


@pytest.mark.slow
def test_ui_strings_of_the_machines_gettext_catalogs():
    """Real UI strings (the machine's translated program catalogs, read at run time): the
    default ensemble is at least as accurate as lingua's high-accuracy mode, and the product
    of more detectors beats the product of two (labels are noisy: translators keep English
    names, so the figures compare detectors on the same strings)."""
    from winnow.demo.langid_catalogs import catalog_eval_set

    data = catalog_eval_set(per_lang=100)
    if len({g for _, g in data}) < 10 or len(data) < 1000:
        pytest.skip("needs gettext catalogs of 10 or more of the set's languages under /usr/share/locale")
    texts, gold = [t for t, _ in data], [g for _, g in data]

    def acc(cfg):
        return sum(a == b for (a, _), b in zip(LangFilter(cfg).detect(texts), gold)) / len(gold)

    ens, prod = acc(LangConfig()), acc(LangConfig(tie_break="product"))
    high = acc(LangConfig(backend="lingua", low_accuracy=False, fast_path=False))
    print(f"\n{len(texts)} catalog UI strings: ensemble {ens:.4f}, product {prod:.4f}, lingua high-accuracy {high:.4f}")
    assert ens >= high and ens > prod


PRODUCT_CASES = [
    # (distributions, allowed, expected ranking codes): detectors' probabilities multiply; a
    # language a detector does not list gets the floor; ties go to the smaller code.
    (({"es": 0.6, "pt": 0.4}, {"es": 0.4, "pt": 0.6}, {"pt": 0.9}), {"es", "pt"}, ["pt", "es"]),
    (({"es": 0.6, "pt": 0.4}, {"es": 0.4, "pt": 0.6}), {"es", "pt"}, ["es", "pt"]),
    (({"es": 0.9, "pt": 0.1}, {"pt": 1.0}, {}), {"es", "pt", "it"}, ["pt", "es"]),
    (({"en": 0.9}, {"fr": 0.9}, {"de": 1.0}), {"en", "fr"}, ["en", "fr"]),
    (({}, {}), {"en"}, []),
]


@pytest.mark.parametrize("dists,allowed,expected", PRODUCT_CASES)
def test_product_ranking(dists, allowed, expected):
    from winnow.filters.lang import _product_ranking

    ranked = _product_ranking(dists[0], dists[1], frozenset(allowed), *dists[2:])
    assert [c for c, _ in ranked] == expected
    assert all(0 < s <= 1 for _, s in ranked) and (not ranked or abs(sum(s for _, s in ranked) - 1) < 1e-5)


ENSEMBLE_CASES = [
    # (detector, text, allowed, the top language it reports or None)
    ("cld2", "Der Ausschuss wird seinen Abschlussbericht im Frühjahr veröffentlichen.", {"de", "nl"}, "de"),
    ("cld2", "委员会将于明年春天发布关于新铁路的最终报告。", {"zh", "ja"}, "zh"),  # CLD2 says zh / zh-Hant
    ("cld2", "הוועדה תפרסם את הדוח הסופי שלה באביב", {"he", "ar"}, "he"),  # CLD2 says iw
    ("cld2", "1234 5678 !!!", {"en", "de"}, None),
    ("cld2", "The committee will publish \udc80 its final report next spring.", {"en", "de"}, "en"),  # a lone surrogate
    ("langid", "Le comité publiera son rapport final au printemps prochain.", {"fr", "en"}, "fr"),
    ("langid", "Le comité publiera son rapport final au printemps prochain.", {"de", "en"}, None),
    ("langid", "Le comité publiera son \udc80 rapport final au printemps prochain.", {"fr", "en"}, "fr"),
    ("cld2", "control \x00\x01\x02 characters", {"en", "de"}, None),
]


@pytest.mark.parametrize("name,text,allowed,top", ENSEMBLE_CASES)
def test_ensemble_detectors(name, text, allowed, top):
    f = LangFilter(LangConfig(ensemble=(name,)))
    (detect,) = f._ensemble()
    probs = detect(text, frozenset(allowed))
    assert set(probs) <= allowed and all(0 <= v <= 1 for v in probs.values())
    best = max(probs, key=probs.get) if probs and max(probs.values()) > 0.5 else None
    assert best == top


def test_langid_walked_together_gives_py3langids_own_probabilities_to_the_bit():
    """langid.py's automaton walked over many texts at once (and the widened table) must give
    exactly the probabilities py3langid computes text by text: real text in several scripts,
    upper case (py3langid lowercases it), decomposed accents (it composes them), lone
    surrogates, control bytes, texts with no feature and an empty one, each walked both in a
    group and alone."""
    import random

    import numpy as np
    import pydoc_data.topics
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    from winnow.filters.lang import _WALK_TOGETHER, _LangId

    words = " ".join(pydoc_data.topics.topics.values()).split()
    rng = random.Random(7)
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 25))) for _ in range(300)]
    texts += ["Le comité publiera son rapport final au printemps prochain.", "DER AUSSCHUSS WIRD BERICHTEN",
              "委员会将于明年春天发布关于新铁路的最终报告。", "Комитет опубликует доклад весной.",
              "e\u0301te\u0301 a\u0300 Montre\u0301al", "lone \udc80 surrogate", "control \x00\x01\x02", "", " ", "1234"]
    texts += ["".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(1, 60))) for _ in range(50)]
    reference = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)  # float16 table, Python walk
    lid = _LangId()
    codes, cols = lid._of(frozenset(["en", "fr", "de", "zh", "ru", "ja", "es"]))
    allowed = frozenset(codes)
    together = lid.many(texts, allowed)
    assert len(texts) >= _WALK_TOGETHER
    alone = [lid(t, allowed) for t in texts[:40]]
    for i, t in enumerate(texts):
        want = reference._decide(t.encode("utf-8", "replace"))[cols].astype("float64").round(6).tolist()
        assert together[i] == dict(zip(codes, want)), t
        if i < 40:
            assert alone[i] == together[i]
    assert len({max(d, key=d.get) for d in together if d}) >= 3  # not one answer for everything
    # the exact raw scores too, before any rounding
    data = [lid._model._encode(t.encode("utf-8", "replace")) for t in texts]
    for d, visits in zip(data, lid._visits(data)):
        assert np.array_equal(lid._scores(d, visits), reference._decide(d))
