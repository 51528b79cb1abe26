"""``tokenizer`` (train sentencepiece BPE on a sample) and ``encode`` (write ``tokens``).

``tokenizer`` passes every record through. Beside that it takes a bounded, deterministic
sample of the text (the ``sample_records`` records with the smallest hash of (id, source), a
``Top`` combiner, so the sample is the same on any runner and worker count), trains in one
DoFn, writes ``OUT/tokenizer/<prefix>.model`` and ``.vocab`` (temp file, then rename), publishes
them in the manifest's ``tokenizer`` field and publishes the model bytes as
``StageOutputs.published["tokenizer_model"]`` (a PCollection of zero or one ``bytes``); the
pipeline hands it to ``encode`` (``BuildContext.published``), which reads it as a side input.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import apache_beam as beam
import numpy as np
import pyarrow as pa

from winnow.errors import ConfigError
from winnow.pipeline.batch import Records
from winnow.pipeline.stages.base import DEAD, REJECTED, TIMING, Emit, StageFn, StageOutputs, run_step
from winnow.pipeline.stages.stats import HistogramFn, linear_edges
from winnow.tokenizer.encode import EncodeConfig, Encoder, arrow_token_type, count_words, token_dtype
from winnow.pipeline.stages.domain_report import tokenizer_section
from winnow.pipeline.stages.spec import BuildContext, StageDecl
from winnow.tokenizer.train import (
    TokenizerConfig,
    model_entry,
    read_dictionary,
    sample_rank,
    train_sentencepiece,
    vocab_tsv,
)

__all__ = ["TOKENIZER", "ENCODE", "TrainTokenizer", "EncodeTokens", "encode_fields", "MODEL_KEY", "write_tokenizer_files"]

#: ``published`` key of the PCollection holding the trained model bytes (zero or one element).
MODEL_KEY = "tokenizer_model"


def write_tokenizer_files(out_dir: str, cfg: TokenizerConfig, model: bytes, info: dict[str, Any]) -> dict[str, Any]:
    """Write ``<prefix>.model`` and ``<prefix>.vocab`` under ``out_dir/tokenizer/`` atomically;
    return the manifest's ``tokenizer`` entry (paths relative to ``out_dir``)."""
    from winnow.shardio import atomic_write, join_uri

    model_rel = f"tokenizer/{cfg.model_prefix}.model"
    vocab_rel = f"tokenizer/{cfg.model_prefix}.vocab"
    atomic_write(join_uri(out_dir, model_rel), model)
    atomic_write(join_uri(out_dir, vocab_rel), vocab_tsv(model))
    return {**model_entry(model, model_rel, vocab_rel), "normalization": cfg.normalization,
            "byte_fallback": cfg.byte_fallback, **info}



class _TrainFn(beam.DoFn):
    def __init__(self, cfg: TokenizerConfig, out_dir: str) -> None:
        self._cfg = cfg
        self._out = out_dir

    def process(self, _: Any, sample: list) -> Iterable[Any]:
        rows = sample[0] if sample else []
        texts = [r[3] for r in sorted(rows)]  # ascending hash order, whatever order Top gave
        if not texts:
            yield beam.pvalue.TaggedOutput("stats", {"training": {"trained": False, "reason": "no text reached the tokenizer"}})
            return
        symbols = read_dictionary(self._cfg.dictionary)
        start = time.perf_counter()
        model = train_sentencepiece(texts, self._cfg, symbols)
        seconds = time.perf_counter() - start
        entry = write_tokenizer_files(self._out, self._cfg, model, {
            "sample_records": len(texts), "sample_chars": sum(len(t) for t in texts),
            "dictionary_terms": len(symbols),
        })
        yield model
        yield beam.pvalue.TaggedOutput("artifacts", {"tokenizer": entry})
        yield beam.pvalue.TaggedOutput("stats", {"training": {
            "trained": True, "seconds": round(seconds, 3), "vocab_size": entry["vocab_size"],
            "sample_records": len(texts), "sample_chars": entry["sample_chars"],
            "dictionary_terms": len(symbols), "sha256": entry["sha256"], "dtype": entry["dtype"],
        }})


def _sample_rows(batch: Any, chars: int) -> list:
    return [(sample_rank(r["id"], r["source"]), r["id"], r["source"], r["text"][:chars])
            for r in batch.rows if r.get("text")]


class TrainTokenizer(beam.PTransform):
    """Pass records through; train a sentencepiece BPE model on a sample of their text."""

    def __init__(self, cfg: TokenizerConfig, out_dir: str) -> None:
        super().__init__(label="tokenizer")
        self._cfg = cfg
        self._out_dir = out_dir
        read_dictionary(cfg.dictionary)  # fail before the run on an unreadable dictionary

    def expand(self, records: beam.PCollection) -> StageOutputs:
        cfg = self._cfg
        p = records.pipeline
        sample = (
            records
            | "SampleRows" >> beam.FlatMap(_sample_rows, cfg.sample_chars)
            | "Sample" >> beam.combiners.Top.Smallest(cfg.sample_records)
        )
        out_dir = self._out_dir
        trained = (
            p
            | "TrainSeed" >> beam.Create([None])
            | "Train" >> beam.ParDo(_TrainFn(cfg, out_dir), sample=beam.pvalue.AsList(sample)).with_outputs(
                "artifacts", "stats", main="model"
            )
        )
        return StageOutputs(
            kept=records,
            rejected=p | "NoRejects" >> beam.Create([]),
            dead=p | "NoDead" >> beam.Create([]),
            stats=trained.stats,
            artifacts=trained.artifacts,
            published={MODEL_KEY: trained.model},
        )


# ---------------------------------------------------------------------------------------------
# encode


def _declared_vocab(cfg: EncodeConfig) -> int:
    """The vocabulary size the ``tokens`` column type is declared for."""
    if cfg.vocab_size:
        return cfg.vocab_size
    if cfg.model:
        import fsspec
        import sentencepiece as spm

        with fsspec.open(cfg.model, "rb") as fh:
            return spm.SentencePieceProcessor(model_proto=fh.read()).get_piece_size()
    return TokenizerConfig().vocab_size


def _model_eos(cfg: EncodeConfig) -> int:
    """The EOS id packing separates documents with: the configured model's, else the id the
    ``tokenizer`` stage always trains with (2)."""
    if not cfg.model:
        return 2
    import fsspec
    import sentencepiece as spm

    with fsspec.open(cfg.model, "rb") as fh:
        return spm.SentencePieceProcessor(model_proto=fh.read()).eos_id()


def encode_fields(cfg: EncodeConfig) -> tuple[pa.Field, ...]:
    """``tokens``: a list of the narrowest integer type for the vocabulary."""
    return (pa.field("tokens", arrow_token_type(_declared_vocab(cfg)), nullable=True),)


class _EncodeFn(StageFn):
    def __init__(self, cfg: EncodeConfig, dtype: np.dtype, dictionary: tuple[str, ...]) -> None:
        super().__init__("encode", chunk=cfg.batch_size, fields=encode_fields(cfg))
        self._cfg = cfg
        self._dtype = dtype
        self._dictionary = dictionary
        self._encoder: Encoder | None = None
        self._missing = False

    def start(self) -> None:
        if self._cfg.model:
            import fsspec

            with fsspec.open(self._cfg.model, "rb") as fh:
                self._load(fh.read())

    def _load(self, model: bytes) -> None:
        enc = Encoder(model, self._cfg.threads)
        if enc.dtype.itemsize > self._dtype.itemsize or (enc.vocab_size > 1 << 15 and self._dtype == np.int16):
            raise ConfigError("encode.vocab_size", self._cfg.vocab_size,
                              f"at least the model's {enc.vocab_size} pieces (the tokens column type)")
        self._encoder = enc
        ids = enc.piece_ids(self._dictionary)
        self._dict_ids = np.array([ids.get(t, -1) for t in self._dictionary], dtype=np.int64)

    def process(self, batch: Any, model: list) -> Iterable[Any]:
        if self._encoder is None and not self._missing:
            if model:
                self._load(model[0])  # outside the guard: a model that does not fit fails the run
            else:
                self._missing = True
        for o in super().process(batch, model):
            yield o
            if isinstance(o, Records):
                yield beam.pvalue.TaggedOutput("measure", self._measure(o.rows))

    def compute(self, rows: list[dict], model: list) -> list[Any]:
        enc = self._encoder
        if enc is None:  # no text reached the tokenizer: nothing to encode
            return [None] * len(rows)
        idx = [i for i, r in enumerate(rows) if r.get("text") is not None]
        toks: list[Any] = [None] * len(rows)
        eos = np.array([enc.eos_id], dtype=self._dtype) if self._cfg.add_eos else None
        for i, a in zip(idx, enc.encode_batch([rows[i]["text"] for i in idx])):
            t = a.astype(self._dtype, copy=False)
            toks[i] = t if eos is None else np.concatenate([t, eos])
        return toks

    def route(self, row: dict, tokens: Any, out: Emit) -> None:
        row = dict(row)
        if tokens is None and row.get("text") is not None and self._encoder is not None:
            tokens = np.empty(0, dtype=self._dtype)
        row["tokens"] = tokens
        out.keep(row)

    def _measure(self, rows: list[dict]) -> tuple:
        """Token counts of the kept records of one batch, for the stage's stats."""
        lengths = [len(r["tokens"]) for r in rows if r.get("text") is not None and r.get("tokens") is not None]
        n_words = sum(count_words(r["text"]) for r in rows if r.get("text") is not None and r.get("tokens") is not None)
        dict_counts = None
        if self._encoder is not None and len(self._dict_ids) and lengths:
            allt = np.concatenate([np.asarray(r["tokens"], dtype=np.int64) for r in rows
                                   if r.get("text") is not None and r.get("tokens") is not None])
            bc = np.bincount(allt, minlength=self._encoder.vocab_size)
            dict_counts = np.where(self._dict_ids >= 0, bc[np.clip(self._dict_ids, 0, None)], 0)
        return lengths, sum(lengths), n_words, dict_counts


class _EncodeStatsFn(beam.CombineFn):
    """Tokens-per-record histogram, totals for fertility, per-term dictionary counts."""

    def __init__(self, n_terms: int) -> None:
        self._hist = HistogramFn(linear_edges(0, 4096, 64))  # longer records land in the last bin
        self._n_terms = n_terms

    def create_accumulator(self) -> list:
        return [self._hist.create_accumulator(), 0, 0, np.zeros(self._n_terms, dtype=np.int64)]

    def add_input(self, acc: list, m: tuple) -> list:
        lengths, n_tok, n_words, dc = m
        for n in lengths:
            self._hist.add_input(acc[0], n)
        acc[1] += n_tok
        acc[2] += n_words
        if dc is not None:
            acc[3] += dc
        return acc

    def merge_accumulators(self, accs: Iterable[list]) -> list:
        accs = list(accs)
        return [self._hist.merge_accumulators([a[0] for a in accs]), sum(a[1] for a in accs),
                sum(a[2] for a in accs), np.sum([a[3] for a in accs], axis=0).astype(np.int64)]

    def extract_output(self, acc: list) -> dict:
        return {"tokens_hist": self._hist.extract_output(acc[0]), "tokens": int(acc[1]), "words": int(acc[2]),
                "fertility": acc[1] / acc[2] if acc[2] else None, "dictionary_counts": [int(c) for c in acc[3]]}


class EncodeTokens(beam.PTransform):
    """Encode each record's text with the run's (or a configured) sentencepiece model."""

    def __init__(self, cfg: EncodeConfig, ctx: Any) -> None:
        super().__init__(label="encode")
        self._cfg = cfg
        self._out_dir = ctx.config.output
        self._sink = ctx.config.sink
        self._model = None
        self._dictionary: tuple[str, ...] = ()
        if not cfg.model:
            if MODEL_KEY not in ctx.published:
                raise ConfigError("encode.model", cfg.model, "a sentencepiece model path, or the `tokenizer` "
                                  "stage before `encode` in stages")
            self._model = ctx.published[MODEL_KEY]
            tcfg: TokenizerConfig = ctx.config.options("tokenizer")
            self._dictionary = read_dictionary(tcfg.dictionary)
            need = token_dtype(tcfg.vocab_size)
            have = token_dtype(_declared_vocab(cfg))
            if need != have:
                raise ConfigError("encode.vocab_size", cfg.vocab_size,
                                  f"{tcfg.vocab_size} (tokenizer.vocab_size), so the tokens column is {need.name}",
                                  f"pass --set encode.vocab_size={tcfg.vocab_size}")
        self._dtype = token_dtype(_declared_vocab(cfg))
        self._eos = _model_eos(cfg) if cfg.pack_length else -1
        if cfg.pack_length and self._eos < 0:
            raise ConfigError("encode.pack_length", cfg.pack_length, "0 with a model that has no </s> piece")

    def expand(self, records: beam.PCollection) -> StageOutputs:
        cfg = self._cfg
        p = records.pipeline
        model = self._model if self._model is not None else p | "NoModel" >> beam.Create([])
        out = run_step(records, "Encode", _EncodeFn(cfg, self._dtype, self._dictionary),
                       beam.pvalue.AsList(model), tags=("measure",))
        terms = self._dictionary
        stats = (
            out.measure
            | "EncodeStats" >> beam.CombineGlobally(_EncodeStatsFn(len(terms)))
            | "EncodeStatsWrap" >> beam.Map(lambda s: {"encode": {**s, "dictionary_terms": list(terms)}})
        )
        if cfg.pack_length:
            from winnow.pipeline.stages.pack import PackTokens

            packing = out.kept | "Pack" >> PackTokens(self._out_dir, self._sink, cfg.pack_length, self._eos,
                                                       cfg.pad_id, self._dtype)
            stats = (stats, packing) | "EncodeAndPackStats" >> beam.Flatten()
        return StageOutputs(kept=out.kept, rejected=out[REJECTED], dead=out[DEAD], stats=stats, timing=(out[TIMING],))


def _build_tokenizer(cfg: TokenizerConfig, ctx: BuildContext) -> beam.PTransform:
    return TrainTokenizer(cfg, ctx.config.output)


def _build_encode(cfg: EncodeConfig, ctx: BuildContext) -> beam.PTransform:
    return EncodeTokens(cfg, ctx)


TOKENIZER = StageDecl("tokenizer", TokenizerConfig, _build_tokenizer, report=tokenizer_section,
                      publishes=(MODEL_KEY,))
ENCODE = StageDecl("encode", EncodeConfig, _build_encode, encode_fields)
