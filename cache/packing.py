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


def _row_starts(starts: np.ndarray, rows: int, seq_len: int) -> np.ndarray:
    """Per row, the in-row offsets where documents begin (always 0 first), padded with ``seq_len``
    to a width that is a multiple of 16 (so the shape, and the transfer layout, rarely changes)."""
    total = rows * seq_len
    s = starts[(starts > 0) & (starts < total)]
    s = s[s % seq_len != 0]
    row = s // seq_len
    counts = np.bincount(row, minlength=rows) + 1
    width = -(-int(counts.max()) // 16) * 16
    out = np.full((rows, width), seq_len, dtype=np.int32)
    out[:, 0] = 0
    if len(s):
        first = np.zeros(rows + 1, dtype=np.int64)
        np.cumsum(counts - 1, out=first[1:])
        col = 1 + np.arange(len(s), dtype=np.int64) - first[row]
        out[row, col] = s % seq_len
    return out


class TokenPacker(IterableDataset):
    """Pack a batched token source into fixed-length sequences.

    Each batch is built straight into its transfer buffer: under a
    :class:`~winnow.cache.loader.StreamingDataLoader` with workers, a recycled shared-memory
    segment of the worker (the trainer receives the whole batch as one
    :class:`~winnow.cache.loader.TransferChunk`, no per-tensor pickling, no extra copy); the
    tokens are a few contiguous copies of the source's buffers.

    Args:
        source: iterable of batches holding ``column`` as a 2-D tensor or as flat values plus
            ``<column>_offsets``.
        seq_len: tokens per sequence.
        batch_size: sequences per yielded batch.
        column: the token column.
        eos_id: appended after each document if not None.
        pad_id: fills the last, partial batch (only if ``drop_remainder`` is False).
        doc_mask: also yield ``doc_ids`` and ``position_ids`` (built on the CPU, 2 more int32
            arrays of the batch's shape).
        boundaries: instead of ``doc_ids``/``position_ids``, yield ``doc_starts``: per row the
            in-row offsets where documents begin, padded with ``seq_len`` (``(batch_size, W)``
            int32, W a multiple of 16, tiny next to the tokens); build the masks on the GPU with
            :func:`winnow.cache.gpu.document_masks`. Padding of a final partial batch then counts
            as one more document.
        drop_remainder: drop the final partial batch instead of padding it.
    """

    batched = True  # a StreamingDataLoader hands out its items as they are
    transfer_steps = 1  # ... and gives its workers recycled transfer segments

    def __init__(self, source: Any, *, seq_len: int, batch_size: int, column: str = "tokens",
                 eos_id: int | None = None, pad_id: int = 0, doc_mask: bool = False,
                 boundaries: bool = False, drop_remainder: bool = True) -> None:
        super().__init__()
        if seq_len < 1 or batch_size < 1:
            raise ConfigError("seq_len/batch_size", (seq_len, batch_size), "positive integers")
        if doc_mask and boundaries:
            raise ConfigError("doc_mask/boundaries", (doc_mask, boundaries), "at most one of them",
                              "boundaries replaces the CPU-built masks")
        self.source, self.seq_len, self.batch_size = source, int(seq_len), int(batch_size)
        self.column, self.eos_id, self.pad_id = column, eos_id, int(pad_id)
        self.doc_mask, self.boundaries = bool(doc_mask), bool(boundaries)
        self.drop_remainder = bool(drop_remainder)
        self._transfer_ok = False  # set in workers of a StreamingDataLoader
        self._slot_pool: Any = None

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_transfer_ok"], d["_slot_pool"] = False, None
        return d

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
            return v[offs[0]:offs[-1]].astype(np.int32, copy=False), offs[:-1] - offs[0]
        lens = np.diff(offs)
        n = len(lens)
        starts = (offs[:-1] - offs[0]) + np.arange(n)
        out = np.empty(int(offs[-1] - offs[0]) + n, dtype=np.int32)
        keep = np.ones(len(out), dtype=bool)
        keep[starts + lens] = False
        out[keep] = v[offs[0]:offs[-1]]
        out[starts + lens] = self.eos_id
        return out, starts

    def _layout(self, extra: int) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
        i32 = np.dtype(np.int32)
        lay = [("input_ids", i32, (self.seq_len,))]
        if self.doc_mask:
            lay += [("doc_ids", i32, (self.seq_len,)), ("position_ids", i32, (self.seq_len,))]
        if self.boundaries:
            lay.append(("doc_starts", i32, (extra,)))
        return lay

    def _emit(self, parts: list[np.ndarray], starts: np.ndarray, valid: int | None = None) -> Any:
        """Take ``batch_size * seq_len`` tokens from the front of ``parts`` (consumed in place)."""
        from winnow.cache.loader import TransferChunk

        shape = (self.batch_size, self.seq_len)
        need = shape[0] * shape[1]
        if valid is not None:  # every sequence starts a document; padding starts one too
            starts = np.concatenate([starts, [valid]])
        bounds = _row_starts(starts, shape[0], shape[1]) if self.boundaries else None
        chunk = None
        if self._transfer_ok:
            chunk, views = TransferChunk.open(self._layout(0 if bounds is None else bounds.shape[1]), 1,
                                              shape[0], self._slot_pool)
        else:
            views = {name: np.empty((shape[0], *inner), dtype=dt)
                     for name, dt, inner in self._layout(0 if bounds is None else bounds.shape[1])}
        flat = views["input_ids"].reshape(-1)
        pos = 0
        while pos < need:
            p = parts[0]
            k = min(len(p), need - pos)
            flat[pos:pos + k] = p[:k]
            pos += k
            if k == len(p):
                parts.pop(0)
            else:
                parts[0] = p[k:]
                break
        if valid is not None:
            flat[valid:] = self.pad_id
        if self.doc_mask:
            rows = np.arange(0, need, self.seq_len, dtype=np.int64)
            doc, posn = pack_positions(np.union1d(starts, rows), need)
            doc = doc.reshape(shape)
            doc = doc - doc[:, :1]
            if valid is not None:  # padding belongs to no document
                doc.reshape(-1)[valid:] = -1
            views["doc_ids"][...] = doc
            views["position_ids"][...] = posn.reshape(shape)
        if bounds is not None:
            views["doc_starts"][...] = bounds
        if chunk is not None:
            return chunk
        return {k: torch.from_numpy(v) for k, v in views.items()}

    def __iter__(self) -> Iterator[Any]:
        need = self.batch_size * self.seq_len
        parts: list[np.ndarray] = []
        starts: list[np.ndarray] = []
        have = 0  # tokens in parts
        for batch in self.source:
            toks, st = self._docs(batch)
            if not len(toks):
                continue
            parts.append(toks)
            starts.append(st + have)
            have += len(toks)
            while have >= need:
                allst = np.concatenate(starts) if len(starts) > 1 else starts[0]
                yield self._emit(parts, allst[allst < need])
                have -= need
                rest = allst[allst >= need] - need
                starts = [rest]
        if have and not self.drop_remainder:
            allst = np.concatenate(starts) if len(starts) > 1 else starts[0]
            parts.append(np.full(need - have, self.pad_id, dtype=np.int32))
            yield self._emit(parts, allst, valid=have)
