"""JSON Lines (plain, gzip, zstd, bz2, xz): one JSON object per line, read as a stream.

Lines are split from the decompressed byte stream in bounded chunks, so neither the file nor
an over-long line is ever held whole. Each bad line becomes one dead letter with source
``<uri>:<line>`` (1-based) and the rest of the file goes on; a truncated compressed tail gives
the complete lines before it as records, then one dead letter saying the stream is truncated.
"""

from __future__ import annotations

import json
import re
from typing import IO, Any, Iterator

from winnow.errors import RecordError
from winnow.pipeline.config import ReaderConfig
from winnow.pipeline.readers.common import (
    build_record,
    dead,
    decompress,
    describe,
    image_from_field,
    open_or_dead,
    split_compression,
)
from winnow.pipeline.records import error_text

__all__ = ["read_jsonl", "LineReader"]

_CHUNK = 1 << 20
_HEAD = 4096  # bytes of an over-long or broken line kept in its dead letter
# A \uD800-\uDFFF escape: json.loads turns an unpaired one into a lone surrogate, which is
# not valid Unicode and would fail later when the record is written as Arrow UTF-8.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class LineReader:
    """Split a binary stream into lines without holding more than ``max_bytes`` of one line.

    Iterating yields ``(line, size)``: the line without its ``\\n`` and its full length in
    bytes. When ``size > max_bytes`` the line was too long and ``line`` holds only its first
    few KB; the reader skips to the next newline without keeping the rest. ``lineno`` is the
    1-based number of the line last yielded, ``pending`` the bytes of an unfinished line.
    Errors of the stream (a truncated compressed tail) propagate to the caller.
    """

    def __init__(self, stream: IO[bytes], max_bytes: int, chunk: int = _CHUNK) -> None:
        self._stream = stream
        self._max = max_bytes
        self._chunk = chunk
        self._buf = bytearray()
        self.lineno = 0

    @property
    def pending(self) -> bytes:
        return bytes(self._buf[:_HEAD])

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        buf = self._buf
        size = 0  # length of the current line so far, kept or not
        over = False
        # read1 hands over what one decompression step produced; read(n) would drop the
        # complete lines before a truncated tail when the error ends the call.
        read = getattr(self._stream, "read1", None) or self._stream.read
        while True:
            chunk = read(self._chunk)
            if not chunk:
                break
            pos, n = 0, len(chunk)
            while pos < n:
                nl = chunk.find(b"\n", pos)
                end = n if nl < 0 else nl
                if nl >= 0 and not buf and not over and end - pos <= self._max:
                    line, size = chunk[pos:end], end - pos  # the common case: no copy into buf
                else:
                    if not over and size + (end - pos) > self._max:
                        over = True
                        del buf[_HEAD:]
                    if not over:
                        buf += chunk[pos:end]
                    elif len(buf) < _HEAD:  # keep only a head of an over-long line
                        buf += chunk[pos : min(end, pos + _HEAD - len(buf))]
                    size += end - pos
                    if nl < 0:
                        break
                    line = bytes(buf)
                    buf.clear()
                self.lineno += 1
                yield line, size
                size, over, pos = 0, False, nl + 1
        if size or buf:  # a last line without a newline
            line = bytes(buf)
            buf.clear()
            self.lineno += 1
            yield line, size


def _parse_line(line: bytes, source: str, cfg: ReaderConfig) -> dict[str, Any] | None:
    """One line to a record, a dead letter, or None for a blank line."""
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line.strip():
        return None
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return dead(
            source,
            f"line is not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1}); "
            "re-encode the file as UTF-8",
            raw=line,
        )
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return dead(source, f"malformed JSON at column {exc.colno}: {exc.msg}; expected one JSON object per line", raw=line)
    except (ValueError, RecursionError) as exc:
        return dead(source, f"malformed JSON: {type(exc).__name__}: {exc}", raw=line)
    if not isinstance(obj, dict):
        return dead(source, f"line is {describe(obj)}; expected a JSON object per line", raw=line)
    if _SURROGATE_ESCAPE.search(line):
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return dead(
                source,
                "line has an unpaired \\ud800-\\udfff escape, which is not valid Unicode; "
                "fix the writer that produced it",
                raw=line,
            )
    try:
        image = image_from_field(obj, cfg)
        return build_record(obj, cfg, source, image=image, image_what=f"field {cfg.image_field!r}")
    except RecordError as exc:
        return dead(source, str(exc), raw=line)


def read_jsonl(uri: str, cfg: ReaderConfig) -> Iterator[dict[str, Any]]:
    """Records and dead letters of one JSON Lines file, in line order.

    Args:
        uri: an fsspec URL or local path; ``.gz``, ``.zst``/``.zstd``, ``.bz2`` and ``.xz``
            are decompressed on the fly.
        cfg: the reader config (text, id, meta and image fields, size limit).
    """
    _, codec = split_compression(uri)
    raw, failed = open_or_dead(uri)
    if raw is None:
        yield failed
        return
    with raw:
        lines = LineReader(decompress(raw, codec), cfg.max_record_bytes)
        it = iter(lines)
        while True:
            try:
                line, size = next(it)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - a broken stream ends this file only
                yield _stream_error(uri, codec, lines, exc)
                return
            source = f"{uri}:{lines.lineno}"
            if size > cfg.max_record_bytes:
                yield dead(
                    source,
                    f"line is {size:,} bytes, over reader.max_record_bytes={cfg.max_record_bytes:,}; "
                    "raise reader.max_record_bytes or split the record",
                    raw=line,
                )
                continue
            rec = _parse_line(line, source, cfg)
            if rec is not None:
                yield rec


def _stream_error(uri: str, codec: str | None, lines: LineReader, exc: Exception) -> dict[str, Any]:
    n = lines.lineno
    source = f"{uri}:{n + 1}" if n else uri
    if isinstance(exc, EOFError):
        msg = (
            f"{codec or 'compressed'} stream is truncated after line {n} ({exc}); the {n} complete "
            "lines before it were read; re-download or re-compress the file"
        )
    else:
        what = f"{codec} data" if codec else "the file"
        msg = f"cannot read {what} after line {n}: {error_text(exc)}; check that the file is intact"
    return dead(source, msg, raw=lines.pending or None)
