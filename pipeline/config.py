"""Run configuration: frozen dataclasses loaded from YAML plus ``--set key=value`` overrides.

A config file looks like::

    input: ["data/*.jsonl.gz"]
    output: out/run1
    stages: [normalize, exact_dedup]
    reader: {text_field: content}
    sink: {shard_bytes: 256MB}
    normalize: {form: NFKC}          # one section per stage, named as in ``stages``

Every key and value is checked before the pipeline starts; a mistake raises
:class:`~winnow.errors.ConfigError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import yaml

from winnow.errors import ConfigError
from winnow.units import parse_size

__all__ = [
    "ReaderConfig",
    "SinkConfig",
    "ReportConfig",
    "RunConfig",
    "build_dataclass",
    "load_config",
    "apply_overrides",
    "config_to_dict",
    "config_hash",
    "DEFAULT_STAGES",
]

DEFAULT_STAGES: tuple[str, ...] = (
    "normalize", "exact_dedup", "lang", "quality", "minhash_dedup", "image_dedup", "model_quality",
    "toxicity", "pii", "tokenizer", "encode",
)

ReaderFormat = Literal["auto", "jsonl", "parquet", "webdataset", "imagedir"]


def _size_field(default: int) -> Any:
    """A byte-size field: accepts ints and strings such as ``"256MB"``."""
    return field(default=default, metadata={"size": True})


@dataclass(frozen=True)
class ReaderConfig:
    """How input files are read.

    Attributes:
        format: ``auto`` picks by file extension (``.jsonl[.gz|.zst]``, ``.parquet``, ``.tar``,
            or a directory of images).
        text_field: JSON/Parquet field holding the text (or caption).
        id_field: field holding the source's id; records without it get a content hash.
        meta_fields: fields copied into ``meta``; empty means every other field.
        image_field: JSON/Parquet field holding image bytes (base64 in JSON), if any.
        caption_extensions: sidecar/tar-member extensions read as the caption, in priority order.
        max_record_bytes: a record larger than this is dead-lettered instead of read.
    """

    format: ReaderFormat = "auto"
    text_field: str = "text"
    id_field: str = "id"
    meta_fields: tuple[str, ...] = ()
    image_field: str = ""
    caption_extensions: tuple[str, ...] = ("txt", "caption", "json")
    max_record_bytes: int = _size_field(256 * 2**20)

    def __post_init__(self) -> None:
        if not self.text_field:
            raise ConfigError("reader.text_field", self.text_field, "a non-empty field name")
        if self.max_record_bytes <= 0:
            raise ConfigError("reader.max_record_bytes", self.max_record_bytes, "a positive size such as 64MB")


@dataclass(frozen=True)
class SinkConfig:
    """How shards are written.

    Attributes:
        shard_bytes: target bytes per shard; the shard count is total bytes / this.
        batch_bytes: target bytes per Arrow record batch inside a shard.
        min_shards: never fewer shards than this (one per GPU rank is a good floor).
        reject_shard_bytes: target bytes per shard of the rejects and dead letters (smaller:
            a local run writes rejects last, when its memory is fullest, and a writer holds
            about twice one shard).
        compression: ``none`` (zero-copy mmap, the default), ``lz4`` or ``zstd``.
        overwrite: replace a previous run in the output directory.
        spill: ``auto`` (the default: on a local runner), ``always`` or ``never``. A spilling
            sink writes each bundle's split batches to temporary Arrow files under
            ``OUT/.tmp-spill-<subdir>/`` (for an object-store OUT on a local runner, under the
            machine's temporary directory) and shuffles only references to them, so a local runner's
            in-memory shuffle holds no rows (the folder is removed when the shards are
            written). A distributed runner's shuffle is its own service: ``auto`` leaves it be.
    """

    shard_bytes: int = _size_field(256 * 10**6)
    batch_bytes: int = _size_field(8 * 10**6)
    min_shards: int = 1
    reject_shard_bytes: int = _size_field(64 * 10**6)
    compression: Literal["none", "lz4", "zstd"] = "none"
    overwrite: bool = False
    spill: Literal["auto", "always", "never"] = "auto"

    def __post_init__(self) -> None:
        if self.shard_bytes < 1000:
            raise ConfigError("sink.shard_bytes", self.shard_bytes, "at least 1KB (1000 bytes)", "e.g. 256MB")
        if self.batch_bytes < 1000:
            raise ConfigError("sink.batch_bytes", self.batch_bytes, "at least 1KB (1000 bytes)", "e.g. 8MB")
        if self.min_shards < 1:
            raise ConfigError("sink.min_shards", self.min_shards, "an integer >= 1")
        if self.reject_shard_bytes < 1000:
            raise ConfigError("sink.reject_shard_bytes", self.reject_shard_bytes, "at least 1KB (1000 bytes)",
                              "e.g. 64MB")


@dataclass(frozen=True)
class ReportConfig:
    """What report.html shows.

    Attributes:
        examples_per_reason: examples shown for each drop reason.
        example_chars: characters of text shown per example.
    """

    examples_per_reason: int = 5
    example_chars: int = 400

    def __post_init__(self) -> None:
        if not 0 <= self.examples_per_reason <= 100:
            raise ConfigError("report.examples_per_reason", self.examples_per_reason, "0..100")
        if self.example_chars < 20:
            raise ConfigError("report.example_chars", self.example_chars, "at least 20")


@dataclass(frozen=True)
class RunConfig:
    """One curation run.

    Attributes:
        input: input URIs or globs (any fsspec URL).
        output: output directory URI.
        stages: stage names in the order they run.
        reader: how inputs are read.
        sink: how shards are written.
        report: what the report shows.
        stage_options: per-stage config objects, keyed by stage name (built from the YAML
            section of the same name; every stage in ``stages`` has one, its defaults when not
            configured).
        registry: the stage declarations this config was checked against
            (:class:`~winnow.pipeline.stages.spec.Registry`); the pipeline builds from them.
    """

    input: tuple[str, ...] = ()
    output: str = ""
    stages: tuple[str, ...] = DEFAULT_STAGES
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    stage_options: Mapping[str, Any] = field(default_factory=dict)
    registry: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for name in self.stages:
            if self.registry is not None and name not in self.registry:
                raise ConfigError(
                    "stages", name, f"one of {', '.join(sorted(self.registry))}",
                    "list stages in the order they should run",
                )
            if name in seen:
                raise ConfigError("stages", name, "each stage at most once")
            seen.add(name)
        if self.registry is not None:
            for name in self.stage_options:
                if name not in self.registry:
                    raise ConfigError(name, self.stage_options[name], "a known stage section")

    def options(self, stage: str) -> Any:
        """The config object for ``stage`` (its defaults when not configured).

        Raises:
            ConfigError: the stage is unknown to this config's registry.
        """
        opt = self.stage_options.get(stage)
        if opt is not None:
            return opt
        if self.registry is None or stage not in self.registry:
            raise ConfigError("stages", stage, "a stage of this run's registry")
        return self.registry[stage].config_cls()

    def require_io(self) -> None:
        """Raise unless input and output are set (a run needs both; a dry config may not)."""
        if not self.input:
            raise ConfigError("input", list(self.input), "at least one input URI or glob", "pass --input PATH")
        if not self.output:
            raise ConfigError("output", self.output, "an output directory URI", "pass --output DIR")


# ---------------------------------------------------------------------------------------------
# Building dataclasses from plain data


def _coerce(value: Any, tp: Any, key: str, f: dataclasses.Field | None) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if f is not None and f.metadata.get("size"):
        try:
            return parse_size(value, key)
        except ValueError as exc:
            raise ConfigError(key, value, "a byte size such as 256MB, 4GiB or 1000000") from exc
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(key, value, "one of " + ", ".join(repr(a) for a in args))
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key, None)
            except ConfigError as exc:
                errors.append(exc.expected)
        raise ConfigError(key, value, " or ".join(errors))
    if origin in (tuple, Sequence, list) or tp in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, value, "a list")
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, f"{key}[{i}]", None) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(key, value, "a mapping of options")
        return build_dataclass(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(key, value, "true or false")
    if tp is int or tp is float:
        accepted, what = ((int, str), "an integer") if tp is int else ((int, float, str), "a number")
        if isinstance(value, bool) or not isinstance(value, accepted):
            raise ConfigError(key, value, what)
        try:
            return tp(value)
        except ValueError as exc:
            raise ConfigError(key, value, what) from exc
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(key, value, "a string")
        return str(value)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(key, value, f"a value of type {getattr(tp, '__name__', tp)}")


def build_dataclass(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Build a frozen config dataclass from plain data, checking every key and value.

    Raises:
        ConfigError: an unknown key (the allowed ones are listed) or a value of the wrong
            type; also whatever the dataclass's ``__post_init__`` rejects.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in fields:
            raise ConfigError(key, v, f"one of the keys {', '.join(sorted(fields))}", "check the spelling")
        kwargs[k] = _coerce(v, hints[k], key, fields[k])
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a missing required field
        raise ConfigError(prefix or cls.__name__, dict(data), str(exc)) from exc


_TOP_LEVEL = ("input", "output", "stages", "reader", "sink", "report")


def _from_dict(data: Mapping[str, Any], registry: Mapping[str, Any]) -> RunConfig:
    kwargs: dict[str, Any] = {}
    stage_options: dict[str, Any] = {}
    hints = typing.get_type_hints(RunConfig)
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    for k, v in data.items():
        if k in _TOP_LEVEL:
            if k == "input" and isinstance(v, str):
                v = [v]
            kwargs[k] = _coerce(v, hints[k], k, fields[k])
        elif k in registry:
            stage_options[k] = _coerce(v, registry[k].config_cls, k, None)
        else:
            allowed = list(_TOP_LEVEL) + sorted(registry)
            raise ConfigError(k, v, f"one of the sections {', '.join(allowed)}", "check the spelling")
    return RunConfig(**kwargs, stage_options=stage_options, registry=registry)


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain data for config.yaml: every section, stage options resolved to their defaults."""

    def plain(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if isinstance(obj, (tuple, list)):
            return [plain(x) for x in obj]
        if isinstance(obj, Mapping):
            return {str(k): plain(v) for k, v in obj.items()}
        return obj

    out: dict[str, Any] = {
        "input": list(cfg.input),
        "output": cfg.output,
        "stages": list(cfg.stages),
        "reader": plain(cfg.reader),
        "sink": plain(cfg.sink),
        "report": plain(cfg.report),
    }
    for name in cfg.stages:
        out[name] = plain(cfg.options(name))
    return out


def config_hash(cfg: RunConfig) -> str:
    """sha256 of what decides the shards: the resolved config without the output location,
    the report settings and ``sink.overwrite``."""
    d = config_to_dict(cfg)
    d.pop("output", None)
    d.pop("report", None)
    d["sink"].pop("overwrite", None)
    return hashlib.sha256(yaml.safe_dump(d, sort_keys=True).encode()).hexdigest()


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError("--set", item, "key=value, e.g. sink.shard_bytes=128MB")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError("--set", item, "a dotted key such as reader.text_field")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to plain config data."""
    data = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    for item in overrides:
        path, value = _parse_override(item)
        node: dict[str, Any] = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                raise ConfigError(".".join(path), value, f"{part} to be a section, but it is {child!r}")
            else:
                child = dict(child)
            node[part] = child
            node = child
        node[path[-1]] = value
    return data


def load_config(
    path: str | None = None,
    *,
    registry: Mapping[str, Any],
    overrides: Sequence[str] = (),
    input: Sequence[str] | None = None,
    output: str | None = None,
    stages: Sequence[str] | None = None,
) -> RunConfig:
    """Load a YAML file (optional), then overrides, then explicit CLI values.

    Args:
        registry: the stages that may be named (``winnow.pipeline.stages.registry.STAGES``,
            or a registry with a user's own stages); ``winnow.pipeline.configure.load_config``
            passes the built-in one.

    Raises:
        ConfigError: the file is unreadable or not a mapping, or a key or value is wrong.
    """
    data: dict[str, Any] = {}
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                loaded = yaml.safe_load(fh)
        except OSError as exc:
            raise ConfigError("--config", path, "a readable YAML file", str(exc)) from exc
        except yaml.YAMLError as exc:
            raise ConfigError("--config", path, "valid YAML", str(exc).replace("\n", " ")) from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError("--config", path, "a YAML mapping of sections at the top level")
        data = loaded
    data = apply_overrides(data, overrides)
    if input:
        data["input"] = list(input)
    if output:
        data["output"] = output
    if stages is not None:
        data["stages"] = list(stages)
    return _from_dict(data, registry)
