"""Term list files (the tokenizer's domain dictionary, the augment stage's protected terms)."""

from __future__ import annotations

import fsspec

from winnow.errors import InputError

__all__ = ["read_term_lines"]


def read_term_lines(path: str, key: str) -> list[tuple[int, str]]:
    """``(line number, term)`` of a term list file: one term per line, stripped, blank lines
    and ``#`` comments skipped, duplicates dropped (first kept), order kept.

    Args:
        path: a local path or fsspec URL; empty gives no terms.
        key: the config key that named the file (for the error).

    Raises:
        InputError: the file cannot be read.
    """
    if not path:
        return []
    try:
        with fsspec.open(path, "r", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{key} {path}: cannot be read ({exc}); check the path") from exc
    seen: dict[str, int] = {}
    for i, line in enumerate(lines, 1):
        term = line.strip()
        if term and not term.startswith("#"):
            seen.setdefault(term, i)
    return [(i, term) for term, i in seen.items()]
