"""The shard format: the contract between the pipeline that writes and the loader that reads.

An output directory holds ``index.json`` (the manifest) and Arrow IPC *file*-format shards
that it lists. Readers read only what the manifest lists. This module has no Beam in it, so
the loader (``winnow.cache``) and any trainer can import it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa
import xxhash

from winnow.errors import ManifestError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MODALITIES",
    "CORE_FIELDS",
    "REJECT_FIELDS",
    "output_schema",
    "reject_schema",
    "schema_to_json",
    "schema_from_json",
    "shard_name",
    "ShardInfo",
    "Manifest",
    "xxh3_128_hex",
    "content_id",
]

FORMAT_NAME = "winnow-shards"
FORMAT_VERSION = 1

MODALITIES = ("text", "image", "image_text", "audio", "audio_text")

#: Columns every record has, in order. Stages add their own after these.
CORE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("modality", pa.string(), nullable=False),
    pa.field("text", pa.large_string(), nullable=True),
    pa.field("image", pa.large_binary(), nullable=True),
    pa.field("audio", pa.large_binary(), nullable=True),
    pa.field("meta", pa.string(), nullable=False),
)

#: Columns a rejected or dead-lettered record carries besides the output schema.
REJECT_FIELDS: tuple[pa.Field, ...] = (
    pa.field("reject_stage", pa.string(), nullable=False),
    pa.field("reject_reason", pa.string(), nullable=False),
    pa.field("duplicate_of", pa.string(), nullable=True),
    pa.field("duplicate_of_source", pa.string(), nullable=True),
    pa.field("error", pa.large_string(), nullable=True),
)


def output_schema(stage_fields: Iterable[pa.Field]) -> pa.Schema:
    """Core columns followed by the columns the configured stages add, in stage order.

    Raises:
        ManifestError: two stages declare the same column, or a stage redeclares a core one.
    """
    fields = list(CORE_FIELDS)
    seen = {f.name for f in fields}
    for f in stage_fields:
        if f.name in seen:
            raise ManifestError(
                f"column {f.name!r} is declared twice; each stage must add columns with its own prefix"
            )
        seen.add(f.name)
        fields.append(f)
    return pa.schema(fields)


def reject_schema(schema: pa.Schema) -> pa.Schema:
    """The output schema plus the reject columns (used for rejects and dead letters)."""
    fields = list(schema)
    # In a reject, stage columns may be missing (the record left before that stage ran).
    fields = [f if f.name in {c.name for c in CORE_FIELDS} else f.with_nullable(True) for f in fields]
    return pa.schema(fields + list(REJECT_FIELDS))


def schema_to_json(schema: pa.Schema) -> dict[str, Any]:
    """A readable field list plus the exact Arrow schema (IPC bytes, base64)."""
    return {
        "fields": [
            {"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema
        ],
        "arrow": base64.b64encode(schema.serialize().to_pybytes()).decode("ascii"),
    }


def schema_from_json(obj: Mapping[str, Any]) -> pa.Schema:
    """Inverse of :func:`schema_to_json`."""
    try:
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(obj["arrow"])))
    except (KeyError, TypeError, ValueError, pa.ArrowInvalid) as exc:
        raise ManifestError(f"manifest schema is unreadable ({exc}); re-run the pipeline") from exc


def shard_name(index: int, count: int, prefix: str = "part") -> str:
    """``part-00003-of-00016.arrow``: names sort in shard order."""
    return f"{prefix}-{index:05d}-of-{count:05d}.arrow"


def xxh3_128_hex(data: bytes | memoryview) -> str:
    """xxh3-128 of bytes, as 32 lowercase hex digits."""
    return xxhash.xxh3_128_hexdigest(data)


def content_id(*parts: bytes | str | None) -> str:
    """A stable id from content: xxh3-128 over the parts, each length-prefixed.

    Length prefixes keep ``("ab", "c")`` and ``("a", "bc")`` apart; ``None`` differs from ``""``.
    """
    h = xxhash.xxh3_128()
    for p in parts:
        if p is None:
            h.update(b"\xff" * 8)
            continue
        b = p.encode("utf-8", "surrogatepass") if isinstance(p, str) else bytes(p)
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


@dataclass(frozen=True)
class ShardInfo:
    """One shard as the manifest lists it; ``path`` is relative to the manifest's directory."""

    path: str
    rows: int
    bytes: int
    xxh3_128: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows, "bytes": self.bytes, "xxh3_128": self.xxh3_128}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "ShardInfo":
        try:
            return cls(str(obj["path"]), int(obj["rows"]), int(obj["bytes"]), str(obj["xxh3_128"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"manifest shard entry {obj!r} is malformed: {exc}") from exc


@dataclass(frozen=True)
class Manifest:
    """The parsed ``index.json``."""

    schema: pa.Schema
    shards: tuple[ShardInfo, ...]
    counts: Mapping[str, int]
    compression: str | None = None
    tokenizer: Mapping[str, Any] | None = None
    config_hash: str = ""
    rejects: tuple[ShardInfo, ...] = ()
    dead_letter: tuple[ShardInfo, ...] = ()
    created_by: str = ""

    @property
    def total_rows(self) -> int:
        return sum(s.rows for s in self.shards)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "created_by": self.created_by,
            "schema": schema_to_json(self.schema),
            "reject_schema": schema_to_json(reject_schema(self.schema)),
            "compression": self.compression,
            "shards": [s.to_json() for s in self.shards],
            "rejects": [s.to_json() for s in self.rejects],
            "dead_letter": [s.to_json() for s in self.dead_letter],
            "tokenizer": dict(self.tokenizer) if self.tokenizer else None,
            "config_hash": self.config_hash,
            "counts": dict(self.counts),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def loads(cls, text: str | bytes, where: str = "index.json") -> "Manifest":
        """Parse and validate a manifest.

        Raises:
            ManifestError: not JSON, not a winnow manifest, or of a newer format version.
        """
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise ManifestError(f"{where} is not JSON ({exc}); was the run finished?") from exc
        if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
            raise ManifestError(f"{where} is not a winnow manifest (format={obj.get('format') if isinstance(obj, dict) else None!r})")
        version = obj.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
            raise ManifestError(
                f"{where} has format_version={version!r}; this winnow reads 1..{FORMAT_VERSION}; upgrade winnow"
            )

        def shards(key: str) -> tuple[ShardInfo, ...]:
            items = obj.get(key) or []
            if not isinstance(items, Sequence):
                raise ManifestError(f"{where}: {key} must be a list")
            return tuple(ShardInfo.from_json(s) for s in items)

        return cls(
            schema=schema_from_json(obj.get("schema") or {}),
            shards=shards("shards"),
            counts={str(k): int(v) for k, v in (obj.get("counts") or {}).items()},
            compression=obj.get("compression"),
            tokenizer=obj.get("tokenizer"),
            config_hash=str(obj.get("config_hash", "")),
            rejects=shards("rejects"),
            dead_letter=shards("dead_letter"),
            created_by=str(obj.get("created_by", "")),
        )
