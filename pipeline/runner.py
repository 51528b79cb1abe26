"""Running a configured curation job on a Beam runner.

Local default: the in-process FnApiRunner, set explicitly (the DirectRunner first tries to
download the Prism binary, which hangs offline). ``workers > 1`` runs it with
``direct_running_mode=multi_processing``. Any other runner (PortableRunner for Spark, Flink
or a Kubernetes worker pool; DataflowRunner) is chosen with Beam's own flags, passed through.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Sequence

import apache_beam as beam
import fsspec
from apache_beam.options.pipeline_options import PipelineOptions

from winnow.errors import ConfigError, OutputError, WinnowError
from winnow.pipeline.config import RunConfig
from winnow.pipeline.memory import tune_local_memory
from winnow.pipeline.sink import join_uri

__all__ = ["pipeline_options", "prepare_output", "run", "RunResult", "OUTPUT_ENTRIES"]

log = logging.getLogger("winnow")

#: What a run writes into its output directory (and what ``overwrite`` removes).
OUTPUT_ENTRIES = ("index.json", "shards", "rejects", "dead_letter", "tokenizer", "packed", "stats.json", "report.html",
                  "config.yaml")

#: Runners that execute in this process (and its children): winnow tunes their allocators.
LOCAL_RUNNERS = frozenset({"FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner"})
_UNSUPPORTED_RUNNERS = {"daskrunner": "Beam's DaskRunner loses data on branching pipelines; use FnApiRunner, PortableRunner or DataflowRunner"}


@dataclass(frozen=True)
class RunResult:
    """What a finished run reports back."""

    output: str
    stats: dict[str, Any] | None
    runner: str
    state: str
    job: Any = None  # the translated job of a Dataflow ``--dry_run``


def pipeline_options(workers: int = 1, beam_args: Sequence[str] = ()) -> PipelineOptions:
    """Beam options: FnApiRunner unless ``beam_args`` names a runner; N local processes."""
    if workers < 1:
        raise ConfigError("--workers", workers, "an integer >= 1")
    args = list(beam_args)
    runner = None
    for i, a in enumerate(args):
        if a.startswith("--runner="):
            runner = a.split("=", 1)[1]
        elif a == "--runner" and i + 1 < len(args):
            runner = args[i + 1]
    if runner is None:
        args.append("--runner=FnApiRunner")
        runner = "FnApiRunner"
    if runner.lower() in _UNSUPPORTED_RUNNERS:
        raise ConfigError("--runner", runner, "a supported runner", _UNSUPPORTED_RUNNERS[runner.lower()])
    if workers > 1:
        if runner not in ("FnApiRunner", "DirectRunner"):
            raise ConfigError("--workers", workers, "1 with a remote runner", f"size the {runner} cluster with its own flags")
        args += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    return PipelineOptions(args)


def prepare_output(uri: str, overwrite: bool) -> None:
    """Refuse to mix runs in one directory; with ``overwrite``, remove a previous run's files.

    Raises:
        OutputError: the directory holds something and ``overwrite`` is false, or it cannot
            be listed or created (missing filesystem package, credentials, permissions).
    """
    try:
        _prepare_output(uri, overwrite)
    except WinnowError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to reach the output is the user's to fix
        raise OutputError(
            f"--output {uri} cannot be prepared ({type(exc).__name__}: {exc}); check the path, that its "
            "filesystem package is installed (s3fs for s3://, gcsfs for gs://) and that credentials allow writing"
        ) from exc


def _prepare_output(uri: str, overwrite: bool) -> None:
    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        fs.makedirs(path, exist_ok=True)
        return
    if not fs.isdir(path):
        raise OutputError(f"--output {uri} is a file; expected a directory (new or empty)")
    entries = [e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(path, detail=False)]
    if not entries:
        return
    if not overwrite:
        raise OutputError(
            f"--output {uri} is not empty ({', '.join(sorted(entries)[:5])}{', ...' if len(entries) > 5 else ''}); "
            "choose a new directory or pass --overwrite to replace a previous run"
        )
    foreign = sorted(e for e in set(entries) - set(OUTPUT_ENTRIES) if not e.startswith(".tmp-"))
    if foreign:
        raise OutputError(
            f"--output {uri} holds files winnow did not write ({', '.join(foreign[:5])}); "
            "refusing to overwrite it; choose a new directory"
        )
    # The manifest goes first so no reader sees one that lists deleted shards.
    leftovers = [e for e in entries if e.startswith(".tmp-")]  # temp files of a killed run
    for name in (*OUTPUT_ENTRIES, *leftovers):
        p = join_uri(path, name)
        if fs.exists(p):
            fs.rm(p, recursive=True)


def run(
    cfg: RunConfig,
    *,
    workers: int = 1,
    beam_args: Sequence[str] = (),
    overwrite: bool | None = None,
) -> RunResult:
    """Run one curation job and wait for it.

    Raises:
        ConfigError: input/output missing or bad runner flags.
        InputError: an input matches nothing.
        OutputError: the output directory holds something else.
    """
    from winnow.pipeline.build import build_pipeline
    from winnow.pipeline.readers import expand_inputs

    cfg.require_io()
    options = pipeline_options(workers, beam_args)
    files = expand_inputs(cfg.input, cfg.reader)
    std = options.get_all_options()
    runner = str(std.get("runner") or "FnApiRunner")
    dry_run = bool(std.get("dry_run"))
    if not dry_run:
        prepare_output(cfg.output, cfg.sink.overwrite if overwrite is None else overwrite)
    if runner in LOCAL_RUNNERS:
        tune_local_memory()
    log.info("winnow: %d input file(s), stages %s, output %s, runner %s", len(files), ",".join(cfg.stages), cfg.output, runner)
    started = time.time()
    try:
        p = beam.Pipeline(options=options)
    except ValueError as exc:  # e.g. an unknown --runner name
        raise ConfigError("--runner", runner, "a Beam runner name such as FnApiRunner, PortableRunner or DataflowRunner", str(exc)) from exc
    build_pipeline(p, cfg, files, started=started)
    result = p.run()
    state = result.wait_until_finish()
    stats = None
    if dry_run:
        return RunResult(output=cfg.output, stats=None, runner=runner, state="DRY_RUN", job=getattr(result, "job", None))
    try:
        with fsspec.open(join_uri(cfg.output, "stats.json"), "r", encoding="utf-8") as fh:
            stats = json.load(fh)
    except FileNotFoundError:
        stats = None  # a remote runner may still be writing; the driver does not need it
    return RunResult(output=cfg.output, stats=stats, runner=runner, state=str(state))
