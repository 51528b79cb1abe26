"""Encoding text with a trained sentencepiece model, and packing token streams.

Token ids are stored in the narrowest integer type that holds the vocabulary
(:func:`token_dtype`): ``int16`` up to 32,768 pieces, ``uint16`` up to 65,536, else ``int32``.
Signed types are preferred at equal width because PyTorch supports them fully (its unsigned
16/32-bit tensors have few operations); the loader (``winnow.cache``) reads any integer
list column and its packer widens to int32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from winnow.errors import ConfigError

__all__ = ["EncodeConfig", "Encoder", "token_dtype", "arrow_token_type", "pack_tokens", "count_words"]


@dataclass(frozen=True)
class EncodeConfig:
    """Options of the ``encode`` stage.

    Attributes:
        model: path of an existing sentencepiece model; empty: the model trained by the
            ``tokenizer`` stage of this run (which must come earlier in ``stages``).
        vocab_size: with ``model``, the vocabulary size must be known when the graph is built
            (it sets the column type); 0 reads it from the model file.
        add_eos: append ``</s>`` (id 2) to every record's tokens, the separator the loader's
            ``TokenPacker`` (or :func:`pack_tokens`) packs fixed-length sequences with.
        pack_length: >0 also writes ``OUT/packed/``: a dataset (own index.json, same format) of
            rows of exactly this many ids, the records' tokens joined with ``</s>`` separators.
        pad_id: pads the last packed row of each group.
        batch_size: records encoded per sentencepiece call.
        threads: sentencepiece encoding threads per worker (0: sentencepiece's default).
    """

    model: str = ""
    vocab_size: int = 0
    add_eos: bool = False
    pack_length: int = 0
    pad_id: int = 0
    batch_size: int = 256
    threads: int = 1

    def __post_init__(self) -> None:
        if self.pack_length < 0:
            raise ConfigError("encode.pack_length", self.pack_length, "0 (no packing) or a sequence length such as 4096")
        if self.batch_size < 1:
            raise ConfigError("encode.batch_size", self.batch_size, "a positive integer")
        if self.threads < 0:
            raise ConfigError("encode.threads", self.threads, "0 or a positive integer")
        if self.vocab_size < 0:
            raise ConfigError("encode.vocab_size", self.vocab_size, "0 or the model's vocabulary size")


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest NumPy integer type for ids ``0 .. vocab_size - 1``."""
    if vocab_size <= 1 << 15:
        return np.dtype(np.int16)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    if vocab_size <= 1 << 31:
        return np.dtype(np.int32)
    raise ConfigError("vocab_size", vocab_size, "at most 2**31 pieces")


def arrow_token_type(vocab_size: int) -> pa.DataType:
    """``list<intN>`` for the ``tokens`` column."""
    return pa.list_(pa.from_numpy_dtype(token_dtype(vocab_size)))


def count_words(text: str) -> int:
    """Whitespace-separated words (the denominator of fertility)."""
    return len(text.split())


def pack_tokens(rows: Iterable[Sequence[int]], length: int, eos_id: int | None, pad_id: int = 0) -> Iterator[list[int]]:
    """Concatenate token lists (each followed by ``eos_id`` when given) and cut the stream into
    rows of exactly ``length`` ids; the last row is padded with ``pad_id``."""
    if length < 1:
        raise ValueError(f"pack length must be positive, got {length}")
    buf: list[int] = []
    for r in rows:
        buf.extend(int(t) for t in r)
        if eos_id is not None:
            buf.append(eos_id)
        while len(buf) >= length:
            yield buf[:length]
            buf = buf[length:]
    if buf:
        yield buf + [pad_id] * (length - len(buf))


#: sentencepiece's whitespace meta symbol; in a text it is a literal character like any other
META = "\u2581"


class Encoder:
    """A loaded sentencepiece model that encodes batches of texts to NumPy id arrays.

    A text's own U+2581 (``▁``, sentencepiece's whitespace symbol) would decode as a space, so
    with byte fallback it is encoded as its three UTF-8 byte pieces (``<0xE2><0x96><0x81>``),
    which sentencepiece decodes back to ``▁``: decoding gives the text back exactly, with
    winnow's :meth:`decode` or with any sentencepiece reading ``spm.model``. Without byte
    fallback (``tokenizer.byte_fallback: false``) a text's ``▁`` decodes as a space.

    Args:
        model: the serialized model (bytes).
        threads: sentencepiece threads for batch encoding (0: its default).
    """

    def __init__(self, model: bytes, threads: int = 1) -> None:
        import sentencepiece as spm

        self._sp = spm.SentencePieceProcessor(model_proto=model)
        self.vocab_size = self._sp.get_piece_size()
        self.dtype = token_dtype(self.vocab_size)
        self.eos_id = self._sp.eos_id()
        self._threads = threads if threads > 0 else -1
        meta = [self._sp.piece_to_id(f"<0x{b:02X}>") for b in META.encode("utf-8")]
        byte_pieces = all(self._sp.is_byte(i) for i in meta)
        self._meta_ids: list[int] | None = meta if byte_pieces else None

    @property
    def processor(self) -> Any:
        """The underlying ``sentencepiece.SentencePieceProcessor``."""
        return self._sp

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Ids of each text, as arrays of :attr:`dtype` (a text's own ``▁`` as byte pieces)."""
        texts = list(texts)
        metas = {k: t for k, t in enumerate(texts) if META in t} if self._meta_ids is not None else {}
        if metas:
            texts = ["" if k in metas else t for k, t in enumerate(texts)]
        ids = self._sp.encode(texts, out_type=int, num_threads=self._threads)
        for k, t in metas.items():
            ids[k] = self._encode_with_meta(t)
        dt = self.dtype
        return [np.array(i, dtype=dt) for i in ids]

    def _encode_with_meta(self, text: str) -> list[int]:
        """The parts between the text's ``▁`` encoded as usual, each ``▁`` as its byte pieces."""
        parts = self._sp.encode(text.split(META), out_type=int, num_threads=1)
        out = list(parts[0])
        for part in parts[1:]:
            out += self._meta_ids  # type: ignore[operator]
            out += part
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` (exactly the encoded text under ``identity`` normalization with
        byte fallback; sentencepiece's own decode, which gives the same)."""
        return self._sp.decode([int(i) for i in ids])

    def piece_ids(self, terms: Iterable[str]) -> dict[str, int]:
        """The id of each term that is a single piece of the vocabulary."""
        out = {}
        for t in terms:
            i = self._sp.piece_to_id(t)
            if i != self._sp.unk_id() and self._sp.id_to_piece(i) == t:
                out[t] = i
        return out
