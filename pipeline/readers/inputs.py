"""Expanding input URIs, globs and directories into the list of files to read.

Any fsspec URL works (local paths, ``file://``, ``s3://``, ``memory://`` ...). The result is
sorted and de-duplicated, so the same inputs always give the same file list. Inside a
directory or glob, names starting with ``.`` or ``_`` are skipped (``_SUCCESS``, ``.git``, as
Spark and pyarrow datasets do); a file named explicitly is always read. The same file named
two ways (``/x/a.jsonl``, ``file:///x/a.jsonl``, ``/x//a.jsonl``) is read once, under the
smallest of its URIs.
"""

from __future__ import annotations

import logging
import os
import posixpath
from dataclasses import dataclass
from typing import Iterable, Sequence

import fsspec

from winnow.errors import InputError
from winnow.pipeline.config import ReaderConfig
from winnow.pipeline.readers.common import IMAGE_EXTENSIONS, split_compression
from winnow.pipeline.readers.imagedir import sidecar_candidates

__all__ = ["FORMATS", "InputFile", "InputFiles", "expand_inputs", "expand_input", "merge_inputs", "format_of"]

#: The formats a reader exists for (``reader.format`` minus ``auto``).
FORMATS: tuple[str, ...] = ("jsonl", "parquet", "webdataset", "imagedir")

_JSONL_EXT = (".jsonl", ".json", ".ndjson")
_EXPECTED = (
    "expected .jsonl/.json/.ndjson (optionally .gz, .zst, .bz2 or .xz), .parquet, "
    ".tar (or .tar.gz/.tgz/.tar.zst), or image files (" + ", ".join(IMAGE_EXTENSIONS) + ")"
)


@dataclass(frozen=True)
class InputFile:
    """One file to read: the unit of work that spreads across workers.

    Attributes:
        uri: the file's URL (a plain absolute path for local inputs given without a scheme).
        format: one of :data:`FORMATS`.
        sidecars: ``imagedir`` only: the sidecars found beside the image when listing
            (``<stem>.<ext>`` for each of ``reader.caption_extensions`` that exists, in that
            priority order; the first gives the caption, a ``.json`` one also gives meta),
            ``()`` when listing found none, None when unknown (the reader then looks).
    """

    uri: str
    format: str
    sidecars: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InputError(
                f"input file {self.uri!r} has format {self.format!r}; expected one of {', '.join(FORMATS)}"
            )


def format_of(path: str) -> str | None:
    """The format an extension implies (``a.jsonl.zst`` -> ``jsonl``), or None if unknown."""
    base, codec = split_compression(path.lower())
    if base.endswith(_JSONL_EXT):
        return "jsonl"
    if base.endswith(".tar"):
        return "webdataset"
    if codec is None:
        if base.endswith((".parquet", ".pq")):
            return "parquet"
        if posixpath.splitext(base)[1][1:] in IMAGE_EXTENSIONS:
            return "imagedir"
    return None


def _hidden(rel: str) -> bool:
    return any(part[:1] in (".", "_") for part in rel.split("/") if part)


def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")


#: What identifies a file whatever its spelling: (protocol, normalized absolute path).
FileKey = tuple[str, str]


class InputFiles(list):  # type: ignore[type-arg]
    """The list :func:`expand_inputs` returns, remembering the inputs it was expanded from.

    :class:`~winnow.pipeline.readers.ReadRecords` uses ``uris`` to expand a long list again on
    the workers instead of embedding it in the job graph.
    """

    def __init__(self, files: Sequence[InputFile] = (), uris: Sequence[str] = ()) -> None:
        super().__init__(files)
        self.uris: tuple[str, ...] = tuple(uris)


class _Expander:
    """Expands the inputs of one URI on one filesystem."""

    def __init__(self, uri: str, cfg: ReaderConfig) -> None:
        self.uri = uri
        self.cfg = cfg
        try:
            self.fs, self.path = fsspec.core.url_to_fs(uri)
        except Exception as exc:
            raise InputError(
                f"input {uri!r} cannot be opened ({type(exc).__name__}: {exc}); "
                "check the URL scheme and that its fsspec backend (s3fs, gcsfs ...) is installed"
            ) from exc
        self.keep_protocol = "://" in uri
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.protocol = protocols[0]
        self.local = "file" in protocols or "local" in protocols
        self._listings: dict[str, set[str]] = {}

    def to_uri(self, path: str) -> str:
        if self.local:
            path = posixpath.normpath(path)
        return self.fs.unstrip_protocol(path) if self.keep_protocol else path

    def key(self, path: str) -> FileKey:
        """The file's identity, the same however its input spelled it."""
        if self.local:
            return self.protocol, posixpath.normpath(path)
        return self.protocol, path.rstrip("/")

    def _walk(self, root: str) -> list[str]:
        """The files under ``root``, hidden names aside. Symbolic links to folders are not
        followed (as ``find`` does not: a link to ``.`` or ``..`` would loop); they are named in
        a warning."""
        root = root.rstrip("/")
        files, links = [], []
        for p, info in self.fs.find(root, detail=True).items():
            if _hidden(p[len(root) :]):
                continue
            if info.get("islink") and self.local and os.path.isdir(p):
                links.append(posixpath.basename(p))
            else:
                files.append(p)
        if links:
            shown = ", ".join(links[:3]) + (f" and {len(links) - 3} more" if len(links) > 3 else "")
            logging.getLogger("winnow").warning(
                "winnow: input %r: %d symbolic link(s) to folders not followed (%s); give their targets as inputs "
                "to read them", self.uri, len(links), shown)
        return sorted(files)

    def candidates(self) -> tuple[list[str], bool]:
        """The files this input names and whether they came from a listing (glob or directory)."""
        fs, path = self.fs, self.path
        try:
            if _has_magic(path):
                files: list[str] = []
                for p, info in sorted(fs.glob(path, detail=True).items()):
                    if _hidden(posixpath.basename(p.rstrip("/"))):
                        continue
                    files.extend(self._walk(p) if info.get("type") == "directory" else [p])
                return files, True
            if fs.isdir(path):
                return self._walk(path), True
            if fs.exists(path):
                return [path], False
        except Exception as exc:
            raise InputError(f"input {self.uri!r} cannot be listed ({type(exc).__name__}: {exc}); check access") from exc
        return [], False

    def sibling_paths(self, path: str) -> set[str] | None:
        """The files next to ``path`` (one listing per folder), or None if it fails."""
        parent = posixpath.dirname(path)
        if parent not in self._listings:
            try:
                self._listings[parent] = set(self.fs.ls(parent, detail=False))
            except Exception:  # noqa: BLE001 - fall back to looking at read time
                return None
        return self._listings[parent]

    def expand(self) -> list[tuple[FileKey, InputFile]]:
        """The files of this input, each with its :meth:`key`."""
        files, listed = self.candidates()
        if not files:
            what = "matches no file" if listed or _has_magic(self.path) else "does not exist"
            raise InputError(
                f"input {self.uri!r} {what}; check the path, or give a glob such as data/*.jsonl.gz"
            )
        fmt = self.cfg.format
        images: list[str] = []
        other: list[tuple[str, str | None]] = []
        for p in files:
            if fmt == "auto":
                f = format_of(p)
            elif fmt == "imagedir" and listed:  # only the images of a folder; captions go with them
                f = "imagedir" if format_of(p) == "imagedir" else None
            else:
                f = fmt
            if f == "imagedir":
                images.append(p)
            else:
                other.append((p, f))
        out: list[tuple[FileKey, InputFile]] = []
        sidecars: set[str] = set()
        for p in images:
            siblings = self.sibling_paths(p)
            found: tuple[str, ...] | None = None
            if siblings is not None:
                # every caption-extension sibling is a sidecar, never an input of its own
                paths = [c for c in sidecar_candidates(p, self.cfg) if c in siblings]
                sidecars.update(paths)
                found = tuple(self.to_uri(c) for c in paths)
            out.append((self.key(p), InputFile(self.to_uri(p), "imagedir", found)))
        other = [(p, f) for p, f in other if p not in sidecars]
        unknown = [p for p, f in other if f is None]
        if unknown:
            if not listed:
                raise InputError(
                    f"input {self.uri!r} has an unknown extension; {_EXPECTED}; "
                    "or set reader.format (jsonl, parquet, webdataset, imagedir) for files named otherwise"
                )
            shown = ", ".join(repr(posixpath.basename(p)) for p in unknown[:3])
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            raise InputError(
                f"input {self.uri!r} holds {len(unknown)} file(s) of unknown format ({shown}{more}); "
                f"{_EXPECTED}; narrow the input with a glob or set reader.format"
            )
        out.extend((self.key(p), InputFile(self.to_uri(p), f)) for p, f in other if f is not None)
        return out


def _order(f: InputFile) -> tuple[str, str, tuple[str, ...]]:
    return f.uri, f.format, f.sidecars or ()


def expand_input(uri: str, cfg: ReaderConfig) -> list[tuple[FileKey, InputFile]]:
    """The files of one input URI, glob or directory, each with a key naming the file.

    The key is (protocol, normalized absolute path): the same for every spelling of one file.
    Used by :func:`expand_inputs` on the driver and by ``ReadRecords`` on workers.

    Raises:
        InputError: as :func:`expand_inputs`.
    """
    return _Expander(str(uri), cfg).expand()


def merge_inputs(keyed: Iterable[tuple[FileKey, InputFile]]) -> list[InputFile]:
    """One :class:`InputFile` per key (the smallest by URI), sorted by URI."""
    found: dict[FileKey, InputFile] = {}
    for key, f in keyed:
        have = found.get(key)
        if have is None or _order(f) < _order(have):
            found[key] = f
    return sorted(found.values(), key=_order)


def expand_inputs(uris: Sequence[str] | str, cfg: ReaderConfig) -> InputFiles:
    """Expand input URIs, globs and directories into files to read, sorted by URI.

    With ``cfg.format == "auto"`` each file's format comes from its extension. Each image
    file is its own input (format ``imagedir``); the sidecars beside it (``<stem>.txt`` and
    the other ``caption_extensions``) are read with it rather than as inputs of their own.
    A file reached through several inputs or spellings is listed once, under its smallest URI.

    Raises:
        InputError: no input given, an input matches no file, cannot be listed, or holds a
            file whose format cannot be told from its extension.
    """
    if isinstance(uris, str):
        uris = [uris]
    if not uris:
        raise InputError("no input given; pass --input PATH (a file, folder, glob or fsspec URL)")
    uris = [str(u) for u in uris]
    return InputFiles(merge_inputs(kf for uri in uris for kf in expand_input(uri, cfg)), uris)
