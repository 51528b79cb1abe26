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


FAST_CASES = [
    # Two stop-word hits for one language settle it without lingua.
    ("Return the value of the attribute.", "en"),
    # A Chinese man-page line with English option words is Chinese (a Han character weighs three letters).
    ("/var/run/utmp 当前登录会话的列表。 /var/log/wtmp 先前的登录会话列表。 Note: in that case", "zh"),
    ("データベースを構築中に次の警告メッセージが表示されることがあります。 <filename>: whatis parse failed", "ja"),
    # Split evidence (Danish and Norwegian share their stop words) goes to lingua.
    ("Hvis $MANPATH er angivet, så vil manpath vise dets indhold og udstede en advarsel.", "da"),
]


@pytest.mark.parametrize("text,lang", FAST_CASES)
def test_fast_path_cases(detector, text, lang):
    assert detector.detect([text])[0][0] == lang


def test_fast_path_agrees_with_every_candidate_on_real_text():
    """The stop-word and script shortcuts pick lingua's own answer on real multilingual text."""
    from winnow.pipeline.demo_text import clean_records

    texts = [r["text"] for r in clean_records(600_000, 3, "/usr/share/man")]
    assert len(texts) > 500
    fast = [lang for lang, _ in LangFilter().detect(texts)]
    full = [lang for lang, _ in LangFilter(LangConfig(fast_path=False)).detect(texts)]
    agree = sum(a == b for a, b in zip(fast, full)) / len(texts)
    print(f"fast path agrees with the full candidate list on {agree:.3f} of {len(texts)} texts")
    assert agree >= 0.95
    assert len(set(full)) >= 8  # the sample really is multilingual
