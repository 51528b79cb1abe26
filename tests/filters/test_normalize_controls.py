"""normalize replaces control characters instead of deleting them, and counts a text that
shows nothing (only whitespace and zero-width/format characters) as empty."""

import pytest

from winnow.filters.base import drop
from winnow.filters.normalize import NormalizeConfig, Normalizer, normalize_text


@pytest.mark.parametrize(
    "text, expected",
    [
        # line and page breaks that are not "\n" become "\n"
        ("end of page one.\x0cStart", "end of page one.\nStart"),  # form feed
        ("first line\x0bsecond line", "first line\nsecond line"),  # VT: Word's soft line break
        ("line one\x85line two", "line one\nline two"),  # NEL
        ("line one\u2028line two", "line one\nline two"),  # LINE SEPARATOR
        ("para one\u2029para two", "para one\npara two"),  # PARAGRAPH SEPARATOR
        # every other C0/C1 control (and DEL) becomes a space
        ("hello\x00world", "hello world"),
        ("field1\x1ffield2", "field1 field2"),  # unit separator
        ("bell\x07esc\x1bdel\x7fcsi\x9bend", "bell esc del csi end"),
        ("a\x00b\x07c\x1bd\x7fe\x85f", "a b c d e\nf"),
        # kept as before: tab, "\n", CRLF/CR folding, surrogates
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("crlf\r\nline\rend", "crlf\nline\nend"),
        ("bad \ud800 surrogate", "bad \ufffd surrogate"),
    ],
)
def test_controls_are_replaced_not_deleted(text, expected):
    assert normalize_text(text, NormalizeConfig()) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("hello\x00\x00world", "hello world"),  # the spaces collapse
        ("a\x0c\x0c\x0c\x0cb", "a\n\nb"),  # page breaks are newlines, 3+ become 2
        ("a \x1f b", "a b"),
    ],
)
def test_replaced_controls_then_collapse(text, expected):
    assert normalize_text(text, NormalizeConfig(collapse_whitespace=True)) == expected


def test_strip_control_off_keeps_controls():
    text = "a\x0cb\x00c\u2028d"
    assert normalize_text(text, NormalizeConfig(strip_control=False)) == text


@pytest.mark.parametrize(
    "text",
    [
        "\u200b\u200c\u200d\ufeff",  # zero-width space, non-joiner, joiner, BOM
        " \u200b\n\u2060 ",  # with whitespace and word joiner around
        "\u200e\u200f\u00ad",  # bidi marks, soft hyphen
        "\x0c\x0b\u2028",  # only line breaks
    ],
)
def test_text_that_shows_nothing_is_empty(text):
    _, verdict = Normalizer().process({"modality": "text", "text": text})
    assert verdict == drop("normalize_empty_text")


@pytest.mark.parametrize("text", ["\u200bx", "zero\u200bwidth", "\ufeffhello", "\u200d\U0001f600"])
def test_visible_text_with_zero_width_characters_is_kept(text):
    _, verdict = Normalizer().process({"modality": "text", "text": text})
    assert verdict.keep


def test_zero_width_only_is_empty_even_without_strip_control():
    cfg = NormalizeConfig(strip_control=False, form="none")
    _, verdict = Normalizer(cfg).process({"modality": "text", "text": "\u200b\ufeff"})
    assert verdict == drop("normalize_empty_text")


def test_zero_width_caption_of_an_image_is_not_a_drop():
    _, verdict = Normalizer().process({"modality": "image_text", "text": "\u200b", "image": b"\x89PNG"})
    assert verdict.keep
