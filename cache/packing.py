"""Token packing: documents in, fixed-length sequences out, with optional document masks.

:class:`TokenPacker` wraps a batched source (a :class:`~winnow.cache.dataset.StreamingDataset`
with ``batched=True`` or a :class:`~winnow.cache.mixing.MixedDataset`) and concatenates the
documents of its token column, each followed by ``eos_id`` if given, into a stream that it cuts
into ``(batch_size, seq_len)`` int32 tensors. With ``doc_mask=True`` each batch also carries

* ``doc_ids``: per position, the document's number within its sequence (0, 1, ...), from
  which a block-diagonal attention mask follows (``doc_ids[:, :, None] == doc_ids[:, None, :]``);
* ``position_ids``: per position, its offset inside its document (restarting at 0).

All of it is vectorised over the whole step. Packing happens per DataLoader worker on that
worker's steps; on resume the partial sequence a worker had buffered (fewer than
``batch_size * seq_len`` tokens) is not replayed.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset

from winnow.errors import ConfigError

__all__ = ["TokenPacker", "pack_positions"]


def pack_positions(doc_starts: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-token document number and position-in-document for a flat stream.

    Args:
        doc_starts: sorted stream offsets where documents begin (the first must be 0).
        total: stream length.

    Returns:
        ``(doc, pos)`` int64 arrays of length ``total``.
    """
    mark = np.zeros(total, dtype=np.int64)
    mark[doc_starts[doc_starts < total]] = 1
    doc = np.cumsum(mark) - 1
    idx = np.arange(total, dtype=np.int64)
    pos = idx - np.maximum.accumulate(np.where(mark == 1, idx, 0))
    return doc, pos


class TokenPacker(IterableDataset):
    """Pack a batched token source into fixed-length sequences.

    Args:
        source: iterable of batches holding ``column`` as a 2-D tensor or as flat values plus
            ``<column>_offsets``.
        seq_len: tokens per sequence.
        batch_size: sequences per yielded batch.
        column: the token column.
        eos_id: appended after each document if not None.
        pad_id: fills the last, partial batch (only if ``drop_remainder`` is False).
        doc_mask: also yield ``doc_ids`` and ``position_ids``.
        drop_remainder: drop the final partial batch instead of padding it.
    """

    def __init__(self, source: Any, *, seq_len: int, batch_size: int, column: str = "tokens",
                 eos_id: int | None = None, pad_id: int = 0, doc_mask: bool = False,
                 drop_remainder: bool = True) -> None:
        super().__init__()
        if seq_len < 1 or batch_size < 1:
            raise ConfigError("seq_len/batch_size", (seq_len, batch_size), "positive integers")
        self.source, self.seq_len, self.batch_size = source, int(seq_len), int(batch_size)
        self.column, self.eos_id, self.pad_id = column, eos_id, int(pad_id)
        self.doc_mask, self.drop_remainder = bool(doc_mask), bool(drop_remainder)

    def _docs(self, batch: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        v = batch[self.column]
        v = v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        offs = batch.get(f"{self.column}_offsets")
        if offs is None:
            n, w = v.shape
            offs = np.arange(0, (n + 1) * w, w, dtype=np.int64)
            v = v.reshape(-1)
        else:
            offs = offs.numpy() if isinstance(offs, torch.Tensor) else np.asarray(offs)
        if self.eos_id is None:
            return v.astype(np.int32, copy=False), offs[:-1] - offs[0]
        lens = np.diff(offs)
        n = len(lens)
        starts = (offs[:-1] - offs[0]) + np.arange(n)
        out = np.empty(len(v) + n, dtype=np.int32)
        keep = np.ones(len(out), dtype=bool)
        keep[starts + lens] = False
        out[keep] = v[offs[0]:offs[-1]]
        out[starts + lens] = self.eos_id
        return out, starts

    def _emit(self, toks: np.ndarray, starts: np.ndarray, valid: int | None = None) -> dict[str, torch.Tensor]:
        shape = (self.batch_size, self.seq_len)
        out = {"input_ids": torch.from_numpy(toks.reshape(shape).copy())}
        if self.doc_mask:
            # every sequence starts a document (a document cut at a row edge continues as a new one)
            rows = np.arange(0, len(toks), self.seq_len, dtype=np.int64)
            doc, pos = pack_positions(np.union1d(starts, rows), len(toks))
            doc = doc.reshape(shape)
            doc = doc - doc[:, :1]
            if valid is not None:  # padding belongs to no document
                flat = doc.reshape(-1)
                flat[valid:] = -1
            out["doc_ids"] = torch.from_numpy(doc.astype(np.int32))
            out["position_ids"] = torch.from_numpy(pos.reshape(shape).astype(np.int32))
        return out

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        need = self.batch_size * self.seq_len
        buf = np.empty(0, dtype=np.int32)
        buf_starts = np.empty(0, dtype=np.int64)
        for batch in self.source:
            toks, starts = self._docs(batch)
            buf_starts = np.concatenate([buf_starts, starts + len(buf)])
            buf = np.concatenate([buf, toks])
            while len(buf) >= need:
                yield self._emit(buf[:need], buf_starts[buf_starts < need])
                buf = buf[need:]
                buf_starts = buf_starts[buf_starts >= need] - need
        if len(buf) and not self.drop_remainder:
            valid = len(buf)
            pad = np.full(need - valid, self.pad_id, dtype=np.int32)
            yield self._emit(np.concatenate([buf, pad]), np.concatenate([buf_starts, [valid]]), valid)
