"""Training a sentencepiece BPE tokenizer, deterministically, from an iterable of texts.

The same texts in the same order and the same :class:`TokenizerConfig` give a byte-identical
model: one training thread, no input shuffling or sub-sampling inside sentencepiece (the caller
bounds the sample), and a fixed random seed. Training reads the texts line by line (lines are
sentencepiece's "sentences"); newlines and anything unseen still encode, through byte fallback.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Literal, Sequence

from winnow.errors import ConfigError, InputError
from winnow.terms import read_term_lines

__all__ = [
    "TokenizerConfig",
    "train_sentencepiece",
    "training_lines",
    "read_dictionary",
    "vocab_tsv",
    "sample_rank",
    "model_sha256",
    "model_entry",
]

Normalization = Literal["identity", "nfkc", "nmt_nfkc", "nfkc_cf", "nmt_nfkc_cf"]


@dataclass(frozen=True)
class TokenizerConfig:
    """Options of the ``tokenizer`` (training) stage.

    Attributes:
        vocab_size: target vocabulary size (a soft limit: a small sample may give fewer pieces).
        normalization: sentencepiece normalization rule; ``identity`` keeps the text exactly as
            the pipeline normalized it, so decoding gives the shard's text back.
        byte_fallback: unknown characters become UTF-8 byte pieces instead of ``<unk>``.
        dictionary: path of a domain dictionary (one term per line, ``#`` comments): each
            term becomes a user-defined symbol, always one piece.
        sample_records: at most this many records train the model (the ones whose hash of
            id is smallest: the same sample on any runner and worker count).
        sample_chars: each sampled record contributes at most this many characters.
        max_sentence_bytes: longer lines are cut to this many bytes for training.
        character_coverage: share of characters covered by pieces (the rest: byte fallback).
        seed: sentencepiece's random seed.
        threads: training threads; 1 (the default) is needed for byte-identical models.
        model_prefix: file stem under OUT/tokenizer/ (``<prefix>.model``, ``<prefix>.vocab``).
    """

    vocab_size: int = 8000
    normalization: Normalization = "identity"
    byte_fallback: bool = True
    dictionary: str = ""
    sample_records: int = 10_000
    sample_chars: int = 10_000
    max_sentence_bytes: int = 4096
    character_coverage: float = 0.9995
    seed: int = 17
    threads: int = 1
    model_prefix: str = "spm"

    def __post_init__(self) -> None:
        if not 300 <= self.vocab_size <= 1 << 20:
            raise ConfigError("tokenizer.vocab_size", self.vocab_size, "an integer in 300..1048576",
                              "byte fallback alone needs 256 byte pieces plus specials")
        if self.normalization not in ("identity", "nfkc", "nmt_nfkc", "nfkc_cf", "nmt_nfkc_cf"):
            raise ConfigError("tokenizer.normalization", self.normalization,
                              "one of identity, nfkc, nmt_nfkc, nfkc_cf, nmt_nfkc_cf")
        if self.sample_records < 1 or self.sample_chars < 1:
            raise ConfigError("tokenizer.sample_records/sample_chars", (self.sample_records, self.sample_chars),
                              "positive integers")
        if not 64 <= self.max_sentence_bytes <= 1 << 20:
            raise ConfigError("tokenizer.max_sentence_bytes", self.max_sentence_bytes, "64..1048576")
        if not 0.9 <= self.character_coverage <= 1.0:
            raise ConfigError("tokenizer.character_coverage", self.character_coverage, "a number in [0.9, 1]")
        if self.threads < 1:
            raise ConfigError("tokenizer.threads", self.threads, "a positive integer (1 for reproducible models)")
        if not self.model_prefix or "/" in self.model_prefix:
            raise ConfigError("tokenizer.model_prefix", self.model_prefix, "a file stem without '/'")


def read_dictionary(path: str) -> tuple[str, ...]:
    """Terms of a domain dictionary file: one per line, blank lines and ``#`` comments skipped,
    duplicates dropped (first kept), order kept.

    Raises:
        InputError: the file cannot be read.
        ConfigError: a term holds whitespace (sentencepiece symbols are single words).
    """
    terms = read_term_lines(path, "tokenizer.dictionary")
    for i, term in terms:
        if any(c.isspace() for c in term):
            raise ConfigError(f"tokenizer.dictionary line {i}", term, "a term without whitespace")
    return tuple(term for _, term in terms)


def sample_rank(record_id: str, source: str) -> int:
    """The sampling key of a record: a 64-bit hash of (id, source); the smallest are sampled."""
    import xxhash

    return xxhash.xxh3_64_intdigest(f"{record_id}\x00{source}".encode("utf-8", "surrogatepass"))


def training_lines(texts: Iterable[str], cfg: TokenizerConfig) -> Iterator[str]:
    """Non-blank lines of ``texts`` (each text cut to ``sample_chars``), cut to
    ``max_sentence_bytes`` on a character boundary."""
    limit = cfg.max_sentence_bytes
    for text in texts:
        for line in text[: cfg.sample_chars].split("\n"):
            if not line.strip():
                continue
            b = line.encode("utf-8", "replace")
            if len(b) > limit:
                line = b[:limit].decode("utf-8", "ignore")
            yield line


def train_sentencepiece(texts: Sequence[str], cfg: TokenizerConfig, symbols: Sequence[str] = ()) -> bytes:
    """Train a BPE model on ``texts`` (in this order) and return the serialized model.

    Special ids: ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2 (the EOS used by packing); no pad piece.

    Raises:
        InputError: there is no text to train on.
    """
    import sentencepiece as spm

    lines = list(training_lines(texts, cfg))
    if not lines:
        raise InputError("tokenizer: the curated sample holds no text to train on")
    spm.set_random_generator_seed(cfg.seed)
    out = io.BytesIO()
    try:
        _train(spm, lines, out, cfg, symbols)
    except RuntimeError as exc:
        if "required_chars" in str(exc):
            raise ConfigError(
                "tokenizer.vocab_size", cfg.vocab_size,
                "more pieces than the distinct characters the sample needs at this character_coverage",
                f"raise tokenizer.vocab_size or lower tokenizer.character_coverage ({exc})",
            ) from exc
        raise
    return out.getvalue()


def _train(spm: Any, lines: list[str], out: io.BytesIO, cfg: TokenizerConfig, symbols: Sequence[str]) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=out,
        model_type="bpe",
        vocab_size=cfg.vocab_size,
        hard_vocab_limit=False,
        byte_fallback=cfg.byte_fallback,
        normalization_rule_name=cfg.normalization,
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        user_defined_symbols=list(symbols),
        character_coverage=cfg.character_coverage,
        max_sentence_length=cfg.max_sentence_bytes,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=cfg.threads,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )


def vocab_tsv(model: bytes) -> bytes:
    """The vocabulary as ``piece<TAB>score`` lines in id order (sentencepiece's .vocab layout)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=model)
    lines = [f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}" for i in range(sp.get_piece_size())]
    return ("\n".join(lines) + "\n").encode("utf-8")


def model_sha256(model: bytes) -> str:
    """sha256 hex of the model bytes (what the manifest records)."""
    return hashlib.sha256(model).hexdigest()


def model_entry(model: bytes, model_rel: str, vocab_rel: str) -> dict[str, Any]:
    """What a manifest says of a sentencepiece model: its files (as given), type, vocabulary
    size, sha256, token dtype and special ids."""
    import sentencepiece as spm

    from winnow.tokenizer.encode import token_dtype

    sp = spm.SentencePieceProcessor(model_proto=model)
    n = sp.get_piece_size()
    return {
        "type": "sentencepiece_bpe",
        "model": model_rel,
        "vocab": vocab_rel,
        "vocab_size": n,
        "sha256": model_sha256(model),
        "dtype": token_dtype(n).name,
        "eos_id": sp.eos_id(),
        "bos_id": sp.bos_id(),
        "unk_id": sp.unk_id(),
    }
