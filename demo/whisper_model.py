"""A randomly initialised Whisper model directory for ``transformers``, built offline (tests,
benchmarks).

:func:`build_random_whisper` writes what ``WhisperForConditionalGeneration.save_pretrained``
and ``WhisperProcessor.save_pretrained`` write for a real multilingual checkpoint: the model
with its generation config (``<|startoftranscript|>``, language and task tokens, no
timestamps), a byte-level BPE tokenizer and the log-mel feature extractor (80 bins, 30 s
windows at 16 kHz). The tokenizer has the 256 byte symbols and no merges (every character is
a token); the vocabulary is filled up to the model's size with four-letter words so that any
id the random model produces decodes to text. Its transcripts are noise: it proves the
loading and inference paths, and with ``size="base"`` or ``"small"`` (whisper-base: 6+6 layers
x 512; whisper-small: 12+12 x 768; both with the real 51,865-token vocabulary) it has a
realistic cost per second of audio. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Literal

from winnow.demo.clip_model import save_quietly

__all__ = ["build_random_whisper", "WHISPER_SHAPES"]

#: (d_model, layers per side, heads, ffn, vocabulary) of each size; tiny is a test toy.
WHISPER_SHAPES = {
    "tiny": (32, 2, 2, 64, 600),
    "base": (512, 6, 8, 2048, 51865),
    "small": (768, 12, 12, 3072, 51865),
}

_SPECIALS = ("<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>",
             "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>")


def _filler(i: int) -> str:
    """The ``i``-th filler word: a space and four lower-case letters (byte-level ``Ġ``)."""
    s = ""
    for _ in range(4):
        i, r = divmod(i, 26)
        s += chr(ord("a") + r)
    return "\u0120" + s


def build_random_whisper(path: str | Path, size: Literal["tiny", "base", "small"] = "tiny", seed: int = 0,
                         max_new_tokens: int | None = None) -> str:
    """Write a random Whisper, its tokenizer and feature extractor under ``path``; returns it.

    ``max_new_tokens`` (optional) makes every ``generate`` produce exactly that many tokens
    (``max_new_tokens`` and ``min_new_tokens`` in the saved generation config): a random
    model stops at a random point otherwise, and a throughput comparison needs the same
    decoding work in every variant.
    """
    import torch
    from tokenizers import pre_tokenizers
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)

    d_model, layers, heads, ffn, vocab_size = WHISPER_SHAPES[size]
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab.setdefault(ch, len(vocab))
    n_plain = vocab_size - len(_SPECIALS)
    i = 0
    while len(vocab) < n_plain:
        vocab.setdefault(_filler(i), len(vocab))
        i += 1
    # vocab.json + merges.txt, read back by from_pretrained: the same on transformers 4 (the
    # Python BPE) and 5 (tokenizers), whose constructors differ
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "vocab.json"), "w", encoding="utf-8") as fh:
            json.dump(vocab, fh, ensure_ascii=False)
        with open(os.path.join(tmp, "merges.txt"), "w", encoding="utf-8") as fh:
            fh.write("#version: 0.2\n")
        tok = WhisperTokenizer.from_pretrained(tmp, local_files_only=True)
    tok.add_special_tokens({"additional_special_tokens": list(_SPECIALS[1:])})
    ids = {t: tok.convert_tokens_to_ids(t) for t in _SPECIALS}
    if len(tok) != vocab_size:  # pragma: no cover - a builder bug
        raise ValueError(f"tokenizer has {len(tok)} tokens, the model {vocab_size}")
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    cfg = WhisperConfig(vocab_size=vocab_size, num_mel_bins=80, d_model=d_model, encoder_layers=layers,
                        decoder_layers=layers, encoder_attention_heads=heads, decoder_attention_heads=heads,
                        encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, max_source_positions=1500, max_target_positions=448,
                        decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
                        begin_suppress_tokens=None, suppress_tokens=None)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg).eval()
    gen = GenerationConfig(
        decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        max_length=448, is_multilingual=True,
        lang_to_id={"<|en|>": ids["<|en|>"], "<|de|>": ids["<|de|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], prev_sot_token_id=ids["<|startofprev|>"],
        suppress_tokens=[], begin_suppress_tokens=[eot],
    )
    if max_new_tokens is not None:
        gen.max_new_tokens = gen.min_new_tokens = int(max_new_tokens)
        gen.max_length = None
    model.generation_config = gen
    save_quietly(model, str(out))
    fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, chunk_length=30, n_fft=400)
    WhisperProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(str(out))
    return str(out)
