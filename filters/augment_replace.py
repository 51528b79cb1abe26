"""Synonym and entity replacement, leaving stop words, code spans and protected terms alone.

Synonyms come from WordNet's dict files read offline (Debian ``wordnet-base``). A word is
eligible when it is lower case, not a stop word, in WordNet in its base form under exactly one
part of speech (so the replacement has the same part of speech without a tagger, and no
inflection is needed); it is replaced by a single-word lemma of its most frequent sense that has one (of its
first two senses).

Entities (numbers, ISO dates, e-mail addresses, IPv4 addresses and name-like capitalised
pairs; e-mail and IP from the PII detectors) are swapped for surrogates of the same type, the
same surrogate for every occurrence of a value in a record.
"""

from __future__ import annotations

import os
import random
import re
from typing import Sequence

from winnow.errors import ConfigError
from winnow.filters.stopwords import stop_words

__all__ = ["SynonymReplacer", "EntityReplacer", "WordNet"]

_POS = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
_SENSES = 2  # senses looked at, most frequent first
_WORD = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")


class WordNet:
    """Lemma -> (part of speech, first synset's single-word lemmas), from WordNet's dict files.

    Raises:
        ConfigError: the directory lacks WordNet's index/data files (names the package).
    """

    @staticmethod
    def check(directory: str) -> None:
        """Raise :class:`ConfigError` (naming the package) unless ``directory`` has WordNet's
        files; without reading them (what the stage checks before a run)."""
        for name in ("index", "data"):
            for pos in _POS:
                if not os.path.isfile(os.path.join(directory, f"{name}.{pos}")):
                    raise ConfigError("augment.wordnet", directory, f"WordNet's {name}.{pos} in that directory",
                                      "apt-get install wordnet-base (files in /usr/share/wordnet)")

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.check(directory)
        self._first: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
        for pos in _POS:
            with open(os.path.join(directory, f"index.{pos}"), encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if line.startswith(" "):
                        continue
                    parts = line.split()
                    n_syn = int(parts[2])
                    offsets = tuple(int(o) for o in parts[len(parts) - n_syn:][:_SENSES])
                    self._first.setdefault(parts[0], []).append((pos, offsets))
        self._data = {pos: open(os.path.join(directory, f"data.{pos}"), "rb") for pos in _POS}
        self._cache: dict[str, tuple[str, ...]] = {}

    def synonyms(self, word: str) -> tuple[str, ...]:
        """Single-word synonyms of ``word`` (lower case) when it has exactly one part of speech."""
        hit = self._cache.get(word)
        if hit is not None:
            return hit
        entries = self._first.get(word)
        out: tuple[str, ...] = ()
        if entries is not None and len(entries) == 1:
            pos, offsets = entries[0]
            fh = self._data[pos]
            for offset in offsets:  # the most frequent sense that has a single-word synonym
                fh.seek(offset)
                fields = fh.readline().decode("utf-8", "replace").split()
                n = int(fields[3], 16)
                lemmas = [re.sub(r"\(.*\)$", "", fields[4 + 2 * i]) for i in range(n)]
                out = tuple(dict.fromkeys(w for w in lemmas if w.isalpha() and w.islower() and w != word))
                if out:
                    break
        self._cache[word] = out
        return out


class SynonymReplacer:
    """Replaces a bounded share of eligible words with WordNet synonyms.

    Args:
        wordnet_dir: WordNet's dict directory.
        share: share of eligible words replaced (at least one when any is eligible).
    """

    def __init__(self, wordnet_dir: str, share: float) -> None:
        self.wordnet = WordNet(wordnet_dir)
        self.share = share
        self._stop = stop_words("en") or frozenset()

    def replace(self, text: str, protected: Sequence[tuple[int, int]], seed: int) -> tuple[str, list[list[str]]]:
        """The text with synonyms in, and the ``[word, synonym]`` pairs replaced."""
        cands = []
        for m in _WORD.finditer(text):
            w = m.group(0)
            if len(w) < 3 or not w.islower() or w in self._stop:
                continue
            if any(m.start() < e and s < m.end() for s, e in protected):
                continue
            syn = self.wordnet.synonyms(w)
            if syn:
                cands.append((m.start(), m.end(), w, syn))
        if not cands:
            return text, []
        rng = random.Random(seed)
        k = max(1, round(self.share * len(cands)))
        chosen = sorted(rng.sample(range(len(cands)), min(k, len(cands))))
        out, last, changed = [], 0, []
        for i in chosen:
            s, e, w, syn = cands[i]
            new = syn[rng.randrange(len(syn))]
            out.append(text[last:s])
            out.append(new)
            last = e
            changed.append([w, new])
        out.append(text[last:])
        return "".join(out), changed


_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.]?\d)")
_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_NAME = re.compile(r"(?<=[a-z,;] )[A-Z][a-z]{2,} [A-Z][a-z]{2,}\b")
_FIRST = ("Alex", "Maria", "Sam", "Priya", "Jonas", "Aiko", "Omar", "Lena", "Diego", "Nora")
_LAST = ("Smith", "Garcia", "Kowalski", "Tanaka", "Okafor", "Larsen", "Novak", "Silva", "Weber", "Khan")


class EntityReplacer:
    """Swaps numbers, dates, e-mail and IPv4 addresses and name-like pairs for same-type surrogates."""

    def _spans(self, text: str) -> list[tuple[int, int, str]]:
        from winnow.filters.pii_detectors import find_pii

        spans = [(s.start, s.end, s.type) for s in find_pii(text, ("email", "ipv4"))]
        for rx, kind in ((_DATE, "date"), (_NAME, "name"), (_NUMBER, "number")):
            for m in rx.finditer(text):
                if not any(m.start() < e and s < m.end() for s, e, _ in spans):
                    spans.append((m.start(), m.end(), kind))
        return sorted(spans)

    @staticmethod
    def _surrogate(value: str, kind: str, rng: random.Random) -> str:
        if kind == "email":
            return f"{rng.choice(_FIRST).lower()}.{rng.choice(_LAST).lower()}@example.org"
        if kind == "ipv4":
            return f"192.0.2.{rng.randint(1, 254)}"  # TEST-NET-1 (RFC 5737)
        if kind == "date":
            return f"{rng.randint(1990, 2030):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        if kind == "name":
            return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        # number: same digit count and decimals, a different value
        whole, _, frac = value.partition(".")
        for _ in range(8):
            lo = 10 ** (len(whole) - 1) if len(whole) > 1 else 0
            new = str(rng.randint(lo, 10 ** len(whole) - 1))
            if frac:
                new += "." + "".join(str(rng.randint(0, 9)) for _ in frac)
            if new != value:
                return new
        return new

    def replace(self, text: str, protected: Sequence[tuple[int, int]], seed: int) -> tuple[str, list[list[str]]]:
        """The text with surrogates in, and the ``[type, value, surrogate]`` triples used."""
        rng = random.Random(seed)
        table: dict[tuple[str, str], str] = {}
        out, last, changed = [], 0, []
        for s, e, kind in self._spans(text):
            if any(s < pe and ps < e for ps, pe in protected):
                continue
            value = text[s:e]
            key = (kind, value)
            if key not in table:
                table[key] = self._surrogate(value, kind, rng)
                changed.append([kind, value, table[key]])
            out.append(text[last:s])
            out.append(table[key])
            last = e
        out.append(text[last:])
        return "".join(out), changed
