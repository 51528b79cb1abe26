"""Human-readable sizes: ``"50GB"``, ``"256MiB"``, ``1_000_000``."""

from __future__ import annotations

import math
import re

__all__ = ["parse_size", "format_size"]

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: int | float | str, *, name: str = "size") -> int:
    """Bytes from an int or a string such as ``"50GB"`` (decimal) or ``"4GiB"`` (binary).

    Raises:
        ValueError: the text is not a number with a known unit, or is negative.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r}: expected a byte size such as 50GB or 4GiB")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"{name}={value!r}: expected a finite byte size such as 50GB")
        if value < 0:
            raise ValueError(f"{name}={value!r}: expected a non-negative byte size")
        return int(value)
    m = _RE.match(str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(
            f"{name}={value!r}: expected a byte size such as 50GB, 256MiB or 1000000 "
            f"(units: {', '.join(u for u in _UNITS if u)})"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_size(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
