"""Human-readable byte sizes: ``"50GB"``, ``"512 MiB"``, ``1_000_000``; shared by the pipeline
config and the loader.

Decimal units (kB, MB, GB, TB) are powers of 1000 and binary units (KiB, MiB, GiB, TiB)
powers of 1024, as on a disk label. Plain numbers are bytes.
"""

from __future__ import annotations

import math
import re

from winnow.errors import ConfigError

__all__ = ["parse_size", "format_size"]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}

_PATTERN = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_size(value: int | float | str, key: str = "size") -> int:
    """Parse a byte size.

    Args:
        value: bytes as a number, or a string such as ``"50GB"``, ``"1.5 GiB"``, ``"800mb"``.
        key: the argument name, for the error message.

    Returns:
        The size in bytes (rounded down).

    Raises:
        ConfigError: the value is negative, not a number, or has an unknown unit.
    """
    if isinstance(value, bool):
        raise ConfigError(key, value, "a byte size such as 50GB or an integer number of bytes")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ConfigError(key, value, "a finite byte size such as 50GB")
        if value < 0:
            raise ConfigError(key, value, "a non-negative byte size")
        return int(value)
    if not isinstance(value, str):
        raise ConfigError(key, value, "a byte size such as 50GB or an integer number of bytes")
    m = _PATTERN.match(value)
    if not m or m.group(2).lower() not in _UNITS:
        raise ConfigError(
            key, value, "a byte size such as 50GB, 512MiB or 1000000",
            "units are B, kB, MB, GB, TB (powers of 1000) and KiB, MiB, GiB, TiB (powers of 1024)",
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_size(n: int | float) -> str:
    """``1234567890`` -> ``"1.23 GB"`` (decimal units, three significant digits)."""
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"  # pragma: no cover
