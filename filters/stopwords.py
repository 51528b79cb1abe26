"""Small stop-word sets per language and language-aware word splitting for the quality rules.

The sets are short lists of the most frequent function words of each language, written for
this project (not copied from another list). The Gopher stop-word rule only asks whether a
document has at least two of them, so a short list of very frequent words is what it needs.
English uses exactly the eight words of the Gopher paper for that rule.
"""

from __future__ import annotations

import re

__all__ = ["STOP_WORDS", "GOPHER_EN_STOP_WORDS", "NO_SPACE_LANGS", "split_words", "stop_words"]

#: The Gopher paper's English stop words ("the, be, to, of, and, that, have, with").
GOPHER_EN_STOP_WORDS = frozenset("the be to of and that have with".split())

_RAW = {
    "en": "the be to of and that have with a in is it for on as are this by not or",
    "de": "der die das und ist nicht ein eine zu den von mit sich des auf für im dem werden wird auch",
    "fr": "le la les de des et est un une du en que qui dans pour pas par sur au ne se",
    "es": "el la los las de del y que en un una es por con para no se su al lo",
    "it": "il la le di del e che un una è per non con si da in gli dei al",
    "pt": "o a os as de do da e que em um uma é para não com se por dos das",
    "nl": "de het een en van is dat in te op niet met zijn voor die er aan wordt",
    "sv": "och att det som en är av för med på inte den till har om ett kan",
    "da": "og at det som en er af for med på ikke den til har til et kan de",
    "no": "og at det som en er av for med på ikke den til har om et kan",
    "fi": "ja on ei se että tai kun jos ovat myös joka mutta tämä voi sen",
    "pl": "i w na nie z się do jest to że o jak po co ta od",
    "cs": "a v se na je že to s z o do pro jako by není i",
    "sk": "a v sa na je že to s z o do pre ako by nie",
    "hr": "i u je se na da za od ne su s a ili kao to",
    "sl": "in v je se na da za ne so z ali kot to pa",
    "sr": "и у је се на да за од не су с а или као то i u je se na da za od ne su",
    "ru": "и в не на что с по это как а то к из для он быть",
    "uk": "і в не на що з до це як а та для є у від",
    "tr": "ve bir bu da de için ile ne çok olan gibi daha ama en",
    "ro": "și în de la a un o este care cu nu pe să se din",
    "hu": "a az és hogy nem is egy van meg de ez csak ha",
    "id": "dan yang di ini itu dengan untuk tidak dari dalam akan pada ke adalah",
    "ko": "이 그 저 것 수 등 및 또는 있는 없는 하는 있다 한다 의 를",
}

#: Stop-word sets by ISO 639-1 code; languages without one skip the stop-word rule.
STOP_WORDS: dict[str, frozenset[str]] = {k: frozenset(v.split()) for k, v in _RAW.items()}

#: Languages written without spaces between words: one CJK character counts as one word.
NO_SPACE_LANGS = frozenset({"zh", "ja", "th", "lo", "my", "km"})

_CJK_WORDS = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\s\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def split_words(text: str, lang: str | None) -> list[str]:
    """Words of ``text``: whitespace tokens, or for ``zh``/``ja``/... single CJK characters
    plus runs of other non-space characters."""
    if lang in NO_SPACE_LANGS:
        return _CJK_WORDS.findall(text)
    return text.split()


def stop_words(lang: str | None) -> frozenset[str] | None:
    """The stop-word set for the Gopher rule (``None``: no list, the rule is skipped)."""
    if lang is None or lang == "en":
        return GOPHER_EN_STOP_WORDS
    return STOP_WORDS.get(lang)
