"""Whisper speech-to-text with ``transformers`` (``audio_asr.backend: transformers``).

The ``audio_asr`` stage's second backend, beside faster-whisper: a
``WhisperForConditionalGeneration`` and its ``WhisperProcessor`` (log-mel feature extractor
and tokenizer) from a local directory, as ``save_pretrained`` writes them (any Whisper
checkpoint on the Hugging Face layout: tiny to large-v3, ``.en`` or multilingual), loaded with
``local_files_only=True``: nothing is downloaded. It runs where torch runs, on CUDA when
available, in bfloat16 there by default (``audio_asr.dtype``), which is what a GPU host without
CTranslate2's CUDA 12 libraries needs.

Decoding: each clip is cut into consecutive 30 s windows (Whisper's input length; a clip of at
most 30 s is one window, and words at a window edge of a longer clip may be cut), and the
windows of a call are transcribed ``batch_size`` at a time by one batched ``generate``
(greedy with ``beam_size: 1``, no timestamps); a clip's transcript is its windows' texts
joined. Features are padded to 30 s and normalised per window, so a window's transcript does
not depend on the other windows of its batch. A multilingual model is told the language
(``audio_asr.language``) and the task ``transcribe``; an English-only model gets neither.
Generation limits come from the model's saved generation config. Plain Python and torch; no
Beam here.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from winnow.filters.audio_models import decode_each
from winnow.filters.devices import torch_device_and_dtype

__all__ = ["TransformersWhisperAsr", "windows", "WINDOW_SECONDS"]

RATE = 16000
#: Whisper's input window.
WINDOW_SECONDS = 30


def windows(audio: Any, rate: int = RATE) -> list[Any]:
    """``audio`` cut into consecutive windows of at most 30 s (an empty clip gives one empty window)."""
    n = WINDOW_SECONDS * rate
    if len(audio) <= n:
        return [audio]
    return [audio[i:i + n] for i in range(0, len(audio), n)]


class TransformersWhisperAsr:
    """A transformers Whisper from ``cfg.model_dir``, loaded once.

    ``infer(records)`` gives, per record, the transcript (str), None (not transcribed) or an
    :class:`~winnow.filters.audio_models.AudioModelError`, as the faster-whisper backend does.

    Args:
        cfg: the stage's :class:`~winnow.filters.audio_models.AudioAsrConfig` (``backend:
            transformers``).
    """

    def __init__(self, cfg: Any) -> None:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.cfg = cfg
        self.device, self.dtype = torch_device_and_dtype("audio_asr", cfg.device, cfg.dtype)
        self.processor = WhisperProcessor.from_pretrained(cfg.model_dir, local_files_only=True)
        model = WhisperForConditionalGeneration.from_pretrained(cfg.model_dir, local_files_only=True)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        gen = self.model.generation_config
        self.generate_kwargs: dict[str, Any] = {"num_beams": cfg.beam_size, "do_sample": False}
        if getattr(gen, "is_multilingual", False) and cfg.language:
            self.generate_kwargs.update(language=cfg.language, task="transcribe")
        self.batch_size = cfg.batch_size or (16 if self.device.type == "cuda" else 4)
        self._torch = torch

    def features(self, audios: Sequence[Any]) -> Any:
        """Log-mel features of clips of at most 30 s: ``(n, mel bins, 3000)`` on the model's
        device and dtype (the STFT runs on that device)."""
        fe = self.processor.feature_extractor
        feats = fe(list(audios), sampling_rate=RATE, return_tensors="pt", device=str(self.device)).input_features
        return feats.to(device=self.device, dtype=self.dtype, non_blocking=True)

    def generate(self, features: Any) -> list[str]:
        """Transcripts of a batch of ready features."""
        with self._torch.inference_mode():
            ids = self.model.generate(features, **self.generate_kwargs)
        return [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]

    def transcribe_batch(self, audios: Sequence[Any]) -> list[str]:
        """Clips of at most 30 s, transcribed in one batched feature extraction and ``generate``."""
        return self.generate(self.features(audios))

    def transcribe(self, records: Sequence[Mapping[str, Any]]) -> list[Any]:
        return self.infer(records)

    def infer(self, records: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Per record: the transcript, None (not transcribed) or an error."""
        out: list[Any] = [None] * len(records)
        parts: list[tuple[int, Any]] = []  # (record index, window)
        for i, audio in decode_each(records, self.cfg.modalities, out):
            parts += [(i, w) for w in windows(audio)]
        texts: dict[int, list[str]] = {}
        bs = self.batch_size
        for s in range(0, len(parts), bs):
            chunk = parts[s:s + bs]
            for (i, _), text in zip(chunk, self.transcribe_batch([w for _, w in chunk])):
                texts.setdefault(i, []).append(text)
        for i, t in texts.items():
            out[i] = " ".join(x for x in t if x).strip()
        return out
