"""``winnow inspect OUT``: the manifest summary, counts per stage and reason, a few rows."""

from __future__ import annotations

import json
from typing import Any

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
    except (OSError, ImportError, ValueError) as exc:
        raise ManifestError(f"{uri} cannot be read ({type(exc).__name__}: {exc})") from exc


def _stats_lines(stats: dict[str, Any]) -> list[str]:
    lines = ["stages:"]
    for st in stats["stages"]:
        parts = [f"  {st['name']:<14} in {st['in']:>10,}  out {st['out']:>10,}"]
        parts += [f"{reason} {n:,}" for reason, n in st["rejected"].items()]
        if st["dead_letter"]:
            parts.append(f"dead_letter {st['dead_letter']:,}")
        t = st.get("time")
        if t and t.get("records_per_s") is not None:
            parts.append(f"[{t['cpu_s']:,.1f} CPU s, {t['records_per_s']:,.0f} rec/s, "
                         f"{t['mb_per_s_in']:,.2f} MB/s in, {t['mb_per_s_out']:,.2f} MB/s out]")
        lines.append("  ".join(parts))
    lines.append(f"balance: {'ok' if stats['balanced'] else 'MISMATCH'}")
    return lines


def _row_lines(out: str, m: Manifest, rows: int) -> list[str]:
    lines: list[str] = []
    for shard in m.shards:
        if len(lines) >= rows:
            break
        uri = join_uri(out, shard.path)
        try:
            with fsspec.open(uri, "rb") as fh:  # seekable: reads the footer and one batch, not the shard
                reader = pa.ipc.open_file(fh)
                for b in range(reader.num_record_batches):
                    for r in reader.get_batch(b).slice(0, rows - len(lines)).to_pylist():
                        text = (r.get("text") or "").replace("\n", " ")
                        media = r.get("image") or r.get("audio")
                        extra = f" [{len(media):,} media bytes]" if media else ""
                        lines.append(f"  {r['id'][:16]}  {r['modality']:<10} {text[:90]!r}{extra}")
                    if len(lines) >= rows:
                        break
        except (OSError, pa.ArrowInvalid) as exc:
            raise ManifestError(f"{uri} is listed in index.json but unreadable ({type(exc).__name__}: {exc})") from exc
    return lines


def inspect_run(out: str, rows: int = 3) -> str:
    """A text summary of a finished run.

    Raises:
        ManifestError: no readable index.json in ``out``, or a listed shard is unreadable.
    """
    index = join_uri(out, "index.json")
    m = Manifest.loads(_read(index), where=index)
    lines = [
        f"{out}: {len(m.shards)} shard(s), {m.total_rows:,} rows, {format_size(sum(s.bytes for s in m.shards))}"
        f", compression {m.compression or 'none'}, {m.created_by}",
        "counts: " + ", ".join(f"{k} {v:,}" for k, v in m.counts.items()),
        "columns: " + ", ".join(f"{f.name}:{f.type}" for f in m.schema),
    ]
    try:
        stats = json.loads(_read(join_uri(out, "stats.json")))
        lines += _stats_lines(stats)
    except (ManifestError, ValueError, KeyError, TypeError):
        lines.append("stats.json: missing or unreadable")
    lines += _row_lines(out, m, rows)
    return "\n".join(lines)
