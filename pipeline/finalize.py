"""The last step of a run: stats.json, report.html, config.yaml, then index.json.

It runs once, after every shard is written (its side inputs wait for the writers), and writes
the manifest last so a reader never sees a manifest that lists a missing shard.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Iterable, Mapping, Sequence

import apache_beam as beam
import pyarrow as pa
import yaml

from winnow import __version__
from winnow.format import Manifest, ShardInfo
from winnow.pipeline.config import RunConfig, config_hash, config_to_dict
from winnow.pipeline.records import READ_STAGE

__all__ = ["Finalize", "compute_stats", "add_timing"]


def add_timing(stats: dict[str, Any], timing: Iterable[tuple[str, Sequence[float]]]) -> None:
    """Per-stage time into the funnel entries and ``stats["timing"]``: CPU seconds of the
    stage's steps, records and MB in and out (and the exact bytes, ``bytes_in``/``bytes_out``),
    and records/s and MB/s per CPU second.

    ``timing`` holds ``(stage, (cpu_s, records_in, bytes_in, records_out, bytes_out))``
    summed over the run (from :class:`~winnow.pipeline.stages.base.StageFn`).
    """
    by_stage = {}
    for stage, (cpu, n_in, b_in, n_out, b_out) in timing:
        rate = (lambda x: round(x / cpu, 3)) if cpu > 0 else (lambda x: None)
        by_stage[stage] = {
            "cpu_s": round(cpu, 3), "records_in": int(n_in), "records_out": int(n_out),
            "mb_in": round(b_in / 1e6, 3), "mb_out": round(b_out / 1e6, 3),
            "bytes_in": int(b_in), "bytes_out": int(b_out),  # exact (the MB figures are rounded)
            "records_per_s": rate(n_in), "mb_per_s_in": rate(b_in / 1e6), "mb_per_s_out": rate(b_out / 1e6),
        }
    stats["timing"] = dict(sorted(by_stage.items()))
    for entry in stats.get("stages", ()):
        t = by_stage.get(entry["name"])
        if t is not None:
            entry["time"] = t


def compute_stats(
    stages: Sequence[str],
    read_count: int,
    reject_counts: Iterable[tuple[tuple[str, str], int]],
    dead_counts: Iterable[tuple[str, int]],
    kept_kinds: Iterable[tuple[tuple[str, str | bool | None], int]],
    shards: Sequence[ShardInfo],
) -> dict[str, Any]:
    """The funnel and the balance ``read = kept_originals + rejected + dead_letter``."""
    rejected_by: dict[str, dict[str, int]] = {}
    for (stage, reason), n in reject_counts:
        rejected_by.setdefault(stage, {})[reason] = rejected_by.get(stage, {}).get(reason, 0) + n
    dead_by: dict[str, int] = {}
    for stage, n in dead_counts:
        dead_by[stage] = dead_by.get(stage, 0) + n
    modalities: dict[str, int] = {}
    kept_originals = augmented = 0
    by_method: dict[str, int] = {}
    for (modality, aug), n in kept_kinds:  # aug: the aug_method of augmented records, else None
        modalities[modality] = modalities.get(modality, 0) + n
        if aug:
            augmented += n
            method = aug if isinstance(aug, str) else "unknown"
            by_method[method] = by_method.get(method, 0) + n
        else:
            kept_originals += n
    funnel = []
    n_in = read_count
    for stage in (READ_STAGE, *stages):
        rej = dict(sorted(rejected_by.get(stage, {}).items()))
        dead = dead_by.get(stage, 0)
        out = n_in - sum(rej.values()) - dead
        funnel.append({"name": stage, "in": n_in, "out": out, "rejected": rej, "dead_letter": dead})
        n_in = out
    rejected = sum(sum(v.values()) for v in rejected_by.values())
    dead_letter = sum(dead_by.values())
    rows = sum(s.rows for s in shards)
    return {
        "read": read_count,
        "kept": kept_originals,
        "rejected": rejected,
        "dead_letter": dead_letter,
        "augmented": augmented,
        "augmented_by_method": dict(sorted(by_method.items())),
        "balanced": read_count == kept_originals + rejected + dead_letter and rows == kept_originals + augmented,
        "stages": funnel,
        "modalities": dict(sorted(modalities.items())),
        "shards": {"count": len(shards), "rows": rows, "bytes": sum(s.bytes for s in shards)},
    }


class Finalize(beam.DoFn):
    """Write stats.json, report.html and config.yaml, then index.json last."""

    def __init__(self, cfg: RunConfig, schema: pa.Schema, started: float, sections: Mapping[str, Any] | None = None) -> None:
        self._cfg = cfg
        self._schema = schema
        self._started = started
        self._sections = dict(sections or {})

    def process(
        self,
        _: Any,
        kept_info: list[dict],
        rejects_info: list[dict],
        dead_info: list[dict],
        read_count: int,
        reject_counts: list,
        dead_counts: list,
        kept_kinds: list,
        examples: list[dict],
        stage_stats: list = (),
        artifacts: list = (),
        timing: list = (),
    ) -> Iterable[dict]:
        from winnow.pipeline.report import make_thumbnail, render_report
        from winnow.pipeline.stages.stats import merge_stat_dicts
        from winnow.shardio import atomic_write, join_uri

        cfg = self._cfg
        out = cfg.output
        order = lambda infos: tuple(sorted((ShardInfo.from_json(i) for i in infos), key=lambda s: s.path))  # noqa: E731
        shards, rejects, dead = order(kept_info), order(rejects_info), order(dead_info)
        stats = compute_stats(cfg.stages, read_count, reject_counts, dead_counts, kept_kinds, shards)
        chash = config_hash(cfg)
        stats["config_hash"] = chash
        stats["rejects_files"] = len(rejects)
        stats["dead_letter_files"] = len(dead)
        stats["elapsed_s"] = round(time.time() - self._started, 3)
        add_timing(stats, timing)
        by_stage: dict[str, list[dict]] = {}
        for stage, d in stage_stats:
            by_stage.setdefault(stage, []).append(d)
        # Sorted merge: the result does not depend on the order side inputs arrive in.
        stats["stage_stats"] = {
            s: merge_stat_dicts(sorted(ds, key=lambda d: json.dumps(d, sort_keys=True, default=str)))
            for s, ds in sorted(by_stage.items())
        }
        manifest_extra = merge_stat_dicts(sorted(artifacts, key=lambda d: json.dumps(d, sort_keys=True, default=str)))
        unknown = set(manifest_extra) - {"tokenizer"}
        if unknown:
            raise ValueError(f"stage artifacts may set only the manifest's 'tokenizer' field, got {sorted(unknown)}")
        examples = sorted(examples, key=lambda e: (e["stage"], e["reason"], e["id"], e["source"]))
        for e in examples:
            raw = e.pop("image_b64", None)
            if raw is not None:
                thumb = make_thumbnail(base64.b64decode(raw))
                if thumb is not None:
                    e["thumb_png"] = base64.b64encode(thumb).decode("ascii")
        resolved = config_to_dict(cfg)

        atomic_write(join_uri(out, "config.yaml"), yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True).encode("utf-8"))
        atomic_write(join_uri(out, "stats.json"), (json.dumps(stats, indent=2) + "\n").encode("utf-8"))
        atomic_write(join_uri(out, "report.html"), render_report(stats, examples, resolved, stage_sections=self._sections).encode("utf-8"))
        counts = {
            "read": stats["read"],
            "kept": stats["kept"],
            "rejected": stats["rejected"],
            "dead_letter": stats["dead_letter"],
            "augmented": stats["augmented"],
        }
        manifest = Manifest(
            schema=self._schema,
            shards=shards,
            counts=counts,
            compression=None if cfg.sink.compression == "none" else cfg.sink.compression,
            tokenizer=manifest_extra.get("tokenizer"),
            config_hash=chash,
            rejects=rejects,
            dead_letter=dead,
            created_by=f"winnow {__version__}",
        )
        atomic_write(join_uri(out, "index.json"), manifest.dumps().encode("utf-8"))
        yield stats
