"""LSH banding: bands x rows from a Jaccard threshold, and band keys of signature batches.

The band count and rows per band minimise the weighted false-positive and false-negative
areas under the LSH S-curve, as datasketch's ``MinHashLSH`` chooses them (the same choice on
every case the tests compare, without importing SciPy: about 0.3 s of every process). Band
keys are vectorised: each band's rows hash to 128 bits (two seeded multiply-sum hashes plus the
MurmurHash3 finalizer), prefixed by the band index, so equal keys mean (all but certainly) equal
bands.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from winnow.filters.dedup.minhash import _fmix64

__all__ = ["optimal_bands", "band_keys", "band_key_array", "collision_probability"]


@lru_cache(maxsize=64)
def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5) -> tuple[int, int]:
    """``(bands, rows)`` minimising ``fp_weight * FP area + fn_weight * FN area`` at ``threshold``.

    The areas lie under the collision probability ``P(s) = 1 - (1 - s**rows)**bands`` below the
    threshold (false positives) and above ``1 - P`` from it to 1 (false negatives); every
    ``bands * rows <= num_perm`` is weighed, bands then rows ascending, and the first of equal
    errors wins, as datasketch's search does. The integrands are polynomials of degree
    ``bands * rows <= num_perm``, which Gauss-Legendre quadrature with ``num_perm // 2 + 1``
    nodes integrates exactly up to rounding (datasketch integrates adaptively with SciPy).

    Raises:
        ValueError: a threshold outside [0, 1], fewer than 2 permutations, or weights that are
            negative or both zero.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if num_perm < 2:
        raise ValueError(f"num_perm must be at least 2, got {num_perm}")
    if fp_weight < 0.0 or fn_weight < 0.0 or fp_weight + fn_weight <= 0.0:
        raise ValueError(f"weights must be non-negative and not both zero, got {(fp_weight, fn_weight)}")
    pairs = [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)]
    bands = np.array([b for b, _ in pairs], dtype=np.float64)[:, None]
    rows = np.array([r for _, r in pairs], dtype=np.float64)[:, None]
    nodes, weights = np.polynomial.legendre.leggauss(num_perm // 2 + 1)

    def area(lo: float, hi: float, missed: bool) -> np.ndarray:
        s = lo + (hi - lo) * (nodes + 1.0) / 2.0
        q = (1.0 - s**rows) ** bands  # the probability of sharing no band
        return (hi - lo) / 2.0 * ((q if missed else 1.0 - q) @ weights)

    error = fp_weight * area(0.0, threshold, False) + fn_weight * area(threshold, 1.0, True)
    return pairs[int(np.argmin(error))]


def collision_probability(similarity: float, bands: int, rows: int) -> float:
    """Probability that two sets of Jaccard ``similarity`` share at least one band."""
    return 1.0 - (1.0 - similarity**rows) ** bands




@lru_cache(maxsize=16)
def _multipliers(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.RandomState(seed)
    m = g.randint(0, 1 << 62, size=(2, rows), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    return m[0], m[1]


def _band_records(sig: np.ndarray, bands: int, rows: int, seed: int) -> np.ndarray:
    """``[n, bands]`` records (band number, two 64-bit hashes): 18 bytes each, no padding."""
    n = sig.shape[0]
    if bands * rows > sig.shape[1]:
        raise ValueError(f"bands*rows = {bands * rows} exceeds the signature length {sig.shape[1]}")
    m1, m2 = _multipliers(rows, seed)
    v = sig[:, : bands * rows].astype(np.uint64).reshape(n, bands, rows)
    h1 = _fmix64((v * m1).sum(axis=2, dtype=np.uint64))
    h2 = _fmix64((v * m2).sum(axis=2, dtype=np.uint64) ^ np.uint64(0x9E3779B97F4A7C15))
    rec = np.empty((n, bands), dtype=[("band", "<u2"), ("h1", "<u8"), ("h2", "<u8")])
    rec["band"] = np.arange(bands, dtype=np.uint16)[None, :]
    rec["h1"], rec["h2"] = h1, h2
    return rec


def band_keys(sig: np.ndarray, bands: int, rows: int, seed: int = 0) -> list[list[bytes]]:
    """Band keys of each signature row: ``keys[i][j]`` is 18 bytes (band j, 128-bit hash).

    Args:
        sig: ``[n, num_perm]`` uint32 signatures (``bands * rows <= num_perm``).
        bands, rows: the banding.
        seed: seeds the band hashes (fixed per run, so keys agree across workers).
    """
    n = sig.shape[0]
    raw = _band_records(sig, bands, rows, seed).tobytes()
    w = 18
    return [[raw[(i * bands + j) * w:(i * bands + j + 1) * w] for j in range(bands)] for i in range(n)]


def band_key_array(sig: np.ndarray, bands: int, rows: int, seed: int = 0, width: int = 18) -> np.ndarray:
    """:func:`band_keys` as one ``[n, bands]`` array of ``S<width>`` values: the first
    ``width`` bytes of each key (no Python object per key)."""
    if not 1 <= width <= 18:
        raise ValueError(f"width must be 1..18 bytes, got {width}")
    n = sig.shape[0]
    raw = _band_records(sig, bands, rows, seed).view(np.uint8).reshape(n, bands, 18)
    return np.ascontiguousarray(raw[:, :, :width]).view(f"S{width}").reshape(n, bands)
