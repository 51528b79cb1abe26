"""Table-driven tests of the pure normalize stage."""

import pytest

from winnow.filters.base import KEEP, drop
from winnow.filters.normalize import NormalizeConfig, Normalizer, normalize_text
from winnow.errors import ConfigError


@pytest.mark.parametrize(
    "text, cfg, expected",
    [
        ("plain ascii", NormalizeConfig(), "plain ascii"),
        ("cafe\u0301", NormalizeConfig(), "caf\u00e9"),  # NFC composes
        ("\ufb01le", NormalizeConfig(form="NFKC"), "file"),  # NFKC folds the ligature
        ("\ufb01le", NormalizeConfig(), "\ufb01le"),  # NFC keeps it
        ("a\x00b\x07c\x1bd\x7fe\x85f", NormalizeConfig(), "a b c d e\nf"),  # C0, DEL, C1 replaced; NEL is a line break
        ("tab\tand\nnewline", NormalizeConfig(), "tab\tand\nnewline"),  # kept
        ("crlf\r\nline\rend", NormalizeConfig(), "crlf\nline\nend"),
        ("a\x00b", NormalizeConfig(strip_control=False), "a\x00b"),
        ("a   b\n\n\n\nc", NormalizeConfig(collapse_whitespace=True), "a b\n\nc"),
        ("bad \ud800 surrogate", NormalizeConfig(), "bad \ufffd surrogate"),
    ],
)
def test_normalize_text(text, cfg, expected):
    assert normalize_text(text, cfg) == expected


@pytest.mark.parametrize(
    "record, expected",
    [
        ({"modality": "text", "text": "hello"}, KEEP),
        ({"modality": "text", "text": ""}, drop("normalize_empty_text")),
        ({"modality": "text", "text": " \n\t "}, drop("normalize_empty_text")),
        ({"modality": "text", "text": "\x00\x01"}, drop("normalize_empty_text")),  # blank once replaced
        ({"modality": "text", "text": None}, drop("normalize_empty_text")),
        ({"modality": "image", "text": None, "image": b"\x89PNG"}, KEEP),
        ({"modality": "image_text", "text": "", "image": b"\x89PNG"}, KEEP),  # empty caption is fine
        ({"modality": "image", "text": None, "image": b""}, drop("normalize_empty_record")),
        ({"modality": "audio", "text": None, "audio": b""}, drop("normalize_empty_record")),
    ],
)
def test_normalizer_verdicts(record, expected):
    out, verdict = Normalizer().process(dict(record))
    assert verdict == expected
    assert verdict.reason in ("",) + Normalizer.reasons


def test_normalizer_rewrites_text_in_record():
    out, verdict = Normalizer(NormalizeConfig(form="NFKC")).process({"modality": "text", "text": "\ufb01\x00x"})
    assert out["text"] == "fi x" and verdict.keep  # NFKC folds the ligature, NUL becomes a space


def test_drop_empty_off_keeps_empty_text():
    _, verdict = Normalizer(NormalizeConfig(drop_empty=False)).process({"modality": "text", "text": ""})
    assert verdict.keep


def test_bad_form_is_a_config_error():
    with pytest.raises(ConfigError, match="normalize.form"):
        NormalizeConfig(form="NFX")  # type: ignore[arg-type]
