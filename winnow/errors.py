"""The one exception hierarchy of winnow.

Every error a user can cause says what was received, what was expected and how to fix it.
The CLI turns :class:`WinnowError` subclasses into a one-line message and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "WinnowError",
    "ConfigError",
    "InputError",
    "OutputError",
    "RecordError",
    "ManifestError",
    "ChecksumError",
    "CacheError",
    "CacheFullError",
    "FetchError",
]


class WinnowError(Exception):
    """Base of every error winnow raises on purpose."""


class ConfigError(WinnowError, ValueError):
    """A configuration key or value is wrong; raised before the pipeline starts."""

    def __init__(self, key: str, value: object, expected: str, hint: str = "") -> None:
        self.key = key
        self.value = value
        self.expected = expected
        msg = f"config {key}={value!r}: expected {expected}"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class InputError(WinnowError):
    """Input URIs match nothing or cannot be opened at all."""


class OutputError(WinnowError):
    """The output location cannot be written, or holds a previous run."""


class RecordError(WinnowError):
    """One record is malformed; the pipeline dead-letters it and goes on."""


class ManifestError(WinnowError):
    """index.json is missing, of an unknown format version, or inconsistent."""


class ChecksumError(WinnowError):
    """A shard's bytes do not match the xxh3-128 in the manifest."""


class CacheError(WinnowError):
    """The local shard cache cannot do what was asked."""


class CacheFullError(CacheError):
    """The cache limit is below what the sample order needs at once."""


class FetchError(WinnowError):
    """A shard could not be fetched from the object store after all retries."""
