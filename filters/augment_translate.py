"""Translators for back-translation: Apertium (rule-based, offline) and a local seq2seq model.

Both take a list of texts and return one translation per text, in order. Apertium runs each
mode as a module chain started once per process and kept running in null-flush mode
(:mod:`winnow.filters.augment_apertium`; idle chains are shared within the process):
starting a mode is most of its cost for short texts, and in null-flush mode every module
resets at the end of each text, so a text's translation is the same whatever the chain
translated before (byte-identical output on every runner). An English -> pivot -> English
round trip runs its two chains at the same time.
"""

from __future__ import annotations

import os
import shutil
from typing import Callable, Protocol, Sequence

from winnow.errors import ConfigError
from winnow.filters.augment_apertium import ApertiumRoundTrip, acquire, apertium_datadir, close_idle, release

__all__ = [
    "Translator", "ApertiumTranslator", "Seq2SeqTranslator", "BackTranslator", "APERTIUM_PIVOTS",
    "apertium_backtranslator", "apertium_modes",
]

#: pivot -> (English -> pivot mode, pivot -> English mode, Debian package)
APERTIUM_PIVOTS: dict[str, tuple[str, str, str]] = {
    "spa": ("eng-spa", "spa-eng", "apertium-eng-spa"),
    "cat": ("eng-cat", "cat-eng", "apertium-eng-cat"),
    "epo": ("en-eo", "eo-en", "apertium-eo-en"),
}


class Translator(Protocol):
    """Anything with ``name`` and ``translate(texts) -> translations`` (same length, in order)."""

    name: str

    def translate(self, texts: Sequence[str]) -> list[str]: ...


def apertium_modes() -> frozenset[str]:
    """The Apertium modes installed here (empty when ``apertium`` is not on PATH): the mode
    files in Apertium's data directory, which ``apertium -l`` lists and the kept chains read."""
    if shutil.which("apertium") is None:
        return frozenset()
    try:
        names = os.listdir(os.path.join(apertium_datadir(), "modes"))
    except OSError:
        return frozenset()
    return frozenset(n[:-5] for n in names if n.endswith(".mode"))


class ApertiumTranslator:
    """One Apertium mode (``eng-spa``, ``spa-eng`` ...), as ``apertium -u MODE`` translates each
    text alone, through a module chain kept running in null-flush mode
    (:class:`~winnow.filters.augment_apertium.ApertiumChain`): each call borrows an idle chain
    of this process (or starts one) and hands it back after.

    Args:
        mode: the Apertium mode.
    """

    def __init__(self, mode: str) -> None:
        self.name = f"apertium:{mode}"
        self.mode = mode

    def translate(self, texts: Sequence[str]) -> list[str]:
        if not texts:
            return []
        chain = acquire(self.mode)
        try:
            return chain.translate(texts)
        finally:
            release(chain)

    def round_trip(self, back: ApertiumTranslator, texts: Sequence[str],
                   each: Callable[[int, list[str]], None] | None = None) -> list[str]:
        """``back.translate(self.translate(texts))``, with both chains working at the same time
        (``each``: see :meth:`ApertiumRoundTrip.run`)."""
        if not texts:
            return []
        first, second = acquire(self.mode), acquire(back.mode)
        try:
            return ApertiumRoundTrip(first, second).run(texts, each)
        finally:
            release(first)
            release(second)

    def close(self) -> None:
        """Stop this process's idle chains of the mode (the next call starts one again)."""
        close_idle([self.mode])


class Seq2SeqTranslator:
    """A MarianMT / NLLB-style model from a local directory, with ``transformers`` (no hub).

    Args:
        path: a directory saved with ``save_pretrained`` (model and tokenizer).
        batch_size: texts per ``generate`` call.
        max_length: generated tokens at most.
        target_lang: for multilingual models (NLLB, M2M), the forced first token's language code.
    """

    def __init__(self, path: str, batch_size: int = 16, max_length: int = 256, target_lang: str = "") -> None:
        self.name = f"seq2seq:{os.path.basename(os.path.normpath(path))}"
        self.path = path
        self._batch_size = batch_size
        self._max_length = max_length
        self._target_lang = target_lang
        self._model = None
        self._tok = None

    @staticmethod
    def check(path: str, key: str) -> None:
        """Raise :class:`ConfigError` unless ``transformers`` imports and ``path`` holds a model."""
        try:
            import transformers  # noqa: F401
        except ImportError as exc:
            raise ConfigError(key, path, "the Python package 'transformers' installed",
                              "pip install 'winnow[augment]'") from exc
        if not path or not os.path.isfile(os.path.join(path, "config.json")):
            raise ConfigError(key, path, "a local model directory with config.json (saved with save_pretrained)")

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        torch.manual_seed(0)
        self._tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self._model = AutoModelForSeq2SeqLM.from_pretrained(self.path, local_files_only=True).eval()
        limit = getattr(self._model.config, "max_position_embeddings", None)
        if limit:  # generating past the position table fails; inputs are truncated to it too
            self._max_length = min(self._max_length, int(limit))

    def translate(self, texts: Sequence[str]) -> list[str]:
        import torch

        if self._model is None:
            self._load()
        kw = {}
        if self._target_lang:
            kw["forced_bos_token_id"] = self._tok.convert_tokens_to_ids(self._target_lang)
        out: list[str] = []
        for i in range(0, len(texts), self._batch_size):
            enc = self._tok(list(texts[i:i + self._batch_size]), return_tensors="pt", padding=True,
                            truncation=True, max_length=self._max_length)
            with torch.inference_mode():
                gen = self._model.generate(**enc, max_length=self._max_length, num_beams=1, do_sample=False, **kw)
            out.extend(self._tok.batch_decode(gen, skip_special_tokens=True))
        return out


class BackTranslator:
    """English -> pivot -> English with two translators."""

    #: ``backtranslate`` takes ``each`` (the Augmenter judges results while the rest is translated)
    streams_results = True

    def __init__(self, forward: Translator, backward: Translator, pivot: str) -> None:
        self.forward = forward
        self.backward = backward
        self.pivot = pivot

    def backtranslate(self, texts: Sequence[str], each: Callable[[int, list[str]], None] | None = None) -> list[str]:
        """The round trip of each text, in order; ``each(start, results)`` (optional) gets the
        results as they arrive (Apertium: while the rest is translated; others: all at the end)."""
        if not texts:
            return []
        if isinstance(self.forward, ApertiumTranslator) and isinstance(self.backward, ApertiumTranslator):
            return self.forward.round_trip(self.backward, texts, each)
        out = self.backward.translate(self.forward.translate(texts))
        if each is not None:
            each(0, out)
        return out

    def close(self) -> None:
        """Stop what the translators keep running (Apertium chains); a later call restarts them."""
        for t in (self.forward, self.backward):
            stop = getattr(t, "close", None)
            if stop is not None:
                stop()


def apertium_backtranslator(pivot: str) -> BackTranslator:
    """The Apertium round trip through ``pivot`` (``spa``, ``cat`` or ``epo``).

    Raises:
        ConfigError: the pivot is unknown, ``apertium`` is not installed, or the pair's package is
            missing (the message names the Debian package).
    """
    if pivot not in APERTIUM_PIVOTS:
        raise ConfigError("augment.pivots", pivot, f"one of {', '.join(APERTIUM_PIVOTS)} for the apertium backend")
    fwd, bwd, pkg = APERTIUM_PIVOTS[pivot]
    modes = apertium_modes()
    if not modes:
        raise ConfigError("augment.backend", "apertium", "the 'apertium' program on PATH",
                          f"apt-get install apertium {pkg} (or run make install as root)")
    if shutil.which("apertium-wblank-mode") is None:  # Apertium >= 3.8 ships it; the kept chains need it
        raise ConfigError("augment.backend", "apertium", "Apertium 3.8 or later (the program apertium-wblank-mode)",
                          "apt-get install apertium (Debian 12 or later)")
    missing = [m for m in (fwd, bwd) if m not in modes]
    if missing:
        raise ConfigError("augment.pivots", pivot, f"Apertium modes {', '.join(missing)} installed",
                          f"apt-get install {pkg}")
    return BackTranslator(ApertiumTranslator(fwd), ApertiumTranslator(bwd), pivot)
