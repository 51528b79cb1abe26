"""Translators for back-translation: Apertium (rule-based, offline) and a local seq2seq model.

Both take a list of texts and return one translation per text, in order. Apertium is run
as one process per batch (process start-up is most of its cost for short texts): the texts
are joined with a separator paragraph that Apertium passes through, and a batch whose
separators do not come back intact is split in halves until they do.

An Apertium round trip (English -> pivot -> English) runs both directions as one process
chain per batch (``apertium -u eng-spa | apertium -u spa-eng``): the two pipelines load their
data at the same time and translate concurrently, and the texts are not split and joined in
between; the output is the same as two separate calls (a batch whose separators do not come
back intact takes the two-call path). The pipelines are not kept running between batches:
Apertium's output for a text depends a little on what the same process translated before, so
a long-running pipeline would make a record's augmentation depend on which worker got which
batch first, and the runs would no longer be byte-identical across runners.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
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
        self.calls = 0  # process calls (a chained round trip counts one in each direction)
        self.chains = 0  # round trips run as one process chain (this mode first)

    @staticmethod
    def _payload(texts: Sequence[str]) -> str:
        # Newlines inside a text survive (Apertium keeps the formatting); the separator is a
        # paragraph of its own so no rule joins two texts.
        return _SEP_JOIN.join(t.strip() for t in texts) + _SEP_JOIN

    @staticmethod
    def _parts(out: str, n: int) -> list[str] | None:
        parts = _SEP_SPLIT.split(out)
        if parts and not parts[-1].strip():
            parts.pop()
        if len(parts) != n:
            return None
        return [p.strip() for p in parts]

    def _run(self, texts: Sequence[str]) -> list[str] | None:
        self.calls += 1
        proc = subprocess.run([self._exe, "-u", self.mode], input=self._payload(texts), capture_output=True,
                              text=True, timeout=600, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"apertium -u {self.mode} exited with {proc.returncode}: {proc.stderr.strip()[:300]}")
        return self._parts(proc.stdout, len(texts))

    def _chain(self, then: ApertiumTranslator, texts: Sequence[str]) -> list[str] | None:
        """``texts`` through this mode and then ``then``'s, as one process chain."""
        self.calls += 1
        then.calls += 1
        self.chains += 1
        data = self._payload(texts).encode("utf-8")
        with tempfile.TemporaryFile() as err1, tempfile.TemporaryFile() as err2:
            first = subprocess.Popen([self._exe, "-u", self.mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=err1)
            second = subprocess.Popen([then._exe, "-u", then.mode], stdin=first.stdout, stdout=subprocess.PIPE,
                                      stderr=err2)
            first.stdout.close()  # type: ignore[union-attr] - the second process holds the read end

            def feed() -> None:
                try:
                    first.stdin.write(data)  # type: ignore[union-attr]
                    first.stdin.close()  # type: ignore[union-attr]
                except OSError:
                    pass  # the first process died; its exit status says why

            writer = threading.Thread(target=feed, daemon=True)  # the pipes would fill both ways otherwise
            writer.start()
            try:
                out, _ = second.communicate(timeout=600)
                first.wait(timeout=60)
            except subprocess.TimeoutExpired:
                first.kill()
                second.kill()
                first.wait()
                second.wait()
                raise RuntimeError(f"apertium -u {self.mode} | apertium -u {then.mode} took more than 600 s") from None
            writer.join()
            for proc, mode, err in ((first, self.mode, err1), (second, then.mode, err2)):
                if proc.returncode != 0:
                    err.seek(0)
                    msg = err.read().decode("utf-8", "replace").strip()[:300]
                    raise RuntimeError(f"apertium -u {mode} exited with {proc.returncode}: {msg}")
        return self._parts(out.decode("utf-8"), len(texts))

    def round_trip(self, back: ApertiumTranslator, texts: Sequence[str]) -> list[str]:
        """``back.translate(self.translate(texts))`` with both directions in one process chain
        per batch (the same output; see the module docstring)."""
        out: list[str] = []
        for chunk in self._chunks(texts):
            res = self._chain(back, chunk)
            out.extend(res if res is not None else back.translate(self._batch(chunk)))
        return out

    def _batch(self, texts: Sequence[str]) -> list[str]:
        out = self._run(texts)
        if out is not None:
            return out
        if len(texts) == 1:
            raise RuntimeError(f"apertium -u {self.mode} did not return the text's separator intact")
        mid = len(texts) // 2
        return self._batch(texts[:mid]) + self._batch(texts[mid:])

    def _chunks(self, texts: Sequence[str]) -> list[list[str]]:
        chunks: list[list[str]] = []
        chunk: list[str] = []
        size = 0
        for t in texts:
            if chunk and size + len(t) > self._max_chars:
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(t)
            size += len(t)
        if chunk:
            chunks.append(chunk)
        return chunks

    def translate(self, texts: Sequence[str]) -> list[str]:
        out: list[str] = []
        for chunk in self._chunks(texts):
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
        if isinstance(self.forward, ApertiumTranslator) and isinstance(self.backward, ApertiumTranslator):
            return self.forward.round_trip(self.backward, texts)
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
