"""Translators for back-translation: Apertium (rule-based, offline) and a local seq2seq model.

Both take a list of texts and return one translation per text, in order. Apertium is run
as one process per batch (process start-up is most of its cost for short texts): the texts
are joined with a separator paragraph that Apertium passes through, and a batch whose
separators do not come back intact is split in halves until they do.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Protocol, Sequence

from winnow.errors import ConfigError

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

_SEP = "ZZSEPZZ."
_SEP_JOIN = f"\n\n{_SEP}\n\n"
_SEP_SPLIT = re.compile(r"\s*\n\s*ZZSEPZZ\.?\s*\n?", re.IGNORECASE)


class Translator(Protocol):
    """Anything with ``name`` and ``translate(texts) -> translations`` (same length, in order)."""

    name: str

    def translate(self, texts: Sequence[str]) -> list[str]: ...


def apertium_modes() -> frozenset[str]:
    """The Apertium modes installed here (empty when ``apertium`` is not on PATH)."""
    exe = shutil.which("apertium")
    if exe is None:
        return frozenset()
    try:
        out = subprocess.run([exe, "-l"], capture_output=True, text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(line.strip() for line in out.splitlines() if line.strip())


class ApertiumTranslator:
    """One Apertium mode (``eng-spa``, ``spa-eng`` ...), ``apertium -u`` (no unknown-word marks).

    Args:
        mode: the Apertium mode.
        max_chars: characters per process call; larger batches are sent in several calls.
    """

    def __init__(self, mode: str, max_chars: int = 200_000) -> None:
        self.name = f"apertium:{mode}"
        self.mode = mode
        self._max_chars = max_chars
        self._exe = shutil.which("apertium") or "apertium"
        self.calls = 0

    def _run(self, texts: Sequence[str]) -> list[str] | None:
        # Newlines inside a text survive (Apertium keeps the formatting); the separator is a
        # paragraph of its own so no rule joins two texts.
        payload = _SEP_JOIN.join(t.strip() for t in texts) + _SEP_JOIN
        self.calls += 1
        proc = subprocess.run([self._exe, "-u", self.mode], input=payload, capture_output=True,
                              text=True, timeout=600, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"apertium -u {self.mode} exited with {proc.returncode}: {proc.stderr.strip()[:300]}")
        parts = _SEP_SPLIT.split(proc.stdout)
        if parts and not parts[-1].strip():
            parts.pop()
        if len(parts) != len(texts):
            return None
        return [p.strip() for p in parts]

    def _batch(self, texts: Sequence[str]) -> list[str]:
        out = self._run(texts)
        if out is not None:
            return out
        if len(texts) == 1:
            raise RuntimeError(f"apertium -u {self.mode} did not return the text's separator intact")
        mid = len(texts) // 2
        return self._batch(texts[:mid]) + self._batch(texts[mid:])

    def translate(self, texts: Sequence[str]) -> list[str]:
        out: list[str] = []
        chunk: list[str] = []
        size = 0
        for t in texts:
            if chunk and size + len(t) > self._max_chars:
                out.extend(self._batch(chunk))
                chunk, size = [], 0
            chunk.append(t)
            size += len(t)
        if chunk:
            out.extend(self._batch(chunk))
        return out


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

    def __init__(self, forward: Translator, backward: Translator, pivot: str) -> None:
        self.forward = forward
        self.backward = backward
        self.pivot = pivot

    def backtranslate(self, texts: Sequence[str]) -> list[str]:
        if not texts:
            return []
        return self.backward.translate(self.forward.translate(texts))


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
    missing = [m for m in (fwd, bwd) if m not in modes]
    if missing:
        raise ConfigError("augment.pivots", pivot, f"Apertium modes {', '.join(missing)} installed",
                          f"apt-get install {pkg}")
    return BackTranslator(ApertiumTranslator(fwd), ApertiumTranslator(bwd), pivot)
