"""The quality filter's shortcuts against the rules written out plainly.

The filter counts with bytes, bounds and candidate n-grams; the reference below computes every
figure the obvious way (one word or line at a time, no bound, no early exit). On tricky texts
(empty, whitespace only, CJK read as characters, lone surrogates, non-ASCII spaces and digits,
very long lines, bullet and ellipsis lists, repeated paragraphs and n-grams) both must give the
same annotations, to the last bit, the same reason and the same rewritten text.
"""

import random
import re
import sys

import pytest

from winnow.filters.quality import QualityConfig, QualityFilter
from winnow.filters.stopwords import NO_SPACE_LANGS, split_words, stop_words

from .test_quality import GOOD, _ngram_rules_by_definition

_BULLETS = ("-", "*", "\u2022", "\u25cf", "\u25cb", "\u25aa", "\u25a0", "\u2023", "\u2043", "\u2013", "\u27a2", "\u2192")
_FW_PUNCT = (".", "!", "?", '"', "'", ")", "\u201d", "\u2019", ":", ";", "\u3002", "\uff01", "\uff1f", "\u2026")
_TERMINAL = (".", "!", "?", '"', "\u201d", "'", "\u3002", "\uff01", "\uff1f")
_SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f]+[\"'\u201d\u2019)\]]*(?=\s|$)")
_CITATION = re.compile(r"\[\d+\]|\[edit\]|\[citation needed\]")
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


def _dups(items):
    seen, n, chars = set(), 0, 0
    for it in items:
        if it in seen:
            n, chars = n + 1, chars + len(it)
        seen.add(it)
    return n, chars


def _reference(c, text, lang):
    """(annotations, reason, rewritten text or None), every figure computed plainly. The text is
    rewritten (``c4_rewrite``) whenever C4 passed, whatever a later rule says."""
    words = split_words(text, lang)
    n = len(words)
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    mean = sum(len(w) for w in words) / n if n else 0.0
    with_letter = sum(1 for w in words if any(ch.isalpha() for ch in w))
    alpha = 1.0 - (n - with_letter) / n if n and lang not in NO_SPACE_LANGS else 1.0
    punct = sum(1 for ln in lines if ln.endswith(_FW_PUNCT)) / len(lines) if lines else 0.0
    dup_lines, dup_line_chars = _dups(lines)
    ann = {"quality_words": n, "quality_mean_word_length": mean, "quality_alpha_ratio": alpha,
           "quality_line_punct_ratio": punct,
           "quality_dup_line_char_ratio": dup_line_chars / len(text) if text else 0.0}

    def gopher_quality():
        if not c.min_words <= n <= c.max_words:
            return "quality_gopher_word_count"
        if lang not in NO_SPACE_LANGS and not c.min_mean_word_length <= mean <= c.max_mean_word_length:
            return "quality_gopher_mean_word_length"
        symbols = text.count("#") + text.count("...") + text.count("\u2026")
        if n and symbols / n > c.max_symbol_word_ratio:
            return "quality_gopher_symbol_ratio"
        if lines and sum(1 for ln in lines if ln.startswith(_BULLETS)) / len(lines) > c.max_bullet_lines_ratio:
            return "quality_gopher_bullet_lines"
        if lines and sum(1 for ln in lines if ln.endswith(("...", "\u2026"))) / len(lines) > c.max_ellipsis_lines_ratio:
            return "quality_gopher_ellipsis_lines"
        if alpha < c.min_alpha_words_ratio:
            return "quality_gopher_alpha_words"
        sw = stop_words(lang)
        if sw is not None and c.min_stop_words > 0 and sum(1 for w in words if w in sw or w.lower() in sw) < c.min_stop_words:
            return "quality_gopher_stop_words"
        return None

    def gopher_lines():
        paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
        dup_paras, dup_para_chars = _dups(paras)
        if lines and dup_lines / len(lines) > c.max_dup_line_ratio:
            return "quality_gopher_dup_lines"
        if paras and dup_paras / len(paras) > c.max_dup_para_ratio:
            return "quality_gopher_dup_paragraphs"
        if text and dup_line_chars / len(text) > c.max_dup_line_char_ratio:
            return "quality_gopher_dup_line_chars"
        if text and dup_para_chars / len(text) > c.max_dup_para_char_ratio:
            return "quality_gopher_dup_paragraph_chars"
        return None

    def c4():
        if c.c4_lorem_ipsum and "lorem ipsum" in text.lower():
            return "quality_c4_lorem_ipsum", None
        if c.c4_curly_bracket and "{" in text:
            return "quality_c4_curly_bracket", None
        kept, sentences = [], 0
        for ln in lines:
            ln = _CITATION.sub("", ln).rstrip()
            ws = ln.split()
            if (not ln.endswith(_TERMINAL) or ln.endswith("...") or len(ws) < c.c4_min_words_per_line
                    or any(len(w) > c.c4_max_word_length for w in ws)):
                continue
            if "javascript" in ln.lower() or any(p in ln.lower() for p in _POLICY):
                continue
            kept.append(ln)
            sentences += len(_SENTENCE_END.findall(ln))
        if sentences < c.c4_min_sentences:
            return "quality_c4_too_few_sentences", None
        return None, "\n".join(kept)

    def fineweb():
        if not lines or punct < c.fineweb_min_line_punct_ratio:
            return "quality_fineweb_line_punct"
        if sum(1 for ln in lines if len(ln) <= c.fineweb_short_line_chars) / len(lines) > c.fineweb_max_short_line_ratio:
            return "quality_fineweb_short_lines"
        non_nl = len(text) - text.count("\n")
        if non_nl and dup_line_chars / non_nl > c.fineweb_max_dup_line_char_ratio:
            return "quality_fineweb_dup_line_chars"
        if n and text.count("\n") / n > c.fineweb_max_newline_word_ratio:
            return "quality_fineweb_list_ratio"
        return None

    reason, kept_text = None, None
    if c.gopher_quality:
        reason = gopher_quality()
    if reason is None and c.gopher_repetition:
        reason = gopher_lines()
    if reason is None and c.c4:
        reason, kept_text = c4()
    if reason is None and c.fineweb:
        reason = fineweb()
    if reason is None and c.gopher_repetition and len(words) >= 2 and sum(map(len, words)):
        reason = _ngram_rules_by_definition(words, c)
    return ann, reason, (kept_text if c.c4_rewrite else None)


_PROSE = GOOD.split("\n")
TRICKY = [
    ("", "en"), ("   \n\t \n", "en"), ("\n\n\n", None), ("word", "en"),
    # CJK read as characters, with and without their language
    ("河流小镇围绕着一座古老的石桥慢慢发展起来。农民每周六把苹果和粮食带到市场。\n" * 6, "zh"),
    ("川の町は古い石橋のまわりにゆっくりと育った。ABC 123 です…\n" * 8, "ja"),
    ("河流小镇围绕着一座古老的石桥慢慢发展起来。" * 40, "en"),
    ("이 그 저 것 수 등 및 또는 있는 없는 하는 있다 한다 의 를 " * 6, "ko"),
    # lone surrogates, non-ASCII spaces and ASCII separators that str.split also splits on
    ("\n".join(s + " \ud800x \udfff." for s in _PROSE), "en"),
    (GOOD.replace(" ", "\u00a0", 9).replace(" ", "\u3000", 5).replace(" ", "\u2009", 5), "en"),
    (GOOD.replace(" ", "\x1c", 6).replace(" ", "\x1f", 6).replace(" ", "\x0b", 6), "en"),
    # numbers that are no letters, letters beyond the BMP, digits of other scripts
    (GOOD + "\n½ ② Ⅻ ² x² 10³ ٣٤ 𐄇 𝐀𝐁𝐂 — « » “quoted” l’homme 1.5%", "en"),
    (GOOD.replace("the", "½").replace("a ", "𝐀 "), "fr"),
    # very long lines and a word longer than C4 allows
    (" ".join(_PROSE * 60), "en"),
    ("\n".join(_PROSE) + "\n" + "x" * 1500 + " ends here.", "en"),
    # bullet and ellipsis lists, C4's citations, policy lines (one with a Kelvin sign)
    ("\n".join("- " + s for s in _PROSE) + "\n• closing words of the list", "en"),
    ("\n".join("\u2022 " + s for s in _PROSE * 3), "en"),
    ("\n".join(s[:-1] + ("..." if i % 2 else "\u2026") for i, s in enumerate(_PROSE)), "en"),
    ("\n".join(s[:-1] + "...." for s in _PROSE[:3]) + "\n" + "\n".join(_PROSE[3:]), "en"),
    (GOOD.replace(".", ".[1]") + "\nThis site uses coo\u212aies to work.\nRead the Terms of Use here.", "en"),
    (GOOD + "\nJavaScript must be on to see this page properly today.", "en"),
    # lorem ipsum in other cases, and look-alikes that lower() does not turn into it
    (GOOD + "\nLOREM IPSUM dolor sit amet.", "en"), (GOOD + "\nLorem \u0130psum dolor sit amet.", "en"),
    (GOOD + "\nlorem ip\u017fum dolor sit amet.", "en"), (GOOD + "\nLorém ipsum dolor.", "pt"),
    (GOOD + "\n\u201cLorem Ipsum\u201d dolor sit amet.", "en"), ("\u00e9t\u00e9 " + GOOD + " lorem ipsum", "fr"),
    # repeated lines and paragraphs, with odd whitespace between paragraphs
    (GOOD + "\n\n" + GOOD, "en"), (GOOD + "\n \r\n" + GOOD + "\n\x0c\n" + _PROSE[0], "en"),
    ("\n".join(_PROSE + _PROSE[:2]), "en"), ("\n\n".join(_PROSE[:3] * 3), "en"),
    # repeated n-grams on both sides of the Counter/numpy switch
    (" ".join(f"stone bridge word{i}" for i in range(30)), "en"),
    (" ".join((_PROSE[0] + " " + _PROSE[1]).split() * 40), "en"),
    (" ".join(f"the old stone bridge w{i % 7}" for i in range(160)), "en"),
    (" ".join(["the"] * 300 + GOOD.split()), "en"),  # a word seen more than 255 times in a short text
]


def _random_docs(n, seed):
    """Documents stitched from the tricky pieces, prose and repeated phrases."""
    rng = random.Random(seed)
    pieces = [t for t, _ in TRICKY if t] + _PROSE
    vocab = "a the of an river stone bridge apple x ½ 𝐀 é, «a» 1.5 - ... … {} # [1] \u00a0 \ud800".split(" ")
    docs = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 6)):
            r = rng.random()
            if r < 0.4:
                parts.append(rng.choice(pieces))
            elif r < 0.7:
                phrase = " ".join(rng.choice(vocab) for _ in range(rng.randint(2, 6)))
                parts.append(" ".join([phrase] * rng.randint(1, 40)))
            else:
                parts.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 900))))
        docs.append((rng.choice(["\n", "\n\n", " ", "\n \n"]).join(parts), rng.choice(["en", "de", "fr", "zh", "ja", None])))
    return docs


# Permissive settings let the later rules (C4, FineWeb, n-grams) judge the tricky texts too.
_LATER = dict(min_words=0, min_stop_words=0, max_mean_word_length=1000.0, min_mean_word_length=0.0,
              max_symbol_word_ratio=100.0, max_bullet_lines_ratio=1.0, max_ellipsis_lines_ratio=1.0,
              min_alpha_words_ratio=0.0)
CONFIGS = [
    {}, {"c4_rewrite": True}, {**_LATER, "c4_rewrite": True},
    {**_LATER, "c4": False, "fineweb": False, "max_dup_line_ratio": 1.0, "max_dup_para_ratio": 1.0,
     "max_dup_line_char_ratio": 1.0, "max_dup_para_char_ratio": 1.0},
    {**_LATER, "c4": False, "fineweb": False, "max_dup_line_ratio": 1.0, "max_dup_para_ratio": 1.0,
     "max_dup_line_char_ratio": 1.0, "max_dup_para_char_ratio": 1.0, "top_ngram_max": (0.05, 0.05, 0.05),
     "dup_ngram_max": (0.05,) * 6},
    {"max_ellipsis_lines_ratio": 0.0, "max_bullet_lines_ratio": 0.0, "min_words": 0, "min_stop_words": 0},
    {**_LATER, "c4_min_words_per_line": 0, "c4_max_word_length": 8, "c4_min_sentences": 1, "c4_rewrite": True},
]


def _same(a, b):
    """Equal to the last bit (floats by their bits, so 0.0 and -0.0 differ)."""
    return type(a) is type(b) and (a.hex() == b.hex() if isinstance(a, float) else a == b)


@pytest.mark.parametrize("overrides", CONFIGS, ids=[str(i) for i in range(len(CONFIGS))])
def test_filter_matches_the_plain_rules(overrides):
    cfg = QualityConfig(**overrides)
    f = QualityFilter(cfg)
    reasons = set()
    for text, lang in TRICKY + _random_docs(150, seed=11):
        rec, verdict = f.process({"text": text, "lang": lang, "modality": "text"})
        ann, reason, kept_text = _reference(cfg, text, lang)
        where = (overrides, text[:60], lang)
        assert all(_same(rec[k], v) for k, v in ann.items()), (where, {k: (rec[k], v) for k, v in ann.items()})
        assert (None if verdict.keep else verdict.reason) == reason, where
        assert rec["text"] == (kept_text if kept_text is not None else text), where
        reasons.add(reason)
    assert len(reasons) >= 3, reasons  # the texts reach several rules under each config


def test_the_lorem_ipsum_shortcut_holds_for_this_unicode_table():
    """C4 looks for "lorem ipsum" in the lowered UTF-8 bytes: exact only while lower() maps no
    other non-ASCII character to ASCII than U+0130 and U+212A (checked on this Python)."""
    to_ascii = [i for i in range(0x80, sys.maxunicode + 1) if any(ord(ch) < 0x80 for ch in chr(i).lower())]
    assert to_ascii == [0x130, 0x212A]


def test_line_mark_lists_are_single_characters():
    """The bullet, punctuation and terminal rules test a line's first or last character."""
    from winnow.filters import quality_c4, quality_fineweb, quality_gopher

    for marks in (quality_gopher._BULLETS, quality_fineweb._FW_PUNCT, quality_c4._TERMINAL):
        assert all(len(m) == 1 for m in marks)
    assert quality_gopher._BULLETS == _BULLETS and quality_fineweb._FW_PUNCT == _FW_PUNCT
    assert quality_c4._TERMINAL == _TERMINAL
