"""``winnow inspect OUT``: the manifest summary, counts per stage and reason, a few rows."""

from __future__ import annotations

import json

import fsspec
import pyarrow as pa

from winnow.errors import ManifestError
from winnow.format import Manifest
from winnow.pipeline.sink import join_uri
from winnow.units import format_size

__all__ = ["inspect_run"]


def _read(uri: str) -> bytes:
    try:
        with fsspec.open(uri, "rb") as fh:
            return fh.read()
    except FileNotFoundError as exc:
        raise ManifestError(f"{uri} does not exist; is this the output directory of a finished run?") from exc


def inspect_run(out: str, rows: int = 3) -> str:
    """A text summary of a finished run.

    Raises:
        ManifestError: no readable index.json in ``out``.
    """
    m = Manifest.loads(_read(join_uri(out, "index.json")), where=join_uri(out, "index.json"))
    lines = [
        f"{out}: {len(m.shards)} shard(s), {m.total_rows:,} rows, {format_size(sum(s.bytes for s in m.shards))}"
        f", compression {m.compression or 'none'}, {m.created_by}",
        "counts: " + ", ".join(f"{k} {v:,}" for k, v in m.counts.items()),
        "columns: " + ", ".join(f"{f.name}:{f.type}" for f in m.schema),
    ]
    try:
        stats = json.loads(_read(join_uri(out, "stats.json")))
    except ManifestError:
        stats = None
    if stats:
        lines.append("stages:")
        for st in stats["stages"]:
            parts = [f"  {st['name']:<14} in {st['in']:>10,}  out {st['out']:>10,}"]
            for reason, n in st["rejected"].items():
                parts.append(f"{reason} {n:,}")
            if st["dead_letter"]:
                parts.append(f"dead_letter {st['dead_letter']:,}")
            lines.append("  ".join(parts))
        lines.append(f"balance: {'ok' if stats['balanced'] else 'MISMATCH'}")
    shown = 0
    for shard in m.shards:
        if shown >= rows:
            break
        with fsspec.open(join_uri(out, shard.path), "rb") as fh:
            reader = pa.ipc.open_file(pa.py_buffer(fh.read()))
        for b in range(reader.num_record_batches):
            batch = reader.get_batch(b)
            for r in batch.slice(0, rows - shown).to_pylist():
                text = (r.get("text") or "").replace("\n", " ")
                media = r.get("image") or r.get("audio")
                extra = f" [{len(media):,} media bytes]" if media else ""
                lines.append(f"  {r['id'][:16]}  {r['modality']:<10} {text[:90]!r}{extra}")
                shown += 1
            if shown >= rows:
                break
    return "\n".join(lines)
