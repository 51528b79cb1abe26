"""``winnow train-tokenizer OUT``: train the tokenizer on an existing run's shards.

It samples exactly as the in-pipeline ``tokenizer`` stage does (the ``sample_records`` kept
records with the smallest hash of (id, source), each cut to ``sample_chars``, in hash order),
so on the same run and config it trains the same model bytes. It writes OUT/tokenizer/ and
rewrites index.json (temp file, then rename) with the new ``tokenizer`` entry. The shards are
not re-encoded: their ``tokens`` (if any) stay those of the run's own tokenizer, and the
manifest entry says so with ``"encoded": false``.
"""

from __future__ import annotations

import dataclasses
import heapq
import time
from typing import Any, Iterator, Sequence

import fsspec
import pyarrow as pa
import yaml

from winnow.errors import ConfigError, ManifestError
from winnow.format import Manifest
from winnow.pipeline.config import apply_overrides, build_dataclass
from winnow.pipeline.sink import atomic_write, join_uri
from winnow.tokenizer.train import TokenizerConfig, read_dictionary, sample_rank, train_sentencepiece

__all__ = ["train_tokenizer_on_run", "sample_run_texts"]


def _read_manifest(out: str) -> Manifest:
    try:
        with fsspec.open(join_uri(out, "index.json"), "rb") as fh:
            return Manifest.loads(fh.read(), where=join_uri(out, "index.json"))
    except FileNotFoundError as exc:
        raise ManifestError(f"{out}/index.json does not exist; pass the output directory of a finished run") from exc


def _tokenizer_config(out: str, config: str | None, overrides: Sequence[str]) -> TokenizerConfig:
    path = config or join_uri(out, "config.yaml")
    data: dict[str, Any] = {}
    try:
        with fsspec.open(path, "r", encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh) or {}
        data = {"tokenizer": loaded.get("tokenizer") or {}} if isinstance(loaded, dict) else {}
    except FileNotFoundError:
        if config:
            raise ConfigError("--config", config, "a readable YAML file") from None
    for o in overrides:
        if not o.startswith("tokenizer."):
            raise ConfigError("--set", o, "a tokenizer option such as tokenizer.vocab_size=16000")
    data = apply_overrides(data, overrides)
    return build_dataclass(TokenizerConfig, data.get("tokenizer") or {}, "tokenizer")


def _rows(out: str, m: Manifest) -> Iterator[tuple[int, str, str, str]]:
    for s in m.shards:
        with fsspec.open(join_uri(out, s.path), "rb") as fh:
            table = pa.ipc.open_file(pa.py_buffer(fh.read())).read_all().select(["id", "source", "text"])
        for rid, src, text in zip(*(table.column(c).to_pylist() for c in ("id", "source", "text"))):
            if text:
                yield sample_rank(rid, src), rid, src, text


def sample_run_texts(out: str, cfg: TokenizerConfig, m: Manifest | None = None) -> list[str]:
    """The training sample of a finished run, in the order the pipeline stage trains on it."""
    m = m or _read_manifest(out)
    rows = ((r, i, s, t[: cfg.sample_chars]) for r, i, s, t in _rows(out, m))
    return [t for *_, t in heapq.nsmallest(cfg.sample_records, rows)]


def train_tokenizer_on_run(out: str, *, config: str | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Train on the run's shards, write OUT/tokenizer/ and update index.json.

    Returns:
        the manifest's new ``tokenizer`` entry.
    """
    from winnow.pipeline.stages.tokenize import write_tokenizer_files

    out = out.rstrip("/")
    m = _read_manifest(out)
    cfg = _tokenizer_config(out, config, overrides)
    texts = sample_run_texts(out, cfg, m)
    symbols = read_dictionary(cfg.dictionary)
    start = time.perf_counter()
    model = train_sentencepiece(texts, cfg, symbols)
    seconds = time.perf_counter() - start
    entry = write_tokenizer_files(out, cfg, model, {
        "sample_records": len(texts), "sample_chars": sum(len(t) for t in texts),
        "dictionary_terms": len(symbols), "trained_by": "train-tokenizer", "training_seconds": round(seconds, 3),
        "encoded": bool(m.tokenizer) and (m.tokenizer or {}).get("sha256") == _sha(model),
    })
    atomic_write(join_uri(out, "index.json"), dataclasses.replace(m, tokenizer=entry).dumps().encode("utf-8"))
    return entry


def _sha(model: bytes) -> str:
    from winnow.tokenizer.train import model_sha256

    return model_sha256(model)
