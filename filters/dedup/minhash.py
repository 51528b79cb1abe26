"""MinHash signatures over word n-gram shingles, vectorised with numpy across a batch.

Text is normalized (lower-cased; every run of characters that are not letters or digits
becomes one space), split into words, and every run of ``ngram`` consecutive words is a
shingle. The whole batch is hashed at once: one polynomial hash per word from a prefix sum over
the bytes, one 64-bit hash per shingle from its words, then the MurmurHash3 finalizer. The
``num_perm`` permutations are the affine maps ``a*h + b mod 2**32`` with odd ``a`` (datasketch's
``affine32`` scheme, with the same seeded ``a`` and ``b``), applied to a block of shingles at a
time and reduced to per-document minima, so there is no Python call per shingle or permutation.

Memory stays bounded for very long documents: text is cut at whitespace into windows of at most
``window_chars`` characters (overlapping by ``ngram - 1`` words, so no shingle is lost) and
shingles are permuted in blocks of ``block`` rows.
"""

from __future__ import annotations

import re
from typing import Iterator, Sequence

import numpy as np

__all__ = ["MinHasher", "normalize_bytes", "jaccard", "EMPTY", "sketch_of", "sketch_similarity"]

#: Signature value of an empty slot (no shingle seen).
EMPTY = np.uint32(0xFFFFFFFF)

_TABLE = bytearray(range(256))
for _c in range(128):
    _ch = chr(_c)
    _TABLE[_c] = ord(_ch.lower()) if _ch.isalnum() else 32
_TABLE = bytes(_TABLE)
_TOKEN = re.compile(r"\S+")

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_F32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))
_BASE = np.uint64(0x100000001B3)
_BASE_INV = np.uint64(pow(0x100000001B3, -1, 1 << 64))


def normalize_bytes(text: str) -> bytes:
    """Lower-cased UTF-8 with every non-alphanumeric ASCII byte turned into a space.

    ASCII text takes a byte-table fast path (the table lower-cases too); other text is
    lower-cased as a string first. Non-ASCII punctuation stays part of its word (a regex over
    every character would cost more than all the hashing).
    """
    if text.isascii():
        return text.encode("ascii").translate(_TABLE)
    return text.lower().encode("utf-8", "surrogatepass").translate(_TABLE)


def _fmix64(h: np.ndarray) -> np.ndarray:
    h ^= h >> _S33
    h *= _M1
    h ^= h >> _S33
    h *= _M2
    h ^= h >> _S33
    return h


def _fmix32(h: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2 = _F32
    h ^= h >> s1
    h *= m1
    h ^= h >> s2
    h *= m2
    h ^= h >> s1
    return h


def _powers(base: np.uint64, n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.uint64)
    out[0] = 1
    out[1:] = base
    np.cumprod(out, out=out)  # wraps modulo 2**64, as intended
    return out


class MinHasher:
    """Signatures of many texts at once.

    Args:
        num_perm: permutations (signature length).
        ngram: words per shingle; a text with fewer words is one shingle.
        seed: seeds the permutations (same as datasketch ``MinHash(seed=...)``, affine32).
        window_chars: texts longer than this are signed window by window.
        block: shingles permuted at a time (bounds the ``num_perm x block`` work array).
    """

    def __init__(self, num_perm: int = 128, ngram: int = 5, seed: int = 1,
                 window_chars: int = 1 << 18, block: int = 8192) -> None:
        self.num_perm, self.ngram, self.seed = num_perm, ngram, seed
        self.window_chars, self.block = window_chars, block
        gen = np.random.RandomState(seed)
        a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
        self.a, self.b = a.astype(np.uint32), b.astype(np.uint32)
        self._a_col, self._b_col = self.a[:, None], self.b[:, None]
        mult = np.random.RandomState(seed + 7919).randint(0, 1 << 62, ngram, dtype=np.uint64)
        self._mult = mult * np.uint64(2) + np.uint64(1)
        # UTF-8 of a window is at most 4 bytes per character, plus the joining spaces.
        self._cap = 4 * window_chars + 64
        self._pow = _powers(_BASE, self._cap + 1)
        self._pinv = _powers(_BASE_INV, self._cap + 1)

    # ----------------------------------------------------------------------------------------
    # Shingles

    def _pieces(self, text: str) -> Iterator[bytes]:
        """Normalized windows of ``text``; consecutive windows share ``ngram - 1`` words."""
        n, w = len(text), self.window_chars
        if n <= w:
            yield normalize_bytes(text)
            return
        start = 0
        while start < n:
            end = min(n, start + w)
            if end < n:
                cut = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
                end = cut if cut > start else end
            yield normalize_bytes(text[start:end])
            if end >= n:
                return
            back = max(start + 1, end - 4096)
            starts = [m.start() for m in _TOKEN.finditer(text, back, end)]
            nxt = starts[-(self.ngram - 1)] if self.ngram > 1 and len(starts) >= self.ngram - 1 else end
            start = nxt if nxt > start else end

    def _shingles(self, pieces: list[bytes], owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """64-bit shingle hashes of ``pieces`` (joined), and the owner of each shingle."""
        n = self.ngram
        buf = b" ".join(pieces)
        a = np.frombuffer(buf, dtype=np.uint8)
        lens = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        offs = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum(lens + 1, out=offs[1:])
        flags = np.zeros(len(a) + 2, dtype=np.int8)
        np.not_equal(a, 32, out=flags[1:-1].view(bool))
        edges = np.flatnonzero(np.diff(flags))
        starts, ends = edges[0::2], edges[1::2]
        if len(starts) == 0:
            return np.empty(0, np.uint64), np.empty(0, np.int64)
        h = np.empty(len(a) + 1, dtype=np.uint64)
        h[0] = 0
        np.multiply(a, self._pow[: len(a)], out=h[1:])
        np.cumsum(h[1:], out=h[1:])
        words = (h[ends] - h[starts]) * self._pinv[starts]
        piece = np.searchsorted(offs, starts, side="right") - 1
        nw = len(words)
        out_h, out_o = [], []
        m = nw - n + 1
        if m > 0:
            sh = words[:m] * self._mult[0]
            for k in range(1, n):
                sh += words[k:m + k] * self._mult[k]
            ok = piece[:m] == piece[n - 1:]
            out_h.append(sh[ok])
            out_o.append(owners[piece[:m][ok]])
        # Pieces with fewer than n words: one shingle of all their words.
        counts = np.bincount(piece, minlength=len(pieces))
        for p in np.flatnonzero((counts > 0) & (counts < n)):
            first = int(np.searchsorted(piece, p))
            c = int(counts[p])
            out_h.append(np.array([(words[first:first + c] * self._mult[:c]).sum(dtype=np.uint64)], dtype=np.uint64))
            out_o.append(owners[p:p + 1])
        if not out_h:
            return np.empty(0, np.uint64), np.empty(0, np.int64)
        hs, os_ = np.concatenate(out_h), np.concatenate(out_o)
        if len(out_h) > 1:
            order = np.argsort(os_, kind="stable")
            hs, os_ = hs[order], os_[order]
        return hs, os_

    def shingle_values(self, hashes64: np.ndarray) -> np.ndarray:
        """The 32-bit value of each shingle that the permutations act on (fmix64, fmix32)."""
        x = (_fmix64(hashes64.copy()) >> np.uint64(32)).astype(np.uint32)
        return _fmix32(x)

    def _groups(self, texts: Sequence[str | None]) -> Iterator[tuple[list[bytes], np.ndarray]]:
        """Normalized pieces grouped into batches of at most about ``window_chars`` bytes."""
        pieces: list[bytes] = []
        owners: list[int] = []
        size = 0
        for i, t in enumerate(texts):
            if not t:
                continue
            for p in self._pieces(t):
                if size + len(p) > self._cap - 8 and pieces:
                    yield pieces, np.array(owners, dtype=np.int64)
                    pieces, owners, size = [], [], 0
                pieces.append(p)
                owners.append(i)
                size += len(p) + 1
        if pieces:
            yield pieces, np.array(owners, dtype=np.int64)

    # ----------------------------------------------------------------------------------------
    # Signatures

    def signatures(self, texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """Signatures of ``texts``: ``(sig[len(texts), num_perm] uint32, signed[len(texts)] bool)``.

        A text with no word (None, empty, punctuation only) is not signed; its row is all
        ``EMPTY``.
        """
        sig = np.full((self.num_perm, len(texts)), EMPTY, dtype=np.uint32)
        seen = np.zeros(len(texts), dtype=bool)
        work = np.empty((self.num_perm, self.block), dtype=np.uint32)
        for pieces, owners in self._groups(texts):
            hashes, own = self._shingles(pieces, owners)
            if len(hashes) == 0:
                continue
            x = self.shingle_values(hashes)
            seen[own] = True
            for s in range(0, len(x), self.block):
                xs, ds = x[s:s + self.block], own[s:s + self.block]
                w = work[:, : len(xs)]
                np.multiply(self._a_col, xs, out=w)
                np.add(w, self._b_col, out=w)
                segs = np.flatnonzero(ds[1:] != ds[:-1]) + 1
                segs = np.concatenate((np.zeros(1, dtype=np.int64), segs))
                mins = np.minimum.reduceat(w, segs, axis=1)
                docs = ds[segs]
                sig[:, docs] = np.minimum(sig[:, docs], mins)
        return np.ascontiguousarray(sig.T), seen

    def signature(self, text: str | None) -> np.ndarray | None:
        """One text's signature, or None when it has no word."""
        sig, seen = self.signatures([text])
        return sig[0] if seen[0] else None

    def shingle_hashes(self, text: str | None) -> np.ndarray:
        """Sorted unique 64-bit hashes of ``text``'s shingles (for exact Jaccard)."""
        parts = [self._shingles(p, o)[0] for p, o in self._groups([text])]
        return np.unique(np.concatenate(parts)) if parts else np.empty(0, np.uint64)

    def shingle_hashes_many(self, texts: Sequence[str | None]) -> list[np.ndarray]:
        """:meth:`shingle_hashes` of each text (equal arrays), hashed together: one sort for
        the batch instead of the numpy calls of one text at a time."""
        hs, os_ = [], []
        for pieces, owners in self._groups(texts):
            h, o = self._shingles(pieces, owners)
            hs.append(h)
            os_.append(o)
        n = len(texts)
        if not hs:
            return [np.empty(0, np.uint64) for _ in range(n)]
        h, o = np.concatenate(hs), np.concatenate(os_)
        if len(o) > 1 and bool((o[1:] < o[:-1]).any()):  # not by owner (cannot happen): make it so
            order = np.argsort(o, kind="stable")
            h, o = h[order], o[order]
        bounds = np.searchsorted(o, np.arange(n + 1)).tolist()
        for i in range(n):  # each owner's hashes sorted in place (smaller sorts than one of all)
            if bounds[i + 1] - bounds[i] > 1:
                h[bounds[i]:bounds[i + 1]].sort()
        if len(h) > 1:
            new = np.empty(len(h), dtype=bool)
            new[0] = True
            np.not_equal(h[1:], h[:-1], out=new[1:])
            new[1:] |= o[1:] != o[:-1]
            h, o = h[new], o[new]
        bounds = np.searchsorted(o, np.arange(n + 1)).tolist()
        return [h[bounds[i]:bounds[i + 1]] for i in range(n)]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique hash arrays (1.0 for two empty sets)."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    if len(small) == 0:
        return 0.0
    # members of the smaller set found in the larger (both sorted): a binary search each,
    # not the concatenate-and-sort of np.intersect1d
    at = np.searchsorted(large, small)
    np.minimum(at, len(large) - 1, out=at)
    inter = int(np.count_nonzero(large[at] == small))
    return inter / (len(a) + len(b) - inter)


def sketch_of(sig: np.ndarray) -> np.ndarray:
    """Compact sketches of ``[n, num_perm]`` signatures: the low 16 bits of every value.

    Two sketches agree where the signatures agree, and elsewhere only by chance (one in
    65,536 per value), so the fraction of equal values still estimates the Jaccard similarity,
    from half the bytes.
    """
    return (sig & np.uint32(0xFFFF)).astype("<u2")


def sketch_similarity(a: bytes | np.ndarray, b: bytes | np.ndarray) -> float:
    """Estimated Jaccard of two sketches (or full signatures): the fraction of equal values."""
    x = np.frombuffer(a, dtype="<u2") if isinstance(a, (bytes, bytearray)) else a
    y = np.frombuffer(b, dtype="<u2") if isinstance(b, (bytes, bytearray)) else b
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"sketches of different or zero length: {len(x)} and {len(y)}")
    return float(np.count_nonzero(x == y)) / len(x)
