"""JSON Lines (plain, gzip, zstd, bz2, xz): one JSON object per line, read as a stream.

Lines are split from the decompressed byte stream in bounded chunks, so neither the file nor
an over-long line is ever held whole. Each bad line becomes one dead letter with source
``<uri>:<line>`` (1-based) and the rest of the file goes on; a truncated compressed tail gives
the complete lines before it as records, then one dead letter saying the stream is truncated.
Text in UTF-16 or UTF-32 (told by a byte-order mark, or by the zero bytes around the first
character) is read as UTF-8, and lines ending in a bare ``\r`` (classic Mac OS) are lines.

JSON documents are read too (whatever the extension, ``.json`` being the usual one): a file
whose first non-blank character is ``[`` (a top-level array, as Hugging Face and Alpaca exports
write it, compact or pretty-printed), or whose first object spans several lines (objects written
with ``json.dump(indent=2)``, one after another). Each array element or object is one record
with source ``<uri>:<line>``, the line where it starts; an element that is not an object is one
dead letter. The document is parsed as a stream (:class:`_JsonValues`): memory holds one chunk
plus the element being parsed, and an element over ``reader.max_record_bytes`` is dead-lettered.
Malformed JSON inside a document cannot be skipped safely (where the next element starts is
unknown), so it ends the file with one dead letter for the rest, after the elements before it
were read, like a truncated stream.
"""

from __future__ import annotations

import codecs
import io
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
_PEEK = 1 << 20  # bytes read ahead to tell JSON Lines from a JSON document
_WS = " \t\n\r"
_DOC_HINT = "this is a JSON document, not JSON Lines; convert it with jq -c '.[]' (an array) or jq -c . (objects)"


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
    if not line or line.isspace():  # blank (``not line.strip()`` without copying the line)
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
    if isinstance(obj, list) and obj and all(isinstance(v, dict) for v in obj):
        return dead(
            source,
            f"line is a JSON array of {len(obj):,} objects; expected one JSON object per line: {_DOC_HINT}",
            raw=line,
        )
    return _record(obj, source, cfg, line, "line")


def _record(obj: Any, source: str, cfg: ReaderConfig, raw: bytes | str, what: str) -> dict[str, Any]:
    """A parsed JSON value to a record, or a dead letter naming ``what`` (line, array element)."""
    if not isinstance(obj, dict):
        return dead(source, f"{what} is {describe(obj)}; expected a JSON object", raw=raw)
    # A \uD800-\uDFFF escape may have made a lone surrogate (checked only where one is written).
    if _SURROGATE_ESCAPE.search(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw):
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return dead(
                source,
                f"{what} has an unpaired \\ud800-\\udfff escape, which is not valid Unicode; "
                "fix the writer that produced it",
                raw=raw,
            )
    try:
        image = image_from_field(obj, cfg)
        return build_record(obj, cfg, source, image=image, image_what=f"field {cfg.image_field!r}")
    except RecordError as exc:
        return dead(source, str(exc), raw=raw)


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
        stream = _Replay(decompress(raw, codec))
        wide = _wide_encoding(stream.head)
        if wide is not None:  # UTF-16/32 (Windows tools write it): read as UTF-8
            stream = _Replay(_Transcoded(stream, wide))
        if b"\r" in stream.head and b"\n" not in stream.head:  # classic Mac OS line ends (bare CR)
            stream = _Replay(_CrToLf(stream))
        if _is_document(stream.head):
            yield from _read_document(uri, codec, stream, cfg)
            return
        lines = LineReader(stream, cfg.max_record_bytes)
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


class _Stream(io.RawIOBase):
    """A readable raw stream whose subclasses give :meth:`read1`."""

    def readable(self) -> bool:
        return True

    def read1(self, n: int = -1) -> bytes:
        raise NotImplementedError

    def readinto(self, b: Any) -> int:
        data = self.read1(len(b))
        b[: len(data)] = data
        return len(data)


def _wide_encoding(head: bytes) -> str | None:
    """The UTF-16/32 encoding ``head`` is written in, else None: by its byte-order mark, or
    without one by where the zero bytes of its first (ASCII) character fall (JSON text starts
    with ``{``, ``[`` or whitespace; RFC 4627's rule)."""
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if len(head) < 4 or 0 not in head[:4]:
        return None
    nul = tuple(b == 0 for b in head[:4])
    return {(True, True, True, False): "utf-32-be", (True, False, True, False): "utf-16-be",
            (False, True, True, True): "utf-32-le", (False, True, False, True): "utf-16-le"}.get(nul)


class _Transcoded(_Stream):
    """A UTF-16/32 byte stream read as UTF-8, decoded incrementally (a BOM picks the byte
    order and is dropped). Bytes the encoding cannot decode become U+FFFD; the line or
    element holding them is then read as usual."""

    def __init__(self, stream: IO[bytes], encoding: str) -> None:
        super().__init__()
        self._stream = stream
        self._dec = codecs.getincrementaldecoder(encoding)("replace")
        self._out = b""
        self._eof = False


    def read1(self, n: int = -1) -> bytes:
        while not self._out and not self._eof:
            chunk = self._stream.read1(_CHUNK)
            self._eof = not chunk
            self._out = self._dec.decode(chunk, final=self._eof).encode("utf-8")
        k = len(self._out) if n < 0 else n
        out, self._out = self._out[:k], self._out[k:]
        return out



class _CrToLf(_Stream):
    """A stream whose lines end in a bare ``\r`` read with ``\n`` instead (JSON cannot hold a
    raw CR inside a value: it is always a line end or whitespace there)."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream


    def read1(self, n: int = -1) -> bytes:
        return self._stream.read1(n if n > 0 else _CHUNK).replace(b"\r", b"\n")



class _Replay(_Stream):
    """A stream whose first bytes (:attr:`head`, up to :data:`_PEEK`) were read ahead to look at.

    Reading gives the head again, then the rest. An error of the stream met while reading the
    head (a truncated compressed tail) is raised once the head has been read back, so the
    complete lines before it still count.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream
        self._read1 = getattr(stream, "read1", None) or stream.read
        parts: list[bytes] = []
        n = 0
        self._error: BaseException | None = None
        try:
            while n < _PEEK:
                chunk = self._read1(_PEEK - n)
                if not chunk:
                    break
                parts.append(chunk)
                n += len(chunk)
        except Exception as exc:  # noqa: BLE001 - raised again after the head
            self._error = exc
        self.head = b"".join(parts)
        self._pos = 0


    def read1(self, n: int = -1) -> bytes:
        if self._pos < len(self.head):
            end = len(self.head) if n < 0 else self._pos + n
            out = self.head[self._pos : end]
            self._pos += len(out)
            return out
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc
        return self._read1(n if n > 0 else _CHUNK)



def _is_document(head: bytes) -> bool:
    """True when the file starts like a JSON document rather than JSON Lines: a ``[`` first, or
    a first object that spans several lines."""
    text = head.decode("utf-8", "replace").lstrip("\ufeff" + _WS)
    if text.startswith("["):
        return True
    if not text.startswith("{"):
        return False
    first = text.split("\n", 1)[0].rstrip("\r")
    if first.strip() == "{":
        return True
    try:
        json.loads(first)
        return False  # a complete object on the first line: JSON Lines
    except ValueError:
        pass
    try:  # a pretty-printed object: complete once later lines are added
        _, end = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return False  # a broken first line: JSON Lines, dead-lettered line by line
    return "\n" in text[:end]


class _DocError(Exception):
    """Malformed JSON in a document: where it is and why; the rest of the file is not read."""


class _JsonValues:
    """The values of a JSON document, streamed: the elements of top-level arrays and other
    top-level values, in order, as ``(line, value, text)`` (``value`` None with ``text`` the
    head of an element over ``max_bytes``).

    Memory holds the decoded text from the value being parsed on (one chunk, or more while one
    value is incomplete, up to ``max_bytes``). Raises :class:`_DocError` on malformed JSON and
    the stream's errors (a truncated tail) as they come.
    """

    def __init__(self, stream: IO[bytes], max_bytes: int) -> None:
        self._stream = stream
        self._max = max_bytes
        self._dec = codecs.getincrementaldecoder("utf-8")()
        self._decoder = json.JSONDecoder()
        self.buf = ""
        self.pos = 0
        self.line = 1  # line of buf[pos]
        self.eof = False
        self.values = 0

    def _more(self, want: int = _CHUNK) -> bool:
        """Append more decoded text; False at the end of the stream."""
        if self.eof:
            return False
        chunk = self._stream.read(max(want, _CHUNK))
        try:
            text = self._dec.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            raise _DocError(f"the file is not valid UTF-8 ({exc.reason} near line {self.line}); re-encode it as UTF-8") from exc
        if not chunk:
            self.eof = True
        if self.pos:
            self.buf = self.buf[self.pos :]
            self.pos = 0
        self.buf += text
        return bool(chunk) or bool(text)

    def _advance(self, to: int) -> None:
        self.line += self.buf.count("\n", self.pos, to)
        self.pos = to

    def _skip_ws(self) -> str:
        """The next non-whitespace character (consumed up to it), or '' at the end."""
        while True:
            buf, i = self.buf, self.pos
            while i < len(buf) and buf[i] in _WS:
                i += 1
            self._advance(i)
            if i < len(buf):
                return buf[i]
            if not self._more():
                return ""

    def _fail(self, what: str) -> _DocError:
        return _DocError(f"malformed JSON in the document at line {self.line}: {what}")

    def _value(self) -> tuple[int, Any, str]:
        line = self.line
        while True:
            try:
                obj, end = self._decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                obj, end = exc, -1
                # An error well before the end of the text read is malformed JSON whatever
                # follows; one near the end, or in a string not yet closed, may be a cut.
                if not exc.msg.startswith("Unterminated string") and exc.pos < len(self.buf) - 64:
                    raise self._fail(f"{exc.msg} (line {exc.lineno - self.buf.count(chr(10), 0, self.pos) + self.line - 1}, "
                                     f"column {exc.colno})") from exc
            # incomplete: an error, or a number that may continue past the end of the buffer
            if end < 0 or (end == len(self.buf) and not self.eof):
                if len(self.buf) - self.pos > self._max and end < 0:
                    raise _DocError(
                        f"the element starting at line {line} is malformed or over reader.max_record_bytes="
                        f"{self._max:,} ({obj}); the rest of the file cannot be read")
                if self._more(len(self.buf) - self.pos):
                    continue
                if end < 0:
                    raise self._fail(f"{obj.msg} (the element starting here is {'cut off' if self.eof else 'broken'})")
            text = self.buf[self.pos : end]
            self._advance(end)
            if len(text) > self._max:
                return line, None, text[:_HEAD]
            return line, obj, text

    def __iter__(self) -> Iterator[tuple[int, Any, str]]:
        if self._skip_ws() == "\ufeff":
            self._advance(self.pos + 1)
        while True:
            c = self._skip_ws()
            if not c:
                return
            if c != "[":
                value = self._value()
                self.values += 1
                yield value
                continue
            self._advance(self.pos + 1)
            first = True
            while True:
                c = self._skip_ws()
                if not c:
                    raise self._fail("the array is not closed (the file is cut off?)")
                if c == "]":
                    self._advance(self.pos + 1)
                    break
                if not first:
                    if c != ",":
                        raise self._fail(f"expected ',' or ']' after an array element, found {c!r}")
                    self._advance(self.pos + 1)
                    if not self._skip_ws():
                        raise self._fail("the array is not closed (the file is cut off?)")
                first = False
                value = self._value()
                self.values += 1
                yield value


def _read_document(uri: str, codec: str | None, stream: IO[bytes], cfg: ReaderConfig) -> Iterator[dict[str, Any]]:
    values = _JsonValues(stream, cfg.max_record_bytes)
    it = iter(values)
    while True:
        try:
            line, obj, text = next(it)
        except StopIteration:
            return
        except _DocError as exc:
            yield dead(f"{uri}:{values.line}", f"{exc}; the {values.values:,} elements before it were read",
                       raw=values.buf[values.pos : values.pos + _HEAD] or None)
            return
        except Exception as exc:  # noqa: BLE001 - a broken stream ends this file only
            n = values.values
            why = (f"{codec or 'compressed'} stream is truncated ({exc})" if isinstance(exc, EOFError)
                   else f"cannot read {'the file' if codec is None else codec + ' data'}: {error_text(exc)}")
            yield dead(f"{uri}:{values.line}", f"{why} in the JSON document after {n:,} elements; they were read; "
                       "re-download or re-compress the file")
            return
        source = f"{uri}:{line}"
        if obj is None:
            yield dead(source, f"array element is over reader.max_record_bytes={cfg.max_record_bytes:,}; "
                       "raise reader.max_record_bytes or split the record", raw=text)
            continue
        yield _record(obj, source, cfg, text, "array element")
