"""WebDataset-style tar archives: consecutive members sharing a key form one sample.

A member ``dir/0001.jpg`` has key ``dir/0001`` and extension ``jpg`` (the key is everything
before the first dot of the file name, as webdataset does). A sample becomes one record with
source ``<uri>#<key>``: the image (``jpg``, ``png`` ...), the audio (``wav``, ``flac`` ...), the
caption from the first of ``reader.caption_extensions`` present (``json`` gives its
``text_field``), the fields of a ``json`` member and any other UTF-8 members (``cls`` ...) as
meta. Binary members besides the chosen image and audio are not carried. A blank caption
(empty or whitespace only) counts as no caption: the sample's text is null, so an image with an
empty ``.txt`` is an ``image`` record, not an ``image_text`` one with text ``''``.

Operating-system metadata members are skipped, not read as samples: macOS AppleDouble files
(``._0001.jpg``), anything under ``__MACOSX/``, and other hidden names (a path component starting
with a dot, such as ``.DS_Store``), as webdataset itself and winnow's directory inputs skip them.
They are not records; each file that had any logs one warning with their count.

The archive is read as a stream (``tarfile`` mode ``r|*``) and members only in memory; nothing
is extracted to disk. A sample with a bad member (a path escaping the archive, a link, no
extension, too large, not an image) becomes one dead letter naming the member. A stream that
breaks (a truncated or corrupt archive) ends the file with one dead letter for the rest.
"""

from __future__ import annotations

import logging
import re
import tarfile
from typing import Any, Iterator

from winnow.errors import RecordError
from winnow.pipeline.config import ReaderConfig
from winnow.pipeline.readers.common import (
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    build_record,
    caption_extensions,
    dead,
    decode_text,
    decompress,
    json_object,
    open_or_dead,
    split_compression,
)
from winnow.pipeline.records import error_text

__all__ = ["read_webdataset", "split_member_name", "escapes_archive", "is_os_metadata"]

_DRIVE = re.compile(r"^[A-Za-z]:")
_log = logging.getLogger("winnow")


class _TarInfo(tarfile.TarInfo):
    """Remembers why ``TarFile.next`` stopped: tarfile ends quietly on a truncated header."""

    @classmethod
    def fromtarfile(cls, tf: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        try:
            return super().fromtarfile(tf)
        except tarfile.HeaderError as exc:
            tf.winnow_stop = exc  # type: ignore[attr-defined]
            raise


def split_member_name(name: str) -> tuple[str, str]:
    """``("dir/0001", "seg.png")`` for ``dir/0001.seg.png``; the extension is lowercased."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    key = f"{folder}/{stem}" if folder else stem
    return key, ext.lower() if dot else ""


def escapes_archive(name: str) -> bool:
    """True for an absolute member path or one with a ``..`` component."""
    n = name.replace("\\", "/")
    return n.startswith("/") or bool(_DRIVE.match(n)) or ".." in n.split("/")


def is_os_metadata(name: str) -> bool:
    """True for a member that an OS or archiver added, not the dataset: a macOS AppleDouble file
    (``._x.jpg``), anything under ``__MACOSX/``, or another hidden name (``.DS_Store``, a folder
    starting with a dot). ``.`` and ``..`` components are not hidden names (see
    :func:`escapes_archive`)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p and p not in (".", "..")]
    return any(p == "__MACOSX" or p.startswith(".") for p in parts)


class _Sample:
    __slots__ = ("key", "members", "error")

    def __init__(self, key: str) -> None:
        self.key = key
        self.members: dict[str, tuple[str, bytes]] = {}  # ext -> (member name, bytes)
        self.error: tuple[str, str] | None = None  # (source, message)


def _member_problem(m: tarfile.TarInfo, name: str, ext: str, sample: _Sample, cfg: ReaderConfig) -> str | None:
    if escapes_archive(m.name):
        return (
            f"member path {m.name!r} escapes the archive (absolute or containing '..'); "
            "write members with relative paths inside the archive"
        )
    if not m.isfile():
        kind = "symbolic link" if m.issym() else "hard link" if m.islnk() else "special file"
        return f"member {name!r} is a {kind}; expected a regular file"
    if not ext:
        return f"member {name!r} has no extension; webdataset members are named <key>.<ext>"
    if ext in sample.members:
        return f"member {name!r} repeats extension {ext!r} of sample {sample.key!r}; each sample has one member per extension"
    if m.size > cfg.max_record_bytes:
        return (
            f"member {name!r} is {m.size:,} bytes, over reader.max_record_bytes={cfg.max_record_bytes:,}; "
            "raise reader.max_record_bytes"
        )
    return None


def _sample_record(uri: str, sample: _Sample, cfg: ReaderConfig, captions: tuple[str, ...]) -> dict[str, Any]:
    if sample.error is not None:
        return dead(*sample.error)
    source = f"{uri}#{sample.key}"
    members = sample.members
    image_ext = next((e for e in IMAGE_EXTENSIONS if e in members), None)
    audio_ext = next((e for e in AUDIO_EXTENSIONS if e in members), None)
    caption_ext = next((e for e in captions if e in members), None)
    try:
        fields: dict[str, Any] = {}
        if "json" in members:
            name, data = members["json"]
            fields.update(json_object(data, f"member {name!r}"))
            if caption_ext != "json":
                fields.pop(cfg.text_field, None)  # the caption comes only from caption_extensions
        for ext, (name, data) in members.items():
            if ext in (image_ext, audio_ext, "json"):
                continue
            if ext == caption_ext:
                fields[cfg.text_field] = decode_text(data, f"caption member {name!r}")
                continue
            try:
                fields.setdefault(ext, decode_text(data, name))
            except RecordError:
                pass  # another binary member: not carried
        caption = fields.get(cfg.text_field)
        if isinstance(caption, str) and not caption.strip():
            fields[cfg.text_field] = None  # a blank caption is no caption
        image = members[image_ext][1] if image_ext else None
        audio = members[audio_ext][1] if audio_ext else None
        what = f"member {members[image_ext][0]!r}" if image_ext else "image"
        audio_what = f"member {members[audio_ext][0]!r}" if audio_ext else "audio"
        return build_record(fields, cfg, source, image=image, audio=audio, image_what=what, audio_what=audio_what)
    except RecordError as exc:
        return dead(source, str(exc))


def read_webdataset(uri: str, cfg: ReaderConfig) -> Iterator[dict[str, Any]]:
    """Records and dead letters of one tar archive (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.zst`` ...)."""
    _, codec = split_compression(uri)
    raw, failed = open_or_dead(uri)
    if raw is None:
        yield failed
        return
    with raw:
        try:
            tf = tarfile.open(fileobj=decompress(raw, codec), mode="r|*", tarinfo=_TarInfo)
        except Exception as exc:  # noqa: BLE001
            yield dead(uri, f"{uri} is not a readable tar archive: {error_text(exc)}")
            return
        yield from _read_members(uri, tf, cfg)


def _read_members(uri: str, tf: tarfile.TarFile, cfg: ReaderConfig) -> Iterator[dict[str, Any]]:
    captions = caption_extensions(cfg)
    seen: set[str] = set()
    sample: _Sample | None = None
    last = ""  # the last member read, for error messages
    skipped: list[str] = []  # OS metadata members (a few names kept for the warning)
    n_skipped = 0

    def warn_skipped() -> None:
        if n_skipped:
            _log.warning(
                "winnow: %s: skipped %s operating-system metadata member(s) (macOS ._* AppleDouble, "
                "__MACOSX/, hidden names), e.g. %s; they are not samples",
                uri, f"{n_skipped:,}", ", ".join(repr(n) for n in skipped),
            )

    def broken(why: str) -> dict[str, Any]:
        where = f"after member {last!r}" if last else "at its start"
        if sample is not None:
            return dead(f"{uri}#{sample.key}", f"archive {why} {where}; sample {sample.key!r} and anything after it are lost")
        return dead(uri, f"archive {why} {where}; anything after it is lost")

    try:
        while True:
            tf.winnow_stop = None  # type: ignore[attr-defined]
            try:
                m = tf.next()
            except Exception as exc:  # noqa: BLE001 - a broken stream ends this file
                yield broken(f"cannot be read ({error_text(exc)})")
                return
            tf.members.clear()  # stream mode would keep every header in memory
            if m is None:
                stop = getattr(tf, "winnow_stop", None)
                if isinstance(stop, (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError)):
                    yield broken("ends without its end-of-archive marker (truncated?)")
                    return
                if stop is not None and not isinstance(stop, tarfile.EOFHeaderError):
                    yield broken(f"has an invalid header ({stop})")
                    return
                if sample is not None:
                    yield _sample_record(uri, sample, cfg, captions)
                return
            name = m.name
            while name.startswith("./"):
                name = name[2:]
            if m.isdir() or not name:
                continue
            if is_os_metadata(name) and not escapes_archive(m.name):
                n_skipped += 1
                if len(skipped) < 3:
                    skipped.append(name)
                continue  # stream mode skips the member's data
            key, ext = split_member_name(name)
            if sample is not None and key != sample.key:
                yield _sample_record(uri, sample, cfg, captions)
                sample = None
            if sample is None:
                sample = _Sample(key)
                if key in seen:
                    sample.error = (
                        f"{uri}#{name}",
                        f"member {name!r} belongs to sample {key!r}, which appeared earlier with other "
                        "samples in between; write each sample's members next to each other (sort by name)",
                    )
                seen.add(key)
            last = name
            if sample.error is not None:
                continue  # stream mode skips the member's data
            problem = _member_problem(m, name, ext, sample, cfg)
            if problem is not None:
                sample.error = (f"{uri}#{name}", problem)
                continue
            try:
                fh = tf.extractfile(m)
                data = fh.read() if fh is not None else b""
            except Exception as exc:  # noqa: BLE001 - the stream cannot go on after this
                yield dead(
                    f"{uri}#{name}",
                    f"member {name!r} cannot be read ({error_text(exc)}); the archive is truncated or corrupt "
                    f"here, so sample {key!r} and anything after it are lost",
                )
                return
            sample.members[ext] = (name, data)
    finally:
        warn_skipped()
