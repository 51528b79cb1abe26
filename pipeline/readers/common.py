"""Rules every reader shares: file types, opening streams, and turning fields into a record.

A reader turns each input item (a JSON line, a Parquet row, a tar sample, an image file) into
either a record (:func:`~winnow.pipeline.records.make_record`) or a dead letter
(:func:`~winnow.pipeline.records.make_dead_letter` with ``stage=READ_STAGE``). The helpers
here raise :class:`~winnow.errors.RecordError` for a bad item; the format modules catch it
and dead-letter that one item, so the run goes on.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import gzip
import io
import json
import lzma
from typing import IO, Any, Mapping

import fsspec
import zstandard
from PIL import Image

from winnow.errors import RecordError
from winnow.pipeline.config import ReaderConfig
from winnow.pipeline.records import READ_STAGE, make_dead_letter, make_record
from winnow.pipeline.records import error_text

__all__ = [
    "IMAGE_EXTENSIONS",
    "AUDIO_EXTENSIONS",
    "COMPRESSIONS",
    "split_compression",
    "caption_extensions",
    "open_uri",
    "open_or_dead",
    "json_object",
    "decompress",
    "dead",
    "json_type",
    "describe",
    "check_image",
    "check_audio",
    "decode_text",
    "image_from_field",
    "build_record",
]

#: Extensions (lowercase, no dot) read as images, in the order a sample picks one.
IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")
#: Extensions read into the ``audio`` column, in the order a sample picks one.
AUDIO_EXTENSIONS: tuple[str, ...] = ("wav", "flac", "mp3", "ogg", "opus")
#: Compression suffix -> codec name.
COMPRESSIONS: dict[str, str] = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2", ".xz": "xz"}

_ZSTD_READ = 1 << 16  # compressed bytes read from the file at a time
# Compressed bytes given to one decompress() call. zstd's output per input byte is bounded (a
# 4-byte RLE block gives up to 128 KiB), so 256 bytes of input give at most ~8 MiB of output:
# memory stays bounded on a zstd bomb, for a small cost in speed (JSON parsing dominates).
_ZSTD_SLICE = 1 << 8


def split_compression(path: str) -> tuple[str, str | None]:
    """``("a.jsonl", "gzip")`` for ``a.jsonl.gz``; the codec is None when uncompressed."""
    lower = path.lower()
    for suffix, codec in COMPRESSIONS.items():
        if lower.endswith(suffix):
            return path[: -len(suffix)], codec
    if lower.endswith(".tgz"):
        return path[:-4] + ".tar", "gzip"
    return path, None


def caption_extensions(cfg: ReaderConfig) -> tuple[str, ...]:
    """The configured caption extensions, lowercase and without a leading dot."""
    return tuple(e.lower().lstrip(".") for e in cfg.caption_extensions if e.strip("."))


def open_uri(uri: str) -> IO[bytes]:
    """Open any fsspec URL (or local path) for binary reading, without decompressing."""
    fs, path = fsspec.core.url_to_fs(uri)
    return fs.open(path, "rb")


class _ZstdReader(io.RawIOBase):
    """A raw stream over zstd frames that, unlike ``stream_reader``, reports a truncated tail.

    Frames are decompressed one after another; input that ends inside a frame raises
    :class:`EOFError`, as :mod:`gzip`, :mod:`bz2` and :mod:`lzma` do. The decompressor gets
    :data:`_ZSTD_SLICE` compressed bytes per call, which bounds what one call can produce.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._obj: Any = None
        self._in = memoryview(b"")  # compressed bytes read from the file
        self._pos = 0  # of the first byte of _in not yet given to the decompressor
        self._buf = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        if self._pos >= len(self._in):
            self._in, self._pos = memoryview(self._raw.read(_ZSTD_READ)), 0
            if not len(self._in):
                if self._obj is not None:
                    raise EOFError("zstd stream ended before the end of a frame")
                self._done = True
                return
        if self._obj is None:
            self._obj = self._dctx.decompressobj()
        data = self._in[self._pos : self._pos + _ZSTD_SLICE]
        self._pos += len(data)
        self._buf = memoryview(self._obj.decompress(data))
        if self._obj.eof:  # the frame ended inside this slice: its rest starts the next frame
            self._pos -= len(self._obj.unused_data)
            self._obj = None

    def readinto(self, b: Any) -> int:
        while not len(self._buf):
            if self._done:
                return 0
            self._fill()
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def decompress(raw: IO[bytes], codec: str | None) -> IO[bytes]:
    """Wrap ``raw`` in a streaming decompressor; a truncated tail raises :class:`EOFError`."""
    if codec is None:
        return raw
    if codec == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if codec == "zstd":
        return io.BufferedReader(_ZstdReader(raw), buffer_size=1 << 16)
    if codec == "bz2":
        return bz2.BZ2File(raw, mode="rb")
    if codec == "xz":
        return lzma.LZMAFile(raw, mode="rb")
    raise ValueError(f"unknown compression {codec!r}")


def dead(source: str, error: str, raw: bytes | str | None = None) -> dict[str, Any]:
    """A read-stage dead letter."""
    return make_dead_letter(stage=READ_STAGE, error=error, source=source, raw=raw)


def open_or_dead(uri: str) -> tuple[IO[bytes] | None, dict[str, Any] | None]:
    """``(file, None)``, or ``(None, dead letter)`` when the file cannot be opened at all."""
    try:
        return open_uri(uri), None
    except Exception as exc:  # noqa: BLE001 - any open failure dead-letters the file
        return None, dead(uri, f"cannot open {uri}: {error_text(exc)}; check that it exists and is readable")


_JSON_TYPES = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}


def json_type(value: Any) -> str:
    """The JSON name of a Python value's type (``number``, ``array`` ...), else its class name."""
    if value is None:
        return "null"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def describe(value: Any, limit: int = 60) -> str:
    """``a number (42)``: a value's type and a short preview, for error messages."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    article = "an" if json_type(value)[0] in "aeiou" else "a"
    return f"{article} {json_type(value)} ({text})"


def check_image(data: bytes, what: str) -> None:
    """Raise RecordError unless ``data`` starts like an image Pillow can read.

    Pillow only parses the header here (``open`` is lazy) and ``verify`` checks the structure
    without decoding pixels, so this stays cheap.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    except Exception as exc:
        head = data[:8].hex(" ") if data else "no bytes"
        raise RecordError(
            f"{what} is not a readable image ({type(exc).__name__}: {exc}; first bytes {head}); "
            "expected encoded image bytes (JPEG, PNG, WebP, GIF, BMP or TIFF)"
        ) from exc


_AUDIO_KINDS = "WAV, FLAC, Ogg Vorbis/Opus or MP3"
# Leading bytes of the containers AUDIO_EXTENSIONS name, for when soundfile is not installed.
_AUDIO_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"ID3")
_AUDIO_PROBE_FRAMES = 2048  # decoded at read time: catches a header over garbage, costs ~nothing


def _looks_like_mp3_frame(data: bytes) -> bool:
    """An MPEG audio frame header: 11 sync bits, a known version, layer III, bitrate and rate."""
    if len(data) < 4 or data[0] != 0xFF or data[1] & 0xE0 != 0xE0:
        return False
    version, layer = (data[1] >> 3) & 3, (data[1] >> 1) & 3
    bitrate, rate = data[2] >> 4, (data[2] >> 2) & 3
    return version != 1 and layer == 1 and bitrate not in (0, 15) and rate != 3


def check_audio(data: bytes, what: str) -> None:
    """Raise RecordError unless ``data`` is audio libsndfile can open and start to decode.

    libsndfile (the ``soundfile`` wheel the audio stages decode with: WAV, FLAC, Ogg
    Vorbis/Opus, MP3) parses the header and decodes the first :data:`_AUDIO_PROBE_FRAMES`
    frames, so random bytes, text named ``.mp3`` or a destroyed header are caught here, cheaply,
    as images are by :func:`check_image`. A stream that breaks off later is the ``audio``
    stage's ``audio_unreadable``. Without soundfile (the ``audio`` extra) only the container's
    leading bytes are checked.
    """
    head = data[:8].hex(" ") if data else "no bytes"
    if not data:
        raise RecordError(f"{what} is empty (0 bytes); expected encoded audio bytes ({_AUDIO_KINDS})")
    try:
        import soundfile as sf
    except (ImportError, OSError):  # no audio extra, or no libsndfile: the leading bytes only
        if not (data.startswith(_AUDIO_MAGIC) or _looks_like_mp3_frame(data)):
            raise RecordError(f"{what} is not audio (first bytes {head}); expected encoded audio bytes "
                              f"({_AUDIO_KINDS})") from None
        return
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.samplerate <= 0 or f.channels <= 0:
                raise ValueError(f"the header gives {f.samplerate} Hz and {f.channels} channel(s)")
            f.read(_AUDIO_PROBE_FRAMES, dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - whatever libsndfile makes of hostile bytes dead-letters them
        why = getattr(exc, "error_string", None) or str(exc)  # libsndfile's words, not the stream's repr
        raise RecordError(
            f"{what} is not readable audio ({type(exc).__name__}: {why}; first bytes {head}); "
            f"expected encoded audio bytes ({_AUDIO_KINDS})"
        ) from None


def decode_text(data: bytes, what: str, *, strip: bool = True) -> str:
    """Strict UTF-8, else RecordError; ``strip`` removes a leading BOM and one trailing newline."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(
            f"{what} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "re-encode the file as UTF-8"
        ) from exc
    if not strip:
        return text
    if text.startswith("\ufeff"):
        text = text[1:]
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    return text


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse a JSON object (a sidecar or a tar member), naming ``what`` in the error.

    Raises:
        RecordError: invalid UTF-8 or JSON, or JSON that is not an object.
    """
    try:
        obj = json.loads(decode_text(data, what, strip=False))
    except ValueError as exc:
        raise RecordError(f"{what} is not valid JSON ({exc}); expected a JSON object") from exc
    if not isinstance(obj, dict):
        raise RecordError(f"{what} holds {describe(obj)}; expected a JSON object")
    return obj


def image_from_field(fields: Mapping[str, Any], cfg: ReaderConfig) -> bytes | None:
    """Image bytes from ``cfg.image_field``: bytes as they are, a string as base64.

    A Hugging Face style ``{"bytes": ...}`` struct is accepted too.
    """
    if not cfg.image_field:
        return None
    value = fields.get(cfg.image_field)
    if isinstance(value, Mapping) and "bytes" in value:
        value = value["bytes"]
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RecordError(
                f"field {cfg.image_field!r} is not valid base64 ({exc}); "
                "expected base64-encoded image bytes"
            ) from exc
    raise RecordError(
        f"field {cfg.image_field!r} must hold image bytes (base64 string in JSON, binary in "
        f"Parquet), got {describe(value)}; set reader.image_field to the image column or leave it empty"
    )


def _record_id(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def build_record(
    fields: Mapping[str, Any],
    cfg: ReaderConfig,
    source: str,
    *,
    image: bytes | None = None,
    audio: bytes | None = None,
    image_what: str = "image",
    audio_what: str = "audio",
) -> dict[str, Any]:
    """A record from a mapping of fields, following the reader config.

    The text comes from ``cfg.text_field`` (missing or null gives ``text=None``), the id from
    ``cfg.id_field`` when it is a non-empty string or an integer (else make_record hashes the
    content), and ``meta`` holds the other fields, or only ``cfg.meta_fields`` when set.

    Image bytes are checked by :func:`check_image` and audio bytes by :func:`check_audio`,
    also when a record holds both (its modality is then ``image_text`` or ``image``, see
    :func:`~winnow.pipeline.records.make_record`: the audio stages pass it by unless their
    ``modalities`` name it, so its audio is validated here or nowhere).

    Raises:
        RecordError: the text field is not a string, the image bytes are not an image, or the
            audio bytes are not audio.
    """
    text = fields.get(cfg.text_field)
    if text is not None and not isinstance(text, str):
        raise RecordError(
            f"field {cfg.text_field!r} must be a string or null, got {describe(text)}; "
            "fix the record or set reader.text_field to the field holding the text"
        )
    rid = _record_id(fields.get(cfg.id_field))
    skip = {cfg.text_field, cfg.image_field}
    if cfg.meta_fields:
        meta = {k: fields[k] for k in cfg.meta_fields if k in fields and k not in skip}
    else:
        if rid is not None:
            skip.add(cfg.id_field)
        meta = {k: v for k, v in fields.items() if k not in skip}
    if image is not None:
        check_image(image, image_what)
    if audio is not None:
        check_audio(audio, audio_what)
    return make_record(source=source, text=text, image=image, audio=audio, id=rid, meta=meta)
