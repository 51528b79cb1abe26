"""Token packing: documents in, fixed-length sequences out, with optional document masks.

:class:`TokenPacker` wraps a batched source (a :class:`~winnow.cache.dataset.StreamingDataset`
with ``batched=True`` or a :class:`~winnow.cache.mixing.MixedDataset`) and concatenates the
documents of its token column, each followed by ``eos_id`` if given, into a stream that it cuts
into ``(batch_size, seq_len)`` int32 tensors. With ``doc_mask=True`` each batch also carries

* ``doc_ids``: per position, the document's number within its sequence (0, 1, ...), from
  which a block-diagonal attention mask follows (``doc_ids[:, :, None] == doc_ids[:, None, :]``);
* ``position_ids``: per position, its offset inside its document (restarting at 0).

All of it is vectorised over the whole step. Packing happens per DataLoader worker on that
worker's steps.

Resume: every packed batch records where its worker's next batch starts (the source step, counted
from the iteration's start, and the tokens of it already packed). A
:class:`~winnow.cache.loader.StreamingDataLoader` keeps that for the batches it handed out, and
its ``state_dict()`` is the packer's state: the source's state at the iteration's start, each
worker's position and which worker the next batch comes from. After ``load_state_dict`` each
worker re-reads the source step it was in the middle of and skips the tokens already packed, so
the batches continue exactly as in an uninterrupted epoch. The state needs the same
``max(num_workers, 1)`` to resume (0 and 1 pack the same stream).
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from winnow.errors import CacheError, ConfigError

from winnow.cache.memory import RaggedRefs

__all__ = ["TokenPacker", "pack_positions"]

_log = logging.getLogger(__name__)


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
        if getattr(source, "batched", True) is False:
            raise ConfigError("source", type(source).__name__, "a batched source (StreamingDataset(batched=True, "
                              "batch_size=B) or a MixedDataset)", "TokenPacker packs whole steps of documents")
        cols = getattr(source, "columns", None)
        if cols is None and hasattr(source, "manifest"):
            cols = list(source.manifest.schema.names)
        if cols is not None and column not in cols:
            raise ConfigError("column", column, f"one of the source's columns {list(cols)}",
                              "pass TokenPacker(column=...) the token column, and read it (StreamingDataset(columns=...))")
        self.source, self.seq_len, self.batch_size = source, int(seq_len), int(batch_size)
        self.column, self.eos_id, self.pad_id = column, eos_id, int(pad_id)
        self.doc_mask, self.boundaries = bool(doc_mask), bool(boundaries)
        self.drop_remainder = bool(drop_remainder)
        self._transfer_ok = False  # set in workers of a StreamingDataLoader
        self._slot_pool: Any = None
        self._resume: dict[str, Any] | None = None  # loaded state: source base, per-worker positions
        self._fresh_resume = False  # loaded since the loader's workers last started
        self._base: dict[str, Any] | None = None  # the source's state at the current iteration's start
        self._iter_resume: dict[str, Any] | None = None  # the loaded state the current iteration started from
        self._workers = 1  # max(num_workers, 1) of the current iteration
        self._last_pos: tuple[int, int, int] | None = None  # in-process: (worker, step, tokens) after the last batch
        self._warned_empty = False

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_transfer_ok"], d["_slot_pool"] = False, None
        return d

    def __len__(self) -> int:
        raise TypeError("len(TokenPacker) is not known before packing: the number of packed batches depends on "
                        "the lengths of the documents; count the batches of an epoch instead")

    # --- resume ----------------------------------------------------------------------
    def _active_resume(self, epoch: int | None) -> dict[str, Any] | None:
        r = self._resume
        if r is None:
            return None
        e = r["source"].get("epoch")
        if e is not None and epoch is not None and e != epoch:
            return None  # another epoch was selected since: start it from scratch
        return r

    def _begin(self, workers: int) -> None:
        """Main process, before an iteration: remember where the source starts and check the workers."""
        self._workers = max(int(workers), 1)
        r = self._active_resume(getattr(self.source, "epoch", None))
        if r is not None:
            if r["workers"] != self._workers:
                raise CacheError(f"this TokenPacker state was saved with num_workers={r['workers']} (0 and 1 "
                                 f"count as 1) and this loader has {self._workers}; the packed batches of "
                                 "different worker counts differ, so resume with the same num_workers")
            self._base = r["source"]
        elif hasattr(self.source, "state_dict"):
            self._base = self.source.state_dict(num_batches=0)
        else:
            self._base = None  # a plain iterable of steps: no resume
        self._iter_resume = r  # positions of the workers that have not handed out a batch yet

    def _pack_state(self, positions: Mapping[int, tuple[int, int]] | None, last: int | None) -> dict[str, Any]:
        """The state after the batches whose positions a StreamingDataLoader recorded."""
        if not hasattr(self.source, "state_dict"):
            raise CacheError(f"TokenPacker can resume only a source with state_dict/load_state_dict (a StreamingDataset "
                             f"or MixedDataset), not {type(self.source).__name__}")
        if self._base is None:  # no iteration yet: the loaded state, or the source's start
            if self._resume is not None:
                return dict(self._resume)
            self._begin(self._workers)
        assert self._base is not None
        w = self._workers
        r = self._iter_resume
        pos = [list(p) for p in r["pos"]] if r is not None else [[o, 0] for o in range(w)]
        rot = r["rotate"] if r is not None else 0
        for o, (g, t) in (positions or {}).items():
            pos[o] = [int(g), int(t)]
        if last is not None:
            rot = (last + 1) % w
        return {"version": 1, "kind": "TokenPacker", "source": dict(self._base), "workers": w, "rotate": rot,
                "pos": pos, "seq_len": self.seq_len, "batch_size": self.batch_size, "eos_id": self.eos_id}

    def state_dict(self, num_batches: int | None = None) -> dict[str, Any]:
        """Use :meth:`StreamingDataLoader.state_dict` (it knows which batches the trainer got)."""
        if num_batches is None and self._last_pos is not None and self._workers == 1:
            o, g, t = self._last_pos
            return self._pack_state({o: (g, t)}, o)
        if num_batches in (None, 0):
            return self._pack_state(None, None)
        raise CacheError("TokenPacker.state_dict(num_batches=...) cannot turn a count into a position: take the "
                         "state from the StreamingDataLoader (or CudaPrefetcher) that iterates the packer")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (from a StreamingDataLoader over a packer with the same settings)."""
        if state.get("kind") != "TokenPacker":
            raise CacheError("this state was not saved from a TokenPacker (take it from the StreamingDataLoader "
                             "iterating the packer)")
        mine = (self.seq_len, self.batch_size, self.eos_id)
        theirs = (state.get("seq_len"), state.get("batch_size"), state.get("eos_id"))
        if theirs != mine:
            raise CacheError(f"TokenPacker state has (seq_len, batch_size, eos_id)={theirs} but this packer has "
                             f"{mine}; resume with the same packing settings")
        self.source.load_state_dict(state["source"])
        self._resume = {k: state[k] for k in ("source", "workers", "rotate", "pos")}
        self._resume["steps"] = len(self.source)
        self._base = None
        self._last_pos = None
        self._fresh_resume = True

    def _shifted(self, base: Mapping[str, Any], off: int, epoch_now: int | None) -> list[int]:
        """The source's shared state (see StreamingDataset.__iter__) for starting ``off`` steps after ``base``."""
        src = self.source
        if "partition" in base:
            start, skip = int(base["start"]), int(base["skip"])
            if base["partition"] == "interleave":
                start += off * src.world_size * src.batch_size
            else:
                skip += off
            return [int(base["epoch"]), 1, int(base["epoch"]), start, skip, 0]
        if "step" in base:
            if base["step"] + off < 0:
                raise CacheError("this TokenPacker state cannot be resumed with DataLoader workers over a "
                                 "MixedDataset (a worker would start before the first step); resume with num_workers=0")
            e = 0 if epoch_now is None else epoch_now
            return [e, 0, 0, 0, 0, int(base["step"]) + off]
        raise CacheError(f"TokenPacker cannot resume a source of type {type(src).__name__}")

    def _docs(self, batch: dict[str, Any]) -> tuple[_Pieces, np.ndarray]:
        """The step's documents as a token stream (each followed by ``eos_id`` if set), and the
        stream offsets where they begin."""
        v = batch[self.column]
        if isinstance(v, RaggedRefs):  # rows where they lie in the mapped shards: copied once, in _emit
            lens = v.lengths()
            rows = v.rows()
            if self.eos_id is None:
                starts = np.zeros(len(lens), dtype=np.int64)
                np.cumsum(lens[:-1], out=starts[1:])
                return _Pieces(rows, lens), starts
            pieces: list[np.ndarray] = [np.full(1, self.eos_id, dtype=np.int32)] * (2 * len(rows))
            pieces[0::2] = rows
            plens = np.ones(2 * len(rows), dtype=np.int64)
            plens[0::2] = lens
            starts = np.zeros(len(lens), dtype=np.int64)
            np.cumsum(lens[:-1] + 1, out=starts[1:])
            return _Pieces(pieces, plens), starts
        v = v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        offs = batch.get(f"{self.column}_offsets")
        if offs is None:
            n, w = v.shape
            offs = np.arange(0, (n + 1) * w, w, dtype=np.int64)
            v = v.reshape(-1)
        else:
            offs = offs.numpy() if isinstance(offs, torch.Tensor) else np.asarray(offs)
        if self.eos_id is None:
            flat = v[offs[0]:offs[-1]].astype(np.int32, copy=False)
            return _Pieces([flat], np.array([len(flat)], dtype=np.int64)), offs[:-1] - offs[0]
        lens = np.diff(offs)
        n = len(lens)
        starts = (offs[:-1] - offs[0]) + np.arange(n)
        out = np.empty(int(offs[-1] - offs[0]) + n, dtype=np.int32)
        keep = np.ones(len(out), dtype=bool)
        keep[starts + lens] = False
        out[keep] = v[offs[0]:offs[-1]]
        out[starts + lens] = self.eos_id
        return _Pieces([out], np.array([len(out)], dtype=np.int64)), starts

    def _layout(self, extra: int) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
        i32 = np.dtype(np.int32)
        lay = [("input_ids", i32, (self.seq_len,))]
        if self.doc_mask:
            lay += [("doc_ids", i32, (self.seq_len,)), ("position_ids", i32, (self.seq_len,))]
        if self.boundaries:
            lay.append(("doc_starts", i32, (extra,)))
        return lay

    def _emit(self, parts: list[_Pieces], starts: np.ndarray, valid: int | None = None) -> Any:
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
        take: list[np.ndarray] = []
        pos = 0
        while pos < need:
            pos += parts[0].take(need - pos, take)
            if parts[0].left == 0:
                parts.pop(0)
        np.concatenate(take, out=flat, casting="unsafe")  # every document's tokens copied once, here
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

    def _out(self, item: Any, tag: tuple[int, int, int]) -> Any:
        from winnow.cache.loader import TransferChunk

        if isinstance(item, TransferChunk):
            item.tag = tag
        self._last_pos = tag
        return item

    def __iter__(self) -> Iterator[Any]:
        need = self.batch_size * self.seq_len
        parts: list[_Pieces] = []
        pg: list[int] = []  # the source step (from the iteration's start) of each part
        starts: list[np.ndarray] = []
        have = 0  # tokens in parts
        src = self.source
        wi = get_worker_info()
        wid, nw = (wi.id, wi.num_workers) if wi is not None else (0, 1)
        shared = getattr(src, "_shared_state", None)
        epoch_now = int(shared[0]) if (shared is not None and "epoch" in vars(src)) else getattr(src, "epoch", None)
        if wi is None:
            self._begin(1 if self._base is None else self._workers)
        res = self._active_resume(epoch_now)
        role, g, skip_tokens, limit = wid, wid, 0, None
        saved = {k: getattr(src, k) for k in ("_shared_state", "_resume", "start") if hasattr(src, k)}
        if res is not None:
            if res["workers"] != nw:
                raise CacheError(f"this TokenPacker state was saved with num_workers={res['workers']} (0 and 1 "
                                 f"count as 1) and is iterated with {nw}; resume with the same num_workers")
            role = (wid + int(res["rotate"])) % nw
            g, skip_tokens = (int(x) for x in res["pos"][role])
            limit = int(res["steps"])
            src._shared_state = self._shifted(res["source"], g - wid, epoch_now)
        refs = hasattr(src, "_ragged_refs")
        if refs:  # the source hands ragged rows as RaggedRefs: _emit copies each document once
            src._ragged_refs = True
        done = False
        emitted = 0
        self._last_pos = None
        try:
            for batch in src:
                if limit is not None and g >= limit:
                    break
                this, g = g, g + nw
                toks, st = self._docs(batch)
                if skip_tokens:  # the step this worker was in the middle of: its packed tokens are done
                    toks.take(skip_tokens, [])
                    st = st[st >= skip_tokens] - skip_tokens
                    skip_tokens = 0
                if not toks.left:
                    continue
                parts.append(toks)
                pg.append(this)
                starts.append(st + have)
                have += toks.left
                while have >= need:
                    allst = np.concatenate(starts) if len(starts) > 1 else starts[0]
                    n0 = len(parts)
                    item = self._emit(parts, allst[allst < need])
                    del pg[:n0 - len(parts)]
                    have -= need
                    rest = allst[allst >= need] - need
                    starts = [rest]
                    nxt = (pg[0], parts[0].taken) if parts else (g, 0)
                    emitted += 1
                    yield self._out(item, (role, *nxt))
            if have and not self.drop_remainder:
                allst = np.concatenate(starts) if len(starts) > 1 else starts[0]
                pad = np.full(need - have, self.pad_id, dtype=np.int32)
                parts.append(_Pieces([pad], np.array([len(pad)], dtype=np.int64)))
                item = self._emit(parts, allst, valid=have)
                emitted += 1
                yield self._out(item, (role, g, 0))
            done = True
            if not emitted and res is None and not self._warned_empty:
                self._warned_empty = True
                _log.warning("TokenPacker yielded no batch this epoch%s: the source held fewer than one packed "
                             "batch of %d tokens (batch_size=%d x seq_len=%d)%s",
                             f" in DataLoader worker {wid}" if wi is not None else "", need, self.batch_size,
                             self.seq_len, "; drop_remainder=True dropped them" if have else "")
        finally:
            if refs:
                src._ragged_refs = False
            if res is not None:
                if done:
                    self._resume = None  # that epoch's remainder is delivered
                for k, v in saved.items():
                    setattr(src, k, v)
                if done and wi is None and "_resume" in saved and saved["_resume"] is not None \
                        and saved["_resume"].get("epoch") == epoch_now:
                    src._resume = None


class _Pieces:
    """A step's token stream as a list of arrays (whole documents, EOS tokens, or one array),
    consumed from the front by :meth:`take` without copying."""

    __slots__ = ("arrays", "ends", "i", "off", "left")

    @property
    def taken(self) -> int:
        """Tokens already taken from the front."""
        return (int(self.ends[-1]) if len(self.ends) else 0) - self.left

    def __init__(self, arrays: list[np.ndarray], lens: np.ndarray) -> None:
        self.arrays = arrays
        self.ends = np.cumsum(lens)
        self.i = 0  # first array not wholly taken
        self.off = 0  # tokens taken from it
        self.left = int(self.ends[-1]) if len(arrays) else 0

    def take(self, k: int, out: list[np.ndarray]) -> int:
        """Append views of the next ``min(k, left)`` tokens to ``out``; returns how many."""
        k = min(k, self.left)
        if k <= 0:
            return 0
        i, off, a, ends = self.i, self.off, self.arrays, self.ends
        done = (int(ends[i - 1]) if i else 0) + off
        target = done + k
        j = int(np.searchsorted(ends, target, side="right"))  # arrays i..j-1 end at or before target
        if j > i:
            out.append(a[i][off:] if off else a[i])
            out.extend(a[i + 1:j])
            off = 0
        if j < len(a) and target > (int(ends[j - 1]) if j else 0):
            base = int(ends[j - 1]) if j else 0
            end = target - base
            out.append(a[j][off:end] if j == i else a[j][:end])
            off = end
        self.i, self.off = j, off
        self.left -= k
        return k
