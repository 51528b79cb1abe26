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
import os
import signal
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import apache_beam as beam
import fsspec
from apache_beam.options.pipeline_options import PipelineOptions

from winnow.errors import ConfigError, OutputError, WinnowError
from winnow.pipeline.config import RunConfig
from winnow.pipeline.memory import tune_gc, tune_local_memory
from winnow.pipeline.sink import join_uri

__all__ = [
    "pipeline_options", "prepare_output", "run", "RunResult", "RunInterrupted", "FailurePolicy", "policy_failures",
    "empty_inputs", "stop_children", "OUTPUT_ENTRIES", "INCOMPLETE_MARKER",
]

log = logging.getLogger("winnow")

#: What a run writes into its output directory (and what ``overwrite`` removes).
OUTPUT_ENTRIES = ("index.json", "shards", "rejects", "dead_letter", "tokenizer", "packed", "stats.json", "report.html",
                  "config.yaml", "INCOMPLETE")

#: The file an interrupted run leaves in its output directory (a run that never wrote its
#: manifest); ``--overwrite`` removes it with the rest.
INCOMPLETE_MARKER = "INCOMPLETE"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; its workers are stopped and its output marked incomplete."""

    def __init__(self, output: str, marked: bool) -> None:
        self.output = output
        self.marked = marked
        where = f"{output} is marked incomplete ({INCOMPLETE_MARKER}, no index.json)" if marked else f"{output} was left as it was"
        super().__init__(f"interrupted; workers stopped; {where}")


@dataclass(frozen=True)
class FailurePolicy:
    """Limits past which a finished run exits non-zero (it still writes everything first).

    Attributes:
        max_dead_letter_fraction: most dead letters allowed, as a fraction of records read.
        max_reject_fraction: per stage, most rejects allowed as a fraction of the records
            entering that stage.
        require_input: fail when nothing at all was read.
        allow_empty_output: do not fail when records were read but none was kept.
    """

    max_dead_letter_fraction: float = 0.5
    max_reject_fraction: Mapping[str, float] = field(default_factory=dict)
    require_input: bool = True
    allow_empty_output: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_dead_letter_fraction <= 1.0:
            raise ConfigError("--max-dead-letter-fraction", self.max_dead_letter_fraction, "a fraction between 0 and 1")
        for stage, f in self.max_reject_fraction.items():
            if not 0.0 <= f <= 1.0:
                raise ConfigError(f"--max-reject-fraction {stage}", f, "a fraction between 0 and 1")


def policy_failures(stats: Mapping[str, Any], policy: FailurePolicy) -> list[str]:
    """What in ``stats`` crossed which limit of ``policy``, one phrase each (empty: none).

    Raises:
        ConfigError: ``policy`` names a stage the run did not have.
    """
    out: list[str] = []
    read = int(stats["read"])
    if read == 0:
        return ["nothing was read (every input is empty)"] if policy.require_input else []
    dead = int(stats["dead_letter"])
    if dead / read > policy.max_dead_letter_fraction:
        worst = max(stats.get("stages", ()), key=lambda st: st["dead_letter"], default=None)
        where = f", most in stage {worst['name']} ({worst['dead_letter']:,})" if worst and worst["dead_letter"] else ""
        out.append(f"dead letters {dead:,} of {read:,} read ({dead / read:.1%}) exceed --max-dead-letter-fraction="
                   f"{policy.max_dead_letter_fraction:g}{where}; see dead_letter/ for the errors")
    stages = {st["name"]: st for st in stats.get("stages", ())}
    if int(stats["kept"]) == 0 and not policy.allow_empty_output and not out:
        emptied = next((st for st in stages.values() if st["in"] and not st["out"]), None)
        why = ""
        if emptied is not None:
            top = sorted(emptied["rejected"].items(), key=lambda kv: -kv[1])[:3]
            why = f": stage {emptied['name']} kept none of {emptied['in']:,}" + (
                f" ({', '.join(f'{r} {n:,}' for r, n in top)})" if top else "")
            if any(r.endswith("empty_text") for r, _ in top):
                why += "; is reader.text_field the field that holds the text?"
        out.append(f"no record was kept of {read:,} read{why} (pass --allow-empty-output if that is intended)")
    for name, limit in sorted(policy.max_reject_fraction.items()):
        st = stages.get(name)
        if st is None:
            raise ConfigError("--max-reject-fraction", name, f"one of the run's stages ({', '.join(stages)})")
        rej = sum(st["rejected"].values())
        if st["in"] and rej / st["in"] > limit:
            out.append(f"stage {name} rejected {rej:,} of {st['in']:,} ({rej / st['in']:.1%}) exceeding "
                       f"--max-reject-fraction {name}={limit:g}")
    return out


def empty_inputs(files: Sequence[Any]) -> list[str]:
    """The input files that hold no bytes (a 0-byte file, or a compressed file that decompresses to nothing)."""
    empty = []
    for f in files:
        uri = getattr(f, "uri", f)
        try:
            with fsspec.open(uri, "rb", compression="infer") as fh:
                if not fh.read(1):
                    empty.append(uri)
        except Exception:  # noqa: BLE001 - unreadable files are the reader's to report
            continue
    return empty

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
    options = PipelineOptions(args)
    # Beam drops flags no options class declares with a log line; a mistyped --temp_location
    # or --num_workers would then cost a whole remote run. Refuse them here instead.
    known = options.get_all_options(drop_default=False)
    unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - set(known))
    if unknown:
        raise ConfigError("Beam option", " ".join(f"--{u}" for u in unknown), "a flag Beam's pipeline options know",
                          "check its spelling against apache_beam.options.pipeline_options")
    return options


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


_EMPTY_CHECK_MAX = 256  # inputs checked for emptiness before a run (each is opened)


def _on_interrupt(_signum: int, _frame: Any) -> None:
    # Stop the workers before Beam sees the interrupt: its clean-up waits on them otherwise.
    _quiet_after_interrupt()
    stop_children()
    raise KeyboardInterrupt


def _install_interrupt_handler() -> Any:
    """Ctrl-C during a run stops the workers first; returns the handler to restore (None: unchanged)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    current = signal.getsignal(signal.SIGINT)
    if current is not signal.default_int_handler:  # ignored (a background job) or the caller's own
        return None
    signal.signal(signal.SIGINT, _on_interrupt)
    return current


def _quiet_after_interrupt() -> None:
    """No second Ctrl-C, log line or thread traceback while an interrupted run cleans up."""
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.disable(logging.CRITICAL)
    threading.excepthook = lambda _args: None


def stop_children() -> None:
    """Terminate this process's worker processes (multi_processing workers, their pools)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dev dependency; workers then die with the driver
        return
    kids = psutil.Process(os.getpid()).children(recursive=True)
    for k in kids:
        try:
            k.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(kids, timeout=3)
    for k in alive:
        try:
            k.kill()
        except psutil.Error:
            pass


def _mark_incomplete(output: str) -> bool:
    """Leave ``INCOMPLETE`` in ``output`` unless the run got as far as its manifest.

    The manifest is written last, after every shard and stats.json, so a run with one is
    complete; one without never gets one. Returns whether the marker was written.
    """
    try:
        fs, path = fsspec.core.url_to_fs(output)
        if fs.exists(join_uri(path, "index.json")):
            return False
        with fs.open(join_uri(path, INCOMPLETE_MARKER), "wb") as fh:
            fh.write(b"This run was interrupted before it finished: its shards, stats and report are partial and it "
                     b"has no index.json. Run it again with --overwrite.\n")
        return True
    except Exception:  # noqa: BLE001 - the output may be unreachable; nothing more to do on the way out
        return False


def run(
    cfg: RunConfig,
    *,
    workers: int = 1,
    beam_args: Sequence[str] = (),
    overwrite: bool | None = None,
    progress: bool | None = None,
    progress_interval: float = 5.0,
    metrics_port: int | None = None,
    run_id: str = "",
) -> RunResult:
    """Run one curation job and wait for it.

    On a local runner, ``progress=True`` prints a line per stage that moved every
    ``progress_interval`` seconds (stderr), and ``metrics_port`` serves the live counters on
    ``127.0.0.1:<port>/metrics`` (labelled ``run_id``) while the run works.

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
    tune_gc()  # this process runs the pipeline on a local runner and builds it on any
    if runner in LOCAL_RUNNERS:
        tune_local_memory()
    log.info("winnow: %d input file(s), stages %s, output %s, runner %s", len(files), ",".join(cfg.stages), cfg.output, runner)
    started = time.time()
    try:
        p = beam.Pipeline(options=options)
    except ValueError as exc:  # e.g. an unknown --runner name
        raise ConfigError("--runner", runner, "a Beam runner name such as FnApiRunner, PortableRunner or DataflowRunner", str(exc)) from exc
    build_pipeline(p, cfg, files, started=started, local=runner in LOCAL_RUNNERS)
    if not dry_run:
        for uri in empty_inputs(files[:_EMPTY_CHECK_MAX]):
            log.warning("winnow: warning: input %s is empty", uri)
    local = runner in ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner")
    reporter = None
    if local and not dry_run and (progress is not None or metrics_port is not None):
        from winnow.monitoring.progress import ProgressReporter

        reporter = ProgressReporter(interval=progress_interval, quiet=progress is None or progress is False,
                                    metrics_port=metrics_port, run_id=run_id, stages=("read", *cfg.stages))
    previous = _install_interrupt_handler()
    try:
        if reporter is not None:
            with reporter:
                result = p.run()
                state = result.wait_until_finish()
        else:
            result = p.run()
            state = result.wait_until_finish()
    except KeyboardInterrupt:
        _quiet_after_interrupt()
        stop_children()
        marked = False if dry_run else _mark_incomplete(cfg.output)
        raise RunInterrupted(cfg.output, marked) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    stats = None
    if dry_run:
        return RunResult(output=cfg.output, stats=None, runner=runner, state="DRY_RUN", job=getattr(result, "job", None))
    try:
        with fsspec.open(join_uri(cfg.output, "stats.json"), "r", encoding="utf-8") as fh:
            stats = json.load(fh)
    except FileNotFoundError:
        stats = None  # a remote runner may still be writing; the driver does not need it
    return RunResult(output=cfg.output, stats=stats, runner=runner, state=str(state))
