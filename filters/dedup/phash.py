"""Perceptual hashes of images (pHash) and Hamming-distance LSH keys.

pHash: a channel resized to 32x32, a 2-D DCT (a precomputed matrix, numpy only), the 8x8 lowest
frequencies compared with their median: 64 bits that survive resizing, re-encoding, light crops
and brightness or saturation shifts. :func:`phash_ycc` hashes the luma (Y) and both chroma
channels (Cb, Cr): grey-level structure alone calls many different simple pictures alike (a
gradient with a small shape), so candidates must also be close in colour layout.
LSH for Hamming distance samples ``rows`` bit positions per band (seeded): images within
distance d share a band with probability ``1 - (1 - C(64-d, rows)/C(64, rows))**bands``.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np

__all__ = ["phash", "phash_ycc", "phash_image", "images_similar", "hamming", "image_band_keys", "band_probability", "caption_similarity"]

_SIZE, _LOW = 32, 8


@lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    n = _SIZE
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    m[0, :] = math.sqrt(1.0 / n)
    return m[:_LOW]  # only the low-frequency rows are needed


def _hash_channel(a: np.ndarray) -> int:
    d = _dct_matrix()
    low = d @ a @ d.T  # 8x8 lowest frequencies
    bits = (low > np.median(low)).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def phash_image(img) -> tuple[int, int, int]:
    """64-bit pHashes ``(Y, Cb, Cr)`` of a PIL image."""
    from PIL import Image

    ycc = img.convert("RGB").convert("YCbCr").resize((_SIZE, _SIZE), Image.Resampling.LANCZOS)
    a = np.asarray(ycc, dtype=np.float64)
    return _hash_channel(a[:, :, 0]), _hash_channel(a[:, :, 1]), _hash_channel(a[:, :, 2])


def phash_ycc(data: bytes) -> tuple[int, int, int]:
    """``(Y, Cb, Cr)`` 64-bit pHashes of encoded image bytes (raises on undecodable bytes)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (2 * _SIZE, 2 * _SIZE))  # JPEG: decode at reduced size
        return phash_image(img)


def phash(data: bytes) -> int:
    """64-bit luma pHash of encoded image bytes (the banded part)."""
    return phash_ycc(data)[0]


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes."""
    return (a ^ b).bit_count()


@lru_cache(maxsize=16)
def _samples(bands: int, rows: int, seed: int) -> np.ndarray:
    g = np.random.RandomState(seed)
    return np.stack([g.permutation(64)[:rows] for _ in range(bands)])


def image_band_keys(h: int, bands: int, rows: int, seed: int = 1) -> list[bytes]:
    """``bands`` keys of ``h``: band index plus the sampled bits, packed."""
    bits = np.unpackbits(np.array([h], dtype=">u8").view(np.uint8))
    sel = bits[_samples(bands, rows, seed)]  # [bands, rows]
    packed = np.packbits(sel, axis=1)
    return [j.to_bytes(2, "little") + packed[j].tobytes() for j in range(bands)]


def band_probability(distance: int, bands: int, rows: int) -> float:
    """Probability that two hashes ``distance`` bits apart share at least one band."""
    if rows > 64 - distance:
        return 0.0
    p = math.comb(64 - distance, rows) / math.comb(64, rows)
    return 1.0 - (1.0 - p) ** bands


def images_similar(a: tuple[int, int, int], b: tuple[int, int, int], max_distance: int, max_color_distance: int) -> bool:
    """Luma hashes within ``max_distance`` bits and chroma hashes within ``max_color_distance`` (Cb + Cr)."""
    return hamming(a[0], b[0]) <= max_distance and hamming(a[1], b[1]) + hamming(a[2], b[2]) <= max_color_distance


def _grams(text: str | None, n: int) -> set[str]:
    words = (text or "").lower().split()
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def caption_similarity(a: str | None, b: str | None, n: int = 2) -> float:
    """Jaccard similarity of the captions' word n-gram sets (1.0 when both are empty)."""
    ga, gb = _grams(a, n), _grams(b, n)
    if not ga and not gb:
        return 1.0
    return len(ga & gb) / len(ga | gb)
