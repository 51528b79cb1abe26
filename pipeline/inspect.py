"""``winnow inspect OUT``: what a finished run read, did and wrote, from the run's own files.

The inputs and stages (``config.yaml``), the shards and counts (``index.json``), the counts
and time of every stage (``stats.json``), the tokenizer (the manifest's ``tokenizer`` entry),
the packed dataset (``packed/index.json``, paths shown relative to ``OUT``) and a few rows.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
from typing import Any

import fsspec
import pyarrow as pa
import yaml

from winnow.errors import ManifestError
from winnow.format import Manifest
from winnow.pipeline.runner import INCOMPLETE_MARKER
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


_LIST = 8  # inputs and shards listed by name; past that, a count


def _optional(uri: str) -> bytes | None:
    """The file's bytes, or None when it does not exist (other read errors raise)."""
    try:
        return _read(uri)
    except ManifestError as exc:
        if isinstance(exc.__cause__, FileNotFoundError):
            return None
        raise


def _check_listed(out: str, shards: Any, where: str) -> None:
    """Raise unless every shard the manifest lists is there (one listing per directory)."""
    listed: dict[str, set[str] | None] = {}
    for s in shards:
        uri = join_uri(out, s.path)
        parent = posixpath.dirname(uri)
        if parent not in listed:
            try:
                fs, path = fsspec.core.url_to_fs(parent)
                listed[parent] = {posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)}
            except FileNotFoundError:
                listed[parent] = set()
            except (OSError, ImportError, ValueError):
                listed[parent] = None  # cannot list: reading the rows says what is wrong
        names = listed[parent]
        if names is not None and posixpath.basename(s.path) not in names:
            raise ManifestError(f"{uri} is listed in {where} but does not exist; the output was changed after "
                                "the run (run it again)")


def _shard_lines(title: str, prefix: str, shards: Any) -> list[str]:
    lines = [f"{title}:"]
    for s in list(shards)[:_LIST]:
        lines.append(f"  {prefix}{s.path}  {s.rows:,} rows, {format_size(s.bytes)}")
    if len(shards) > _LIST:
        rest = list(shards)[_LIST:]
        lines.append(f"  ... and {len(rest)} more ({sum(s.rows for s in rest):,} rows, "
                     f"{format_size(sum(s.bytes for s in rest))})")
    return lines


def _input_lines(config: dict[str, Any] | None, stats: dict[str, Any] | None) -> list[str]:
    if config is None:
        return ["inputs: config.yaml missing or unreadable"]
    inputs = config.get("input") or []
    if isinstance(inputs, str):
        inputs = [inputs]
    reader = config.get("reader") if isinstance(config.get("reader"), dict) else {}
    read = f", {stats['read']:,} records read" if stats and isinstance(stats.get("read"), int) else ""
    lines = [f"inputs: {len(inputs)} path(s), reader format {reader.get('format', '?')}, "
             f"text field {reader.get('text_field', '?')!r}{read}"]
    lines += [f"  {p}" for p in inputs[:_LIST]]
    if len(inputs) > _LIST:
        lines.append(f"  ... and {len(inputs) - _LIST} more")
    stages = config.get("stages")
    if isinstance(stages, list):
        lines.append(f"stage order: {', '.join(map(str, stages)) or '(none)'}")
    return lines


def _tokenizer_lines(out: str, m: Manifest, config: dict[str, Any] | None,
                     packing: dict[str, Any] | None) -> list[str]:
    t = m.tokenizer
    if t:
        ids = ", ".join(f"{k.removesuffix('_id')} {t[k]}" for k in ("unk_id", "bos_id", "eos_id", "pad_id")
                        if isinstance(t.get(k), int))
        if packing and isinstance(packing.get("pad_id"), int) and "pad_id" not in t:
            ids += f", pad {packing['pad_id']} (packing)"
        size = t.get("vocab_size")
        vocab = f"{size:,}" if isinstance(size, int) else str(size)
        lines = [f"tokenizer: {join_uri(out, str(t.get('model', '?')))} ({t.get('type', '?')}, vocab {vocab}, "
                 f"ids {t.get('dtype', '?')}); special ids: {ids or 'none recorded'}"]
        detail = []
        if isinstance(t.get("sample_records"), int):
            detail.append(f"trained on {t['sample_records']:,} records")
        if t.get("dictionary_terms"):
            detail.append(f"{t['dictionary_terms']:,} dictionary terms")
        if t.get("sha256"):
            detail.append(f"sha256 {str(t['sha256'])[:16]}")
        if detail:
            lines.append("  " + ", ".join(detail))
        return lines
    encode = (config or {}).get("encode")
    if isinstance(encode, dict) and encode.get("model"):
        return [f"tokenizer: {encode['model']} (given by encode.model; not trained by this run)"]
    return ["tokenizer: none (the run trained no tokenizer)"]


def _packed_lines(out: str, packing: dict[str, Any] | None) -> list[str]:
    rel = str((packing or {}).get("path") or "packed/index.json")
    base = posixpath.dirname(rel)
    try:
        raw = _optional(join_uri(out, rel))
        if raw is None:
            return [] if packing is None else [f"packed: {rel} listed in stats.json but missing"]
        pm = Manifest.loads(raw, where=join_uri(out, rel))
    except ManifestError as exc:
        return [f"packed: {exc}"]
    c = pm.counts
    length = (packing or {}).get("length")
    head = (f"packed: {rel}, {len(pm.shards)} shard(s), {pm.total_rows:,} rows"
            + (f" of {length:,} tokens" if isinstance(length, int) else "")
            + f", {format_size(sum(s.bytes for s in pm.shards))}")
    if isinstance(c.get("documents"), int) and isinstance(c.get("tokens"), int):
        head += f"; {c['documents']:,} documents, {c['tokens']:,} tokens"
    if packing and isinstance(packing.get("padding_share"), (int, float)):
        head += f", padding {packing['padding_share']:.2%}"
    if packing and isinstance(packing.get("eos_id"), int):
        head += f", separator id {packing['eos_id']}, pad id {packing.get('pad_id')}"
    return [head] + _shard_lines("packed shards", f"{base}/" if base else "", pm.shards)[1:]


def _stats_lines(stats: dict[str, Any]) -> list[str]:
    lines = ["stages:"]
    for st in stats["stages"]:
        parts = [f"  {st['name']:<14} in {st['in']:>10,}  out {st['out']:>10,}"]
        parts += [f"{reason} {n:,}" for reason, n in st["rejected"].items()]
        if st["dead_letter"]:
            parts.append(f"dead_letter {st['dead_letter']:,}")
        if st["name"] == "augment" and stats.get("augmented"):
            parts.append(f"+{stats['augmented']:,} augmented (counted on their own)")
        t = st.get("time")
        if t and t.get("records_per_s") is not None:
            parts.append(f"[{t['cpu_s']:,.1f} CPU s, {t['records_per_s']:,.0f} rec/s, "
                         f"{t['mb_per_s_in']:,.2f} MB/s in, {t['mb_per_s_out']:,.2f} MB/s out]")
        lines.append("  ".join(parts))
    lines.append(f"balance: {'ok' if stats['balanced'] else 'MISMATCH'}"
                 + (f"; wall time {stats['elapsed_s']:,.1f} s" if isinstance(stats.get("elapsed_s"), (int, float))
                    else ""))
    return lines


def _row_line(r: dict[str, Any], packing: dict[str, Any] | None) -> str:
    """One row: its id in full, the modality, and the text (or, for a row of tokens only, the token counts)."""
    rid = str(r.get("id"))
    ident = f"{rid:<24}" if len(rid) <= 24 else rid
    text = (r.get("text") or "").replace("\n", " ")
    media = r.get("image") or r.get("audio")
    extra = f" [{len(media):,} media bytes]" if media else ""
    tokens = r.get("tokens")
    if tokens is not None:
        n = len(tokens)
        if packing is not None:  # a packed row: documents joined by the separator, padded at the end
            eos, pad = packing.get("eos_id"), packing.get("pad_id")
            n_pad = 0
            while n_pad < n and tokens[n - 1 - n_pad] == pad:
                n_pad += 1
            seps = sum(1 for t in tokens[: n - n_pad] if t == eos)
            detail = f"{n:,} tokens, {seps:,} separator(s) (id {eos}), {n_pad:,} trailing padding (id {pad})"
        else:
            detail = f"{n:,} tokens"
        if not text:
            return f"  {ident}  {r['modality']:<10} [{detail}; first ids {list(tokens[:8])}]{extra}"
        extra = f" [{detail}]" + extra
    return f"  {ident}  {r['modality']:<10} {text[:90]!r}{extra}"


def _row_lines(out: str, m: Manifest, rows: int, packing: dict[str, Any] | None = None) -> list[str]:
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
                        lines.append(_row_line(r, packing))
                    if len(lines) >= rows:
                        break
        except (OSError, pa.ArrowInvalid) as exc:
            raise ManifestError(f"{uri} is listed in index.json but unreadable ({type(exc).__name__}: {exc})") from exc
    return lines


_PACKED = re.compile(r"\(packed, length (\d+)\)")


def _packed_of(out: str, m: Manifest) -> dict[str, Any] | None:
    """What a packed output (``OUT/packed``) says of itself: its length, ids and parent run; None
    for any other manifest. Manifests from before the packed ``tokenizer`` entry (``null``) are
    known by ``created_by`` and get the ids from the parent run's stats.json."""
    t = dict(m.tokenizer or {})
    found = _PACKED.search(m.created_by)
    if "parent" not in t and not found:
        return None
    parent = posixpath.normpath(join_uri(out.rstrip("/"), str(t.get("parent") or "..")))
    if "://" in out:  # normpath would fold the scheme's "//"
        parent = posixpath.dirname(out.rstrip("/")) if str(t.get("parent") or "..") == ".." else join_uri(out, t["parent"])
    info = {k: t[k] for k in ("length", "eos_id", "pad_id", "dtype") if k in t}
    if "length" not in info:
        field = m.schema.field("tokens") if "tokens" in m.schema.names else None
        size = getattr(field.type, "list_size", None) if field is not None else None
        info["length"] = size if isinstance(size, int) else (int(found.group(1)) if found else None)
    if "eos_id" not in info:
        try:
            raw = _optional(join_uri(parent, "stats.json"))
            packing = (json.loads(raw).get("stage_stats") or {}).get("encode", {}).get("packing") if raw else None
        except (ManifestError, ValueError, AttributeError):
            packing = None
        if isinstance(packing, dict):
            info.update({k: packing[k] for k in ("eos_id", "pad_id", "dtype") if k in packing and k not in info})
    return {**info, "parent": parent, "entry": t}


def _inspect_packed(out: str, m: Manifest, pk: dict[str, Any], rows: int) -> str:
    c = m.counts
    length = pk.get("length")
    lines = [f"{out}: packed token sequences{f' of {length:,} tokens' if isinstance(length, int) else ''}"
             f" ({pk.get('dtype') or '?'} ids), {m.total_rows:,} rows in {len(m.shards)} shard(s), "
             f"{format_size(sum(s.bytes for s in m.shards))}, compression {m.compression or 'none'}, {m.created_by}"]
    parent, parent_m = pk["parent"], None
    what = []
    if isinstance(c.get("documents"), int):
        what.append(f"{c['documents']:,} documents")
    if isinstance(c.get("tokens"), int):
        what.append(f"{c['tokens']:,} tokens")
    if isinstance(c.get("padding"), int) and isinstance(length, int) and m.total_rows:
        what.append(f"padding {c['padding']:,} slots ({c['padding'] / (m.total_rows * length):.2%})")
    try:
        parent_m = Manifest.loads(_read(join_uri(parent, "index.json")), where=join_uri(parent, "index.json"))
        lines.append(f"packed from the run {parent} ({len(parent_m.shards)} shard(s), {parent_m.total_rows:,} rows); "
                     + ", ".join(what))
    except ManifestError as exc:
        lines.append(f"packed from the run {parent} (its index.json: {exc}); " + ", ".join(what))
    if isinstance(pk.get("eos_id"), int):
        lines.append(f"each row: documents' token ids joined by the separator id {pk['eos_id']} (</s>), "
                     f"the last row of a group padded with id {pk.get('pad_id')}")
    lines += _shard_lines("shards", "", m.shards)
    lines.append("columns: " + ", ".join(f"{f.name}:{f.type}" for f in m.schema))
    entry = pk["entry"]
    if parent_m is not None and parent_m.tokenizer:
        tok = _tokenizer_lines(parent, parent_m, None, None)
    elif entry.get("model"):
        resolved = {**entry, "model": posixpath.relpath(posixpath.normpath(join_uri("run/packed", entry["model"])), "run")}
        tok = _tokenizer_lines(parent, dataclasses.replace(m, tokenizer=resolved), None, None)
    else:
        tok = ["tokenizer: none recorded (the parent run's index.json names none; see its config.yaml encode.model)"]
    tok[0] = tok[0].replace("tokenizer: ", "tokenizer (the parent run's): ", 1)
    lines += tok
    lines.append("rows:")
    lines += _row_lines(out, m, rows, pk)
    return "\n".join(lines)


def inspect_run(out: str, rows: int = 3) -> str:
    """A text summary of a finished run.

    Raises:
        ManifestError: no readable index.json in ``out``, or a listed shard is unreadable.
    """
    index = join_uri(out, "index.json")
    try:
        raw_index = _read(index)
    except ManifestError:
        if _optional(join_uri(out, INCOMPLETE_MARKER)) is not None:
            raise ManifestError(f"{out} holds an interrupted run ({INCOMPLETE_MARKER} is there, index.json is not): "
                                "run it again to get shards to inspect") from None
        raise
    m = Manifest.loads(raw_index, where=index)
    for key, listed in (("shards", m.shards), ("rejects", m.rejects), ("dead_letter", m.dead_letter)):
        _check_listed(out, listed, f"{index} ({key})")
    pk = _packed_of(out, m)
    if pk is not None:
        return _inspect_packed(out, m, pk, rows)
    stats: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    try:
        raw = _optional(join_uri(out, "stats.json"))
        stats = json.loads(raw) if raw is not None else None
    except (ManifestError, ValueError):
        stats = None
    try:
        raw = _optional(join_uri(out, "config.yaml"))
        loaded = yaml.safe_load(raw) if raw is not None else None
        config = loaded if isinstance(loaded, dict) else None
    except (ManifestError, yaml.YAMLError):
        config = None
    packing = None
    if stats is not None:
        enc = (stats.get("stage_stats") or {}).get("encode")
        packing = enc.get("packing") if isinstance(enc, dict) and isinstance(enc.get("packing"), dict) else None
    lines = [
        f"{out}: {len(m.shards)} shard(s), {m.total_rows:,} rows, {format_size(sum(s.bytes for s in m.shards))}"
        f", compression {m.compression or 'none'}, {m.created_by}",
        "counts: " + ", ".join(f"{k} {v:,}" for k, v in m.counts.items()),
    ]
    lines += _input_lines(config, stats)
    lines += _shard_lines("shards", "", m.shards)
    lines.append("columns: " + ", ".join(f"{f.name}:{f.type}" for f in m.schema))
    lines += _tokenizer_lines(out, m, config, packing)
    lines += _packed_lines(out, packing)
    if stats is not None:
        try:
            lines += _stats_lines(stats)
        except (ValueError, KeyError, TypeError):
            lines.append("stats.json: unreadable")
    else:
        lines.append("stats.json: missing or unreadable")
    lines.append("rows:")
    lines += _row_lines(out, m, rows)
    return "\n".join(lines)
