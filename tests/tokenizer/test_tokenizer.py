"""Tokenizer training and encoding: determinism, dictionary terms, lossless round trip, dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.errors import ConfigError, InputError
from winnow.tokenizer.encode import EncodeConfig, Encoder, arrow_token_type, pack_tokens, token_dtype
from winnow.tokenizer.train import TokenizerConfig, read_dictionary, train_sentencepiece, training_lines, vocab_tsv

TERMS = ("asyncio", "__init__", "PYTHONPATH", "sys.argv", "UTF-8", "/etc", "--help", "kwargs")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    from pydoc_data.topics import topics

    return [t for _, t in sorted(topics.items())][:40]


@pytest.fixture(scope="module")
def model(texts) -> bytes:
    return train_sentencepiece(texts, TokenizerConfig(vocab_size=2000), TERMS)


def test_training_is_byte_identical_for_the_same_input(texts, model):
    again = train_sentencepiece(texts, TokenizerConfig(vocab_size=2000), TERMS)
    assert again == model
    other = train_sentencepiece(texts[:-1], TokenizerConfig(vocab_size=2000), TERMS)
    assert other != model  # the bytes do depend on the input


def test_every_dictionary_term_encodes_as_exactly_one_piece(model):
    enc = Encoder(model)
    sp = enc.processor
    for term in TERMS:
        ids = sp.encode(term, out_type=int)
        assert len(ids) == 1 and sp.id_to_piece(ids[0]) == term, (term, sp.encode(term, out_type=str))
        in_context = sp.encode(f"call {term} here", out_type=str)
        assert term in in_context, (term, in_context)
    assert set(enc.piece_ids(TERMS)) == set(TERMS)


@pytest.mark.parametrize("text", [
    "plain words",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\n\n\nand\r carriage returns",
    "control \x01\x07 chars and DEL \x7f",
    "unicode café naïve Ωmega 日本語のテキスト 한국어 emoji 🧪🐍",
    "decomposed e\u0301 stays decomposed",
    "digits 1234567890 and symbols <>[]{}|\\^~`",
    "",
])
def test_decode_gives_the_text_back_exactly(model, text):
    enc = Encoder(model)
    (ids,) = enc.encode_batch([text])
    assert enc.decode(ids) == text


def test_training_texts_gives_the_corpus_back(texts, model):
    enc = Encoder(model)
    for t, ids in zip(texts, enc.encode_batch(texts)):
        assert ids.dtype == np.int16 and enc.decode(ids) == t


def test_vocab_file_lists_every_piece(model):
    lines = vocab_tsv(model).decode().splitlines()
    assert len(lines) == Encoder(model).vocab_size
    assert lines[0].startswith("<unk>\t") and lines[2].startswith("</s>\t")
    assert any(line.startswith("<0x0A>\t") for line in lines)  # byte fallback pieces


@pytest.mark.parametrize("vocab, dtype", [(300, np.int16), (32768, np.int16), (32769, np.uint16),
                                          (65536, np.uint16), (65537, np.int32), (1 << 20, np.int32)])
def test_token_dtype_is_the_narrowest_that_holds_the_vocabulary(vocab, dtype):
    assert token_dtype(vocab) == dtype
    assert arrow_token_type(vocab).value_type.bit_width == np.dtype(dtype).itemsize * 8


def test_pack_tokens_with_eos_separators():
    rows = [[5, 6, 7], [8], [9, 10, 11, 12]]
    assert list(pack_tokens(rows, 4, eos_id=2)) == [[5, 6, 7, 2], [8, 2, 9, 10], [11, 12, 2, 0]]
    assert list(pack_tokens(rows, 8, eos_id=None, pad_id=-1)) == [[5, 6, 7, 8, 9, 10, 11, 12]]
    with pytest.raises(ValueError):
        list(pack_tokens(rows, 0, eos_id=2))


def test_training_lines_cut_long_lines_and_skip_blank_ones():
    cfg = TokenizerConfig(max_sentence_bytes=64, sample_chars=1000)
    lines = list(training_lines(["a\n\n  \n" + "é" * 100 + "\nb", "x" * 5000], cfg))
    assert lines[0] == "a" and lines[1] == "é" * 32 and lines[2] == "b" and lines[3] == "x" * 64


def test_read_dictionary(tmp_path):
    p = tmp_path / "terms.txt"
    p.write_text("# a comment\nasyncio\n\n  PYTHONPATH \nasyncio\n")
    assert read_dictionary(str(p)) == ("asyncio", "PYTHONPATH")
    assert read_dictionary("") == ()
    p.write_text("two words\n")
    with pytest.raises(ConfigError, match="without whitespace"):
        read_dictionary(str(p))
    with pytest.raises(InputError, match="cannot be read"):
        read_dictionary(str(tmp_path / "missing.txt"))


def test_no_text_is_a_clear_error():
    with pytest.raises(InputError, match="no text"):
        train_sentencepiece(["", "  \n"], TokenizerConfig())


@pytest.mark.parametrize("kw, key", [
    ({"vocab_size": 100}, "tokenizer.vocab_size"),
    ({"normalization": "nfd"}, "tokenizer.normalization"),
    ({"threads": 0}, "tokenizer.threads"),
    ({"model_prefix": "a/b"}, "tokenizer.model_prefix"),
    ({"character_coverage": 0.5}, "tokenizer.character_coverage"),
])
def test_tokenizer_config_errors(kw, key):
    with pytest.raises(ConfigError) as e:
        TokenizerConfig(**kw)
    assert e.value.key == key


def test_encode_config_errors():
    with pytest.raises(ConfigError):
        EncodeConfig(batch_size=0)
    with pytest.raises(ConfigError):
        EncodeConfig(vocab_size=-1)
