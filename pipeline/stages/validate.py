"""Checking a stage's annotations against the columns it declared.

A value that does not fit its Arrow type would otherwise fail the whole job at the sink;
checked here, it dead-letters the one record, naming the stage, column, value and type.
The checks are precomputed per column and cost one ``isinstance`` per value.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa

__all__ = ["column_checker", "FieldChecks"]

_INT = (int, np.integer)
_NUM = (int, float, np.integer, np.floating)


def _slow(t: pa.DataType) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        try:
            pa.array([v], type=t)
            return True
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            return False

    return check


def column_checker(t: pa.DataType) -> Callable[[Any], bool]:
    """A predicate: does a non-null Python value fit Arrow type ``t``?"""
    if pa.types.is_boolean(t):
        return lambda v: isinstance(v, (bool, np.bool_))
    if pa.types.is_integer(t):
        bits = t.bit_width
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if pa.types.is_signed_integer(t) else (0, (1 << bits) - 1)
        return lambda v: isinstance(v, _INT) and not isinstance(v, bool) and lo <= int(v) <= hi
    if pa.types.is_floating(t):
        return lambda v: isinstance(v, _NUM) and not isinstance(v, bool)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return lambda v: isinstance(v, str)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return lambda v: isinstance(v, (bytes, bytearray, memoryview))
    return _slow(t)


class FieldChecks:
    """The declared columns of one stage, ready to check records."""

    def __init__(self, stage: str, fields: Sequence[pa.Field]) -> None:
        self._stage = stage
        self._checks = [(f.name, f.nullable, str(f.type), column_checker(f.type)) for f in fields]

    def problem(self, record: Mapping[str, Any]) -> str | None:
        """``None`` if every declared column fits, else what is wrong (for the dead letter)."""
        for name, nullable, type_name, ok in self._checks:
            v = record.get(name)
            if v is None:
                if not nullable:
                    return f"stage {self._stage} left non-nullable column {name} ({type_name}) empty"
                continue
            if not ok(v):
                return (
                    f"stage {self._stage} returned {v!r:.80} ({type(v).__name__}) for column {name}, "
                    f"which is declared {type_name}"
                )
        return None
