"""The Beam graph of one run: read -> stages -> shards, rejects, dead letters -> finalize.

Every input record ends in exactly one place: the kept shards, the rejects or the dead
letters. The counts that prove it are computed as data inside the pipeline (Beam combiners),
not read back from metrics on the driver, so they are exact on every runner and the driver
may exit once a Dataflow job is submitted.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import heapq
import re
import time
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator

import apache_beam as beam
import pyarrow as pa
import xxhash

from winnow.format import output_schema, reject_schema
from winnow.pipeline.config import RunConfig
from winnow.pipeline.finalize import Finalize
from winnow.pipeline.report import DEAD_KINDS_KEY  # stats["stage_stats"] key of _DeadKinds' counts
from winnow.pipeline.sink import WriteShards
from winnow.pipeline.spill import spill_prefix
from winnow.pipeline.stages.base import StageOutputs
from winnow.pipeline.stages.spec import BuildContext

__all__ = ["build_pipeline", "run_schema", "RunOutputs", "dead_letter_kind", "dead_letter_file", "DEAD_KINDS_KEY"]

_KINDS_MAX = 100  # kinds listed; past it, the kinds with the largest hashes are summed as "other"
_FILE_KINDS_MAX = 50  # file-level kinds listed besides (never crowded out by per-record kinds)
_FILES_PER_KIND = 5  # files listed per kind (with their counts)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_PATH = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+|(?<![\w.])/[^\s,;)]+")
_PAREN = re.compile(r"\s*\([^()]*(?:\)|$)")
_NUMBER = re.compile(r"(?<![\w-])\d[\d,._]*")  # not inside a word: UTF-8 stays a name
_FILE_LEVEL = re.compile(
    r"truncated|anything after it|cannot read rows|stopped after|cannot open|rest of the file|every row of the file|"
    r"not a readable (?:Parquet file|tar archive)|cannot be read \(|in the (?:JSON )?document")
_TAR_SOURCE = re.compile(r"^(.*?\.(?:tar|tgz)(?:\.[A-Za-z0-9]+)?)#")


def dead_letter_kind(error: str | None) -> str:
    """The kind of a dead letter's error: its message without the specifics (paths, quoted
    values, numbers, parentheses) and without the advice after the first ``;``, so the same
    mistake on many lines, rows or files is one kind."""
    s = (error or "(no error text)").split(";", 1)[0]
    s = _PATH.sub("<file>", _QUOTED.sub("\u2026", s))
    s = _NUMBER.sub("N", _PAREN.sub("", s))
    return re.sub(r"\s+", " ", s).strip()[:160] or "(no error text)"


def dead_letter_file(source: str | None) -> str:
    """The input file a dead letter's source names (``a.jsonl:12`` and ``b.tar#key`` -> the file)."""
    s = source or ""
    m = _TAR_SOURCE.match(s)
    return m.group(1) if m else re.sub(r":\d+$", "", s)


def _rank(text: str) -> int:
    return xxhash.xxh3_64_intdigest(text.encode("utf-8", "replace"))


class _DeadKinds(beam.CombineFn):
    """Dead letters counted by (stage, error kind), bounded whatever the corpus.

    Per kind: the count, one example (the smallest by a hash of source and error, so every
    runner picks the same) and up to :data:`_FILES_PER_KIND` files with their counts. At most
    :data:`_KINDS_MAX` kinds are kept, plus :data:`_FILE_KINDS_MAX` file-level ones (a broken
    stream or file, kept apart so that many per-record kinds never crowd them out); the kinds
    and files kept are those with the smallest hashes (a bottom-k sample, so the result does not
    depend on how the input was split), the rest are summed as ``other``.
    """

    def create_accumulator(self) -> dict:
        return {"kinds": {}, "other": 0}

    @staticmethod
    def from_rows(rows: Iterable[dict]) -> dict:
        acc: dict = {"kinds": {}, "other": 0}
        for r in rows:
            error, source = r.get("error") or "", r.get("source") or ""
            kind = dead_letter_kind(error)
            file_level = bool(_FILE_LEVEL.search(error))
            key = (str(r.get("reject_stage")), kind, file_level)
            k = acc["kinds"].get(key)
            ex = (_rank(f"{source}\x00{error}"), source, error[:1000])
            if k is None:
                k = acc["kinds"][key] = {"count": 0, "example": ex, "files": {}, "more_files": False,
                                         "file_level": file_level}
            k["count"] += 1
            k["example"] = min(k["example"], ex)
            f = dead_letter_file(source)
            k["files"][f] = k["files"].get(f, 0) + 1
            if len(k["files"]) > 4 * _FILES_PER_KIND:
                _DeadKinds._trim_files(k)
        return _DeadKinds._trim(acc)

    @staticmethod
    def _trim_files(k: dict) -> None:
        if len(k["files"]) > _FILES_PER_KIND:
            keep = sorted(k["files"], key=lambda f: (_rank(f), f))[:_FILES_PER_KIND]
            k["files"] = {f: k["files"][f] for f in keep}
            k["more_files"] = True

    @staticmethod
    def _trim(acc: dict) -> dict:
        for file_level, cap in ((True, _FILE_KINDS_MAX), (False, _KINDS_MAX)):
            keys = [key for key, k in acc["kinds"].items() if k["file_level"] == file_level]
            if len(keys) > cap:
                for key in sorted(keys, key=lambda key: (_rank(f"{key[0]}\x00{key[1]}"), key))[cap:]:
                    acc["other"] += acc["kinds"].pop(key)["count"]
        for k in acc["kinds"].values():
            _DeadKinds._trim_files(k)
        return acc

    def add_input(self, acc: dict, part: dict) -> dict:
        return self.merge_accumulators([acc, part])

    def merge_accumulators(self, accs: Iterable[dict]) -> dict:
        out = self.create_accumulator()
        for a in accs:
            out["other"] += a["other"]
            for key, k in a["kinds"].items():
                o = out["kinds"].get(key)
                if o is None:
                    out["kinds"][key] = {**k, "files": dict(k["files"])}
                    continue
                o["count"] += k["count"]
                o["example"] = min(o["example"], k["example"])
                o["more_files"] = o["more_files"] or k["more_files"]
                for f, n in k["files"].items():
                    o["files"][f] = o["files"].get(f, 0) + n
        return self._trim(out)

    def extract_output(self, acc: dict) -> dict:
        kinds = [
            {"stage": stage, "kind": kind, "count": k["count"], "file_level": k["file_level"],
             "example_source": k["example"][1], "example_error": k["example"][2],
             "files": [[f, n] for f, n in sorted(k["files"].items(), key=lambda fn: (-fn[1], fn[0]))],
             "more_files": k["more_files"]}
            for (stage, kind, _), k in acc["kinds"].items()
        ]
        kinds.sort(key=lambda k: (not k["file_level"], -k["count"], k["stage"], k["kind"]))
        return {"kinds": kinds, "other": acc["other"]}


def run_schema(cfg: RunConfig) -> pa.Schema:
    """The output schema: core columns, then each configured stage's columns in order."""
    fields: list[pa.Field] = []
    for name in cfg.stages:
        fields.extend(cfg.registry[name].fields(cfg.options(name)))
    return output_schema(fields)


class RunOutputs:
    """Handles on the main PCollections (batches of records), for tests and callers that extend
    the graph: the kept records, and the rejects and dead letters as lists with one PCollection
    per step (flatten them only where a copy of all of them in memory is affordable)."""

    def __init__(self, kept: beam.PCollection, rejected: list[beam.PCollection], dead: list[beam.PCollection]) -> None:
        self.kept = kept
        self.rejected = rejected
        self.dead = dead


def _example_rank(r: dict) -> tuple[int, str, str]:
    """What orders a reject among the examples of its reason: a hash of (id, source), then both."""
    return xxhash.xxh3_64_intdigest(f"{r['id']}\x00{r['source']}".encode("utf-8", "replace")), r["id"], r["source"]


def _first(pair: tuple) -> Any:
    return pair[0]


def _example(r: dict, chars: int) -> tuple[int, str, str, dict]:
    """A reject's report example, ranked by a hash of (id, source) so the pick is deterministic.

    Cheap per reject (references and a truncated text); encoding happens in :func:`_example_json`
    for the few examples that survive the Top combiner.
    """
    text = r.get("text")
    image = r.get("image")
    media = image if image is not None else r.get("audio")
    if media is not None:
        nbytes = len(media)
    elif text is None:
        nbytes = 0
    else:
        nbytes = len(text) if text.isascii() else len(text.encode("utf-8", "replace"))
    ex = {
        "stage": r["reject_stage"],
        "reason": r["reject_reason"],
        "id": r["id"],
        "source": r["source"],
        "modality": r.get("modality"),
        "text": None if text is None else text[:chars],
        "duplicate_of": r.get("duplicate_of"),
        "error": r.get("error"),
        "bytes": nbytes,
        "image": image if image is not None and len(image) <= 65536 else None,  # thumbnailed in Finalize
    }
    return (*_example_rank(r), ex)


def _counted(batch: Any, key: Callable[[dict], Any]) -> list[tuple[Any, int]]:
    """``(key, count)`` pairs of one batch (summed per key downstream)."""
    counts: dict[Any, int] = {}
    for r in batch.rows:
        k = key(r)
        counts[k] = counts.get(k, 0) + 1
    return list(counts.items())


_COUNTS, _EXAMPLES, _KINDS = "counts", "examples", "kinds"


def _reject_key(r: dict) -> tuple:
    return r["reject_stage"], r["reject_reason"]


def _dead_key(r: dict) -> Any:
    return r["reject_stage"]


class _TallyFn(beam.DoFn):
    """The bookkeeping of one batch of rejects or dead letters, as tagged outputs: ``counts``
    (``(key, count)`` pairs by stage and reason, or by stage for dead letters), ``examples``
    (the batch's report-example candidates: per reason the ``keep_n`` smallest by rank, as
    ``TopExamples`` picks, only those made into examples) and, for dead letters, ``kinds``
    (:meth:`_DeadKinds.from_rows`). One step, not one per output: every transform costs the
    runner several milliseconds per run however few batches pass it."""

    def __init__(self, chars: int, keep_n: int, dead: bool) -> None:
        self._chars, self._keep_n, self._dead = chars, keep_n, dead

    def process(self, batch):  # no annotations: Beam would read them as type hints
        rows = batch.rows
        for kv in _counted(batch, _dead_key if self._dead else _reject_key):
            yield beam.pvalue.TaggedOutput(_COUNTS, kv)
        found: dict = {}
        for r in rows:
            found.setdefault(_reject_key(r), []).append((_example_rank(r), r))
        for key, candidates in found.items():
            for _, r in heapq.nsmallest(self._keep_n, candidates, key=_first):
                yield beam.pvalue.TaggedOutput(_EXAMPLES, (key, _example(r, self._chars)))
        if self._dead:
            yield beam.pvalue.TaggedOutput(_KINDS, _DeadKinds.from_rows(rows))


class _SumTuples(beam.CombineFn):
    """Element-wise sums of equal-length number tuples (a stage's CPU seconds, records, bytes)."""

    def create_accumulator(self) -> list:
        return []

    def add_input(self, acc: list, t: tuple) -> list:
        if not acc:
            return list(t)
        for i, v in enumerate(t):
            acc[i] += v
        return acc

    def merge_accumulators(self, accs: Iterable[list]) -> list:
        out: list = []
        for a in accs:
            out = self.add_input(out, a) if a else out
        return out

    def extract_output(self, acc: list) -> tuple:
        return tuple(acc)


def _example_json(ex: dict) -> dict:
    """The example as JSON-able data (image bytes as base64) for the Finalize side input."""
    out = {k: v for k, v in ex.items() if k != "image"}
    if ex["image"] is not None:
        out["image_b64"] = base64.b64encode(ex["image"]).decode("ascii")
    return out


class _ReusedViews:
    """``options.view_as`` that builds each view once (see :func:`_views_reused`)."""

    def __init__(self, options: Any) -> None:
        self._options = options
        self._views: dict[type, Any] = {}

    def __call__(self, cls: type) -> Any:
        view = self._views.get(cls)
        if view is None:
            view = self._views[cls] = type(self._options).view_as(self._options, cls)
        return view


@contextlib.contextmanager
def _views_reused(options: Any) -> Iterator[None]:
    """While the graph is built, ``options.view_as(cls)`` returns one view per class.

    Beam builds a new view (an argparse parser, a parse of the flags) on every ``view_as`` and
    asks for several on every transform it applies: about 2,600 views, 0.7 s of CPU, for the
    default text stages. A view holds no values of its own (reads and writes go to the options'
    shared values), so reusing it changes nothing but the time.
    """
    object.__setattr__(options, "view_as", _ReusedViews(options))  # PipelineOptions.__setattr__ takes options only
    try:
        yield
    finally:
        object.__delattr__(options, "view_as")


def build_pipeline(p: beam.Pipeline, cfg: RunConfig, files: list, *, started: float | None = None,
                   local: bool = True) -> RunOutputs:
    """Add the whole run to pipeline ``p``.

    Args:
        p: the Beam pipeline.
        cfg: the resolved run config (input and output set).
        files: the expanded input files (from ``winnow.pipeline.readers.expand_inputs``).
        started: wall-clock start, for elapsed time in stats.json.
        local: the runner shuffles in this machine's memory (FnApiRunner, multi_processing):
            ``sink.spill: auto`` spills the sinks' batches to files (see ``SinkConfig``).
    """
    with _views_reused(p.options):
        return _build(p, cfg, files, started=started, local=local)


def _build(p: beam.Pipeline, cfg: RunConfig, files: list, *, started: float | None, local: bool) -> RunOutputs:
    from winnow.pipeline.readers import ReadRecords

    schema = run_schema(cfg)
    rschema = reject_schema(schema)
    read = p | "Read" >> ReadRecords(files, cfg.reader)
    records = read.records
    rejected: list[beam.PCollection] = []
    dead: list[beam.PCollection] = [read.dead]
    stage_stats: list[beam.PCollection] = []
    artifacts: list[beam.PCollection] = []
    timing: list[beam.PCollection] = []
    published: dict[str, beam.PCollection] = {}
    spill = cfg.sink.spill == "always" or (cfg.sink.spill == "auto" and local)
    prefix = spill_prefix(cfg.output, local) if spill else None

    def spill_dir(subdir: str) -> str | None:
        return None if prefix is None else f"{prefix}-{subdir}"

    for name in cfg.stages:
        decl = cfg.registry[name]
        ctx = BuildContext(config=cfg, schema=schema, published=MappingProxyType(dict(published)),
                           spill_dir=spill_dir(f"stage-{name}"))
        out: StageOutputs = records | f"Stage[{name}]" >> decl.build(cfg.options(name), ctx)
        records = out.kept
        rejected.append(out.rejected)
        dead.append(out.dead)
        timing.extend(out.timing)
        published.update(out.published)
        if out.stats is not None:
            stage_stats.append(out.stats | f"StatsKey[{name}]" >> beam.Map(lambda d, n=name: (n, d)))
        if out.artifacts is not None:
            artifacts.append(out.artifacts)

    # Rejects and dead letters stay one PCollection per stage: every consumer below reads each
    # on its own and only small results are flattened (a Flatten of the records themselves is
    # a full in-memory buffer on FnApiRunner).
    if not rejected:
        rejected = [p | "NoRejects" >> beam.Create([])]

    out_dir = cfg.output
    kept_info = records | "Shards" >> WriteShards(out_dir, "shards", schema, cfg.sink, spill_dir=spill_dir("shards"))
    reject_sink = dataclasses.replace(cfg.sink, min_shards=1, shard_bytes=cfg.sink.reject_shard_bytes)
    rejects_info = tuple(rejected) | "Rejects" >> WriteShards(
        out_dir, "rejects", rschema, reject_sink, spill_dir=spill_dir("rejects"))
    dead_info = tuple(dead) | "DeadLetters" >> WriteShards(
        out_dir, "dead_letter", rschema, reject_sink, spill_dir=spill_dir("dead_letter"))

    read_count = (
        # sizes before the Flatten: a Flatten of the records would buffer a copy of the input
        (read.records | "ReadSizes" >> beam.Map(len), read.dead | "DeadSizes" >> beam.Map(len))
        | "FlattenRead" >> beam.Flatten() | "CountRead" >> beam.CombineGlobally(sum)
    )
    n_examples = cfg.report.examples_per_reason
    keep_n = max(n_examples, 1)
    # one step per PCollection of rejects or dead letters gives all their bookkeeping (counts,
    # report examples, dead-letter kinds), cut small before any Flatten (a Flatten of the records
    # would buffer another copy of them)
    reject_tally = [r | f"TallyRejects{i}" >> beam.ParDo(_TallyFn(cfg.report.example_chars, keep_n, dead=False))
                    .with_outputs(_COUNTS, _EXAMPLES) for i, r in enumerate(rejected)]
    dead_tally = [d | f"TallyDead{i}" >> beam.ParDo(_TallyFn(cfg.report.example_chars, keep_n, dead=True))
                  .with_outputs(_COUNTS, _EXAMPLES, _KINDS) for i, d in enumerate(dead)]
    reject_counts = (
        [t[_COUNTS] for t in reject_tally]
        | "FlattenRejectKeys" >> beam.Flatten() | "CountRejects" >> beam.CombinePerKey(sum)
    )
    dead_counts = (
        [t[_COUNTS] for t in dead_tally]
        | "FlattenDeadKeys" >> beam.Flatten() | "CountDead" >> beam.CombinePerKey(sum)
    )
    kept_kinds = (
        records
        | "KeptKey" >> beam.FlatMap(_counted, lambda r: (
            r.get("modality", "text"), None if r.get("aug_from") is None else (r.get("aug_method") or "unknown")))
        | "CountKept" >> beam.CombinePerKey(sum)
    )
    dead_kinds = (
        [t[_KINDS] for t in dead_tally]
        | "FlattenDeadKinds" >> beam.Flatten() | "CountDeadKinds" >> beam.CombineGlobally(_DeadKinds())
        | "DeadKindsKey" >> beam.Map(lambda d: (DEAD_KINDS_KEY, d))
    )
    stage_stats.append(dead_kinds)
    stage_timing = (
        (timing | "FlattenTiming" >> beam.Flatten() if timing else p | "NoTiming" >> beam.Create([]))
        | "SumTiming" >> beam.CombinePerKey(_SumTuples())
    )
    examples = (
        [t[_EXAMPLES] for t in reject_tally + dead_tally]
        | "FlattenExamples" >> beam.Flatten()
        | "TopExamples" >> beam.combiners.Top.PerKey(keep_n, key=lambda e: e[:3], reverse=True)
        | "ExampleValues" >> beam.FlatMap(lambda kv: [_example_json(e[3]) for e in kv[1][:n_examples]])
    )
    all_stats = (
        stage_stats | "FlattenStageStats" >> beam.Flatten() if stage_stats else p | "NoStageStats" >> beam.Create([])
    )
    all_artifacts = (
        artifacts | "FlattenArtifacts" >> beam.Flatten() if artifacts else p | "NoArtifacts" >> beam.Create([])
    )
    side = beam.pvalue
    _ = (
        p
        | "FinalizeSeed" >> beam.Create([None])
        | "Finalize" >> beam.ParDo(
            Finalize(cfg, schema, started=started if started is not None else time.time(),
                     sections=cfg.registry.report_sections()),
            kept_info=side.AsList(kept_info),
            rejects_info=side.AsList(rejects_info),
            dead_info=side.AsList(dead_info),
            read_count=side.AsSingleton(read_count),
            reject_counts=side.AsList(reject_counts),
            dead_counts=side.AsList(dead_counts),
            kept_kinds=side.AsList(kept_kinds),
            examples=side.AsList(examples),
            stage_stats=side.AsList(all_stats),
            artifacts=side.AsList(all_artifacts),
            timing=side.AsList(stage_timing),
        )
    )
    return RunOutputs(records, rejected, dead)

