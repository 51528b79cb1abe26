"""The ragged gather copies row by row for rows of some length and builds one index for many
short rows; both give exactly the rows asked for, in order, with their offsets."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from winnow.cache.memory import _ragged


def column(lengths: list[int], base: int, lead: int = 0) -> SimpleNamespace:
    offs = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offs[1:])
    offs += lead  # a batch whose values start inside a larger buffer
    values = np.arange(base, base + int(offs[-1]), dtype=np.int32)
    return SimpleNamespace(kind="ragged", values=values, offsets=offs, width=-1)


def fixed2d(rows: int, width: int, base: int) -> SimpleNamespace:
    vals = np.arange(base, base + rows * width, dtype=np.int32).reshape(rows, width)
    return SimpleNamespace(kind="fixed2d", values=vals, offsets=None, width=width)


def want_rows(cv, rows):
    if cv.kind == "fixed2d":
        return [cv.values[r] for r in rows]
    return [cv.values[cv.offsets[r]:cv.offsets[r + 1]] for r in rows]


@pytest.mark.parametrize("lengths", [[1, 2, 3, 1, 5] * 20, [300, 7, 1200, 64, 0, 90] * 5])
def test_ragged_gather_returns_the_rows_in_order(lengths):
    a = column(lengths, 0, lead=3)
    b = column(lengths[::-1], 10_000)
    c = fixed2d(12, 6, 50_000)
    rng = np.random.default_rng(1)
    parts = [(a, rng.permutation(len(lengths))[:40]), (c, np.array([11, 0, 5])), (b, rng.integers(0, len(lengths), 25))]
    n = sum(len(r) for _, r in parts)
    values, offsets = _ragged(parts, n)
    expect = [row for cv, rows in parts for row in want_rows(cv, rows)]
    assert len(offsets) == n + 1 and offsets[0] == 0 and offsets[-1] == len(values)
    for i, row in enumerate(expect):
        assert np.array_equal(values[offsets[i]:offsets[i + 1]], row), f"row {i}"
