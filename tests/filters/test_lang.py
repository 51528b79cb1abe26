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
    return LangFilter()


@pytest.mark.parametrize("text,lang", SENTENCES)
def test_detects(detector, text, lang):
    rec, v = detector.process({"text": text, "modality": "text"})
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


def test_batch_and_non_text(detector):
    recs = [{"text": SENTENCES[0][0], "modality": "text"}, {"text": None, "modality": "image", "image": b"x"},
            {"text": SENTENCES[2][0], "modality": "image_text", "image": b"x"}]
    out = detector.process_batch(recs)
    assert [r["lang"] for r, _ in out] == ["en", None, "fr"] and all(v.keep for _, v in out)


@pytest.mark.parametrize("bad,match", [
    (dict(backend="cld3"), "lang.backend"),
    (dict(backend="fasttext"), "lang.model_path"),
    (dict(min_score=2.0), "lang.min_score"),
    (dict(keep=("english",)), "ISO 639-1"),
])
def test_bad_config(bad, match):
    with pytest.raises(ConfigError, match=match):
        LangConfig(**bad)


def test_fasttext_backend_missing_model_file(tmp_path):
    with pytest.raises(ConfigError, match="model_path"):
        LangFilter(LangConfig(backend="fasttext", model_path=str(tmp_path / "lid.176.bin")))
