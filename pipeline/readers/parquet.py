"""Parquet: rows read in record batches sized by bytes, one record per row.

The text comes from a string column (a binary column is decoded as UTF-8 row by row), an
optional image from a binary column (or a ``{bytes, path}`` struct as Hugging Face writes it).
A row's source is ``<uri>:<row>`` with the row counted from 1 across the whole file, like a
JSONL line number. Problems of a value dead-letter their row. Problems of the schema (no text
column, a text column of another type: int, list, struct ...) dead-letter every row of the file,
one dead letter per row (``<uri>:<row>``, the row count taken from the footer, no row data read),
so the rows count as read and the dead-letter threshold judges them as it would JSONL lines with
the same mistake. Rows a corrupt row group makes unreadable are dead-lettered the same way: the
first with the error, each later one saying it was skipped. These dead letters carry no payload
(``text`` is null): the row is still in the source file at the row number the source names.
"""

from __future__ import annotations

from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from winnow.errors import RecordError
from winnow.pipeline.config import ReaderConfig
from winnow.pipeline.readers.common import build_record, dead, decode_text, image_from_field, open_or_dead
from winnow.pipeline.records import error_text

__all__ = ["read_parquet"]

_BATCH_BYTES = 32 * 2**20  # target uncompressed bytes per record batch
_MAX_BATCH_ROWS = 65536


class _Unreadable:
    """A value pyarrow could not turn into a Python object."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


def _is_string(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)


def _is_image_type(t: pa.DataType) -> bool:
    if pa.types.is_struct(t):
        idx = t.get_field_index("bytes")
        return idx >= 0 and _is_binary(t.field(idx).type)
    return _is_binary(t) or pa.types.is_null(t)


def _values(col: pa.Array) -> list[Any]:
    """A column as Python values; a value that fails to convert becomes :class:`_Unreadable`."""
    try:
        return col.to_pylist()
    except Exception:  # noqa: BLE001 - find the bad value(s) one by one
        out: list[Any] = []
        for i in range(len(col)):
            try:
                out.append(col[i].as_py())
            except Exception as exc:  # noqa: BLE001
                out.append(_Unreadable(exc))
        return out


def _batch_rows(pf: pq.ParquetFile) -> int:
    md = pf.metadata
    rows = md.num_rows
    if rows <= 0:
        return 1024
    total = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
    per_row = max(1, total // rows)
    return int(max(1, min(_MAX_BATCH_ROWS, _BATCH_BYTES // per_row)))


def _schema_problem(schema: pa.Schema, cfg: ReaderConfig) -> str | None:
    """Why no row of this file can be read with ``cfg``, or None."""
    names = schema.names
    has_image = bool(cfg.image_field) and cfg.image_field in names
    if cfg.text_field not in names:
        if has_image:
            return None
        return (
            f"has no column {cfg.text_field!r} (columns: {', '.join(names) or 'none'}); "
            "set reader.text_field to the column holding the text"
        )
    t = schema.field(cfg.text_field).type
    if not (_is_string(t) or _is_binary(t) or pa.types.is_null(t)):
        return (
            f"column {cfg.text_field!r} has type {t}, expected a string column; "
            "set reader.text_field to the column holding the text"
        )
    if has_image and not _is_image_type(schema.field(cfg.image_field).type):
        return (
            f"column {cfg.image_field!r} has type {schema.field(cfg.image_field).type}, expected binary "
            "image bytes (or a struct with a binary 'bytes' field); set reader.image_field to the image column"
        )
    return None


def _columns(schema: pa.Schema, cfg: ReaderConfig) -> list[str]:
    """Columns to read: text, id, image and the meta columns (binary ones only on request)."""
    core = {cfg.text_field, cfg.id_field, cfg.image_field}
    if cfg.meta_fields:
        wanted = core | set(cfg.meta_fields)
        return [n for n in schema.names if n in wanted]
    return [n for n in schema.names if n in core or not _is_binary(schema.field(n).type)]


def read_parquet(uri: str, cfg: ReaderConfig) -> Iterator[dict[str, Any]]:
    """Records and dead letters of one Parquet file, in row order.

    Binary columns other than the image column are not copied into ``meta`` unless
    ``cfg.meta_fields`` names them (they would bloat it as escaped text).
    """
    raw, failed = open_or_dead(uri)
    if raw is None:
        yield failed
        return
    with raw:
        try:
            pf = pq.ParquetFile(raw)
            schema = pf.schema_arrow
        except Exception as exc:  # noqa: BLE001
            yield dead(uri, f"{uri} is not a readable Parquet file: {error_text(exc)}")
            return
        total = pf.metadata.num_rows
        problem = _schema_problem(schema, cfg)
        if problem:
            error = f"{uri} {problem}; every row of the file is dead-lettered ({total:,} rows)"
            for row in range(1, total + 1):  # lazily: nothing is read, one small dict at a time
                yield dead(f"{uri}:{row}", error)
            return
        text_binary = cfg.text_field in schema.names and _is_binary(schema.field(cfg.text_field).type)
        batches = pf.iter_batches(batch_size=_batch_rows(pf), columns=_columns(schema, cfg), use_threads=False)
        row = 0
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - a corrupt row group ends this file
                yield dead(
                    f"{uri}:{row + 1}",
                    f"cannot read rows from {row + 1} on: {error_text(exc)}; the {row:,} rows before "
                    "were read; check that the file is intact",
                )
                lost = f"row skipped: rows from {row + 1:,} on of {uri} cannot be read (see row {row + 1:,})"
                for later in range(row + 2, total + 1):
                    yield dead(f"{uri}:{later}", lost)
                return
            columns = {name: _values(batch.column(i)) for i, name in enumerate(batch.schema.names)}
            for i in range(batch.num_rows):
                row += 1
                fields = {name: vals[i] for name, vals in columns.items()}
                yield _row(fields, f"{uri}:{row}", cfg, text_binary)


def _row(fields: dict[str, Any], source: str, cfg: ReaderConfig, text_binary: bool) -> dict[str, Any]:
    for name, value in fields.items():
        if isinstance(value, _Unreadable):
            return dead(source, f"column {name!r} holds a value that cannot be read: {error_text(value.exc)}")
    try:
        if text_binary and fields.get(cfg.text_field) is not None:
            fields[cfg.text_field] = decode_text(fields[cfg.text_field], f"column {cfg.text_field!r}", strip=False)
        image = image_from_field(fields, cfg)
        text = fields.get(cfg.text_field)
        size = (len(text) if isinstance(text, str) else 0) + (len(image) if image else 0)
        if size > cfg.max_record_bytes:
            raise RecordError(
                f"row is {size:,} bytes, over reader.max_record_bytes={cfg.max_record_bytes:,}; "
                "raise reader.max_record_bytes or split the record"
            )
        return build_record(fields, cfg, source, image=image, image_what=f"column {cfg.image_field!r}")
    except RecordError as exc:
        return dead(source, str(exc))
