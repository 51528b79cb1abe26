"""Back-translations that keep pivot-language words are rejected (``augment_untranslated``).

Apertium's generator marks what it could not translate (``*`` unknown word, ``@`` lemma missing
from the bilingual dictionary, ``#`` form it could not generate); the chains keep those marks,
tell them apart from the text's own ``*``, ``#`` and ``@``, and name the marked words that are
not words of the input.
"""

import subprocess

import pytest

from winnow.filters.augment import REASONS, AugmentConfig, Augmenter
from winnow.filters.augment_apertium import (
    Translation,
    hide_literals,
    show_literals,
    split_generation,
    unmark,
    untranslated_words,
)

from .test_augment_apertium import needs_apertium



# -- the pure parts -------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["no marks here", "a *b* #c @d", "**x** ## @@ \\* \\@", "\ue000*\ue001#\ue002@", ""])
def test_hide_literals_round_trips_and_leaves_no_mark_characters(text):
    hidden, key = hide_literals(text)
    assert not any(c in hidden for c in "*#@")
    assert show_literals(hidden, key) == text
    assert (key == "") == (not any(c in text for c in "*#@"))
    assert not any(c in text for c in key)  # the stand-ins are characters the text does not hold


@pytest.mark.parametrize(("stream", "clean", "marked"), [
    # what lt-proc -g writes, and lt-proc -n for the same input (checked with eo-en.autogen.bin):
    # "*" unknown, "#" generation error, "@" untranslated lemma, written escaped ("\@")
    ("the \\@hundo #dog *glorbix is.[]", "the hundo dog glorbix is.[]", ["@hundo", "#dog", "*glorbix"]),
    ("plain text, \\[kept\\] and \\$ escapes.[]", "plain text, \\[kept\\] and \\$ escapes.[]", []),
    ("a\\\\*b", "a\\\\b", ["*b"]),  # an escaped backslash, then a mark
    ("(*ŝnura) *XMLaj.", "(ŝnura) XMLaj.", ["*ŝnura", "*XMLaj"]),
])
def test_unmark_removes_the_generators_marks(stream, clean, marked):
    assert unmark(stream) == (clean, marked)


def test_untranslated_words_are_marked_words_the_input_does_not_have():
    source = "The repertoiremap file and __init__ of yol_ögesi, ZZT0ZZ."
    marked = ["*repertoiremap", "*dosieraj", "*Repertoiremap", "*init__", "*yol_", "*ögesi", "*ZZT0ZZ", "@hundo",
              "#be", "*dosieraj", "*"]
    assert untranslated_words(marked, source) == ("dosieraj", "hundo", "be")
    assert untranslated_words([], source) == ()


def test_split_generation_cuts_after_the_step_that_takes_the_marks_option():
    script = "lt-proc -z 'a.bin' | apertium-tagger -z -g $2 'p' | lt-proc -z $1 'gen.bin' | lt-proc -z -p 'pg.bin'\n"
    assert split_generation(script) == ("lt-proc -z 'a.bin' | apertium-tagger -z -g $2 'p' | lt-proc -z $1 'gen.bin'",
                                        "lt-proc -z -p 'pg.bin'")
    last = "lt-proc -z 'a.bin' | lt-proc -z $1 'gen.bin'\n"
    assert split_generation(last) == (last, None)
    assert split_generation("sed -u s/o/0/g\n") == ("sed -u s/o/0/g\n", None)


class _Leaky:
    """A back-translator that reports one untranslated word for texts that contain "file"."""

    def backtranslate(self, texts):
        return [Translation(t.replace("file", "dosieraj"), ("dosieraj",)) if "file" in t
                else Translation(t.replace("starts", "begins")) for t in texts]


def test_the_augmenter_rejects_results_with_untranslated_words():
    assert "augment_untranslated" in REASONS
    aug = Augmenter(AugmentConfig(fraction=1.0, min_similarity=10), (), {"spa": _Leaky()})
    recs = [{"id": "a", "text": "The map file starts with a header."},
            {"id": "b", "text": "The map starts with a header."}]
    (leak,), (ok,) = aug.augment(recs)
    assert leak.reason == "augment_untranslated" and leak.params == {"pivot": "spa", "untranslated": ["dosieraj"]}
    assert ok.reason is None and ok.text == "The map begins with a header." and ok.params == {"pivot": "spa"}
    # the other checks come first: an identical or term-losing result keeps its reason
    assert aug.judge("x y", "x  y", untranslated=("z",))[0] == "augment_identical"


# -- with Apertium ------------------------------------------------------------------------------------

def _apertium(cmd, text):
    return subprocess.run(["bash", "-c", cmd], input=text, capture_output=True, text=True, check=True).stdout.strip()


def _backtranslator(pivot):
    from winnow.filters.augment_translate import APERTIUM_PIVOTS, apertium_backtranslator, apertium_modes

    if not set(APERTIUM_PIVOTS[pivot][:2]) <= apertium_modes():
        pytest.skip(f"the Apertium pair of {pivot} is not installed")
    return apertium_backtranslator(pivot)


@needs_apertium
def test_a_pivot_word_that_comes_back_untranslated_is_named():
    bt = _backtranslator("epo")
    # en-eo makes "file" an adjective ("dosieraj") that eo-en does not know; "repertoiremap" is
    # unknown both ways but is the input's own word; "XMLaj" is XML with an Esperanto ending
    texts = ["The repertoiremap file starts with a header.", "The dog eats the bone in the garden.",
             "He said *important* things #1 @home about XML documents."]
    out = bt.backtranslate(texts)
    assert "dosieraj" in out[0] and out[0].untranslated == ("dosieraj",)
    assert out[1].untranslated == ()
    assert out[2].untranslated == ("XMLaj",)  # the text's own *, # and @ are not marks
    assert "*important*" in out[2] and "#1" in out[2] and "@home" in out[2]
    bt.close()


@needs_apertium
@pytest.mark.parametrize("pivot", ["spa", "epo"])
def test_texts_with_marks_equal_apertium_u(pivot):
    from winnow.filters.augment_translate import APERTIUM_PIVOTS

    bt = _backtranslator(pivot)
    fwd, bwd, _ = APERTIUM_PIVOTS[pivot]
    texts = ["I have an elefantox and a ZZT0ZZ here.",  # post-generation: "an" before an unknown word
             "Use `**` and ## and @@ in *emphasis*, then a\\*b and \\@x.",
             "The repertoiremap file starts with a header."]
    assert bt.forward.translate(texts) == [_apertium(f"apertium -u {fwd}", t) for t in texts]
    assert bt.backtranslate(texts) == [_apertium(f"apertium -u {fwd} | apertium -u {bwd}", t) for t in texts]
    bt.close()


@needs_apertium
def test_the_augment_stage_rejects_the_untranslated_and_keeps_the_rest():
    bt = _backtranslator("epo")
    recs = [{"id": "a", "text": "The repertoiremap file starts with a header."},
            {"id": "b", "text": "She gave them to him because he asked for the keys."}]
    aug = Augmenter(AugmentConfig(fraction=1.0, pivots=("epo",)), (), {"epo": bt})
    (leak,), (ok,) = aug.augment(recs)
    assert leak.reason == "augment_untranslated" and leak.params["untranslated"] == ["dosieraj"]
    assert ok.reason is None and "untranslated" not in ok.params
    bt.close()
