"""A labelled language-id set of real UI strings, read at run time from the machine's gettext catalogs.

Programs installed here ship their interface strings translated (``/usr/share/locale/<lang>/
LC_MESSAGES/<domain>.mo``): menu labels, buttons, error messages, one-line help. Those are
real short texts in the languages of :data:`winnow.demo.langid_evalset.LANGS`, written by
translators (not by winnow's developers and not committed here), so they test language id
on the problem it meets in the wild rather than on phrases written to test it. English comes
from the catalogs' source strings (msgids).

Cleaning, per string: gettext contexts dropped, mnemonic markers (``_File``, ``&Open``) and
format directives (``%s``, ``%(name)s``, ``{0}``) and markup tags removed, whitespace runs as one
space. A translation equal to its English source (untranslated) is skipped, as are strings with
fewer than :data:`MIN_LETTERS` letters or :data:`MAX_LETTERS` or more (long texts take another
path in ``lang``). Per language the strings are deduplicated and a seeded sample is drawn.
Labels are noisy where translators kept English words (product names, units); the figures
compare detectors on the same strings.
"""

from __future__ import annotations

import gettext
import os
import random
import re

from winnow.demo.langid_evalset import LANGS

__all__ = ["DOMAINS", "catalog_eval_set", "catalog_strings"]

#: Catalogs read, when installed: desktop and system programs with many short UI strings.
DOMAINS: tuple[str, ...] = ("gtk20", "glib20", "gdk-pixbuf", "at-spi2-core", "coreutils", "Linux-PAM",
                            "PackageKit", "shared-mime-info", "software-properties", "xdg-user-dirs")
#: Locale directory of each language where it is not the ISO 639-1 code.
_LOCALE = {"zh": "zh_CN"}
MIN_LETTERS = 3
MAX_LETTERS = 120
_DIRECTIVE = re.compile(r"%(?:\(\w+\)|\d+\$)?[-+ 0#']*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|L|z|j|t|I64)?[a-zA-Z%]"
                        r"|\{[^{}]*\}|<[^<>]*>|&[a-z]+;")
_MNEMONIC = re.compile(r"(?<![\w&])[_&](?=\w)|\(_?[A-Za-z]\)")


def _clean(s: str) -> str:
    s = _DIRECTIVE.sub(" ", s)
    s = _MNEMONIC.sub("", s)
    return " ".join(s.split())


def _letters(s: str) -> int:
    return sum(map(str.isalpha, s))


def catalog_strings(lang: str, root: str = "/usr/share/locale", domains: tuple[str, ...] = DOMAINS) -> list[str]:
    """The cleaned, deduplicated UI strings of ``lang`` in the installed catalogs, sorted."""
    out: set[str] = set()
    for dom in domains:
        loc = "de" if lang == "en" else _LOCALE.get(lang, lang)  # English: any catalog's msgids
        path = os.path.join(root, loc, "LC_MESSAGES", f"{dom}.mo")
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as fh:
            try:
                catalog = gettext.GNUTranslations(fh)._catalog  # type: ignore[attr-defined]
            except (OSError, ValueError):
                continue
        for key, value in catalog.items():
            src = key[0] if isinstance(key, tuple) else key
            if not src or not isinstance(value, str):
                continue
            src = src.split("\x04")[-1]
            text = src if lang == "en" else value
            if lang != "en" and _clean(value) == _clean(src):
                continue  # untranslated
            text = _clean(text)
            if MIN_LETTERS <= _letters(text) < MAX_LETTERS:
                out.add(text)
    return sorted(out)


def catalog_eval_set(per_lang: int = 150, seed: int = 0, root: str = "/usr/share/locale",
                     langs: tuple[str, ...] = LANGS) -> list[tuple[str, str]]:
    """``(text, lang)``: up to ``per_lang`` seeded strings per language (empty where the machine
    has no catalogs of that language)."""
    rng = random.Random(f"winnow-catalogs-{seed}")
    out = []
    for lang in langs:
        strings = catalog_strings(lang, root)
        rng.shuffle(strings)
        out += [(s, lang) for s in strings[:per_lang]]
    rng.shuffle(out)
    return out
