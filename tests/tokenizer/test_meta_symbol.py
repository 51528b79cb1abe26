"""A text's own U+2581 (sentencepiece's whitespace symbol) survives encoding and decoding."""

from __future__ import annotations

import pytest

from winnow.tokenizer.encode import META, Encoder
from winnow.tokenizer.train import TokenizerConfig, train_sentencepiece

CORPUS = ["The quick brown fox jumps over the lazy dog, again and again.", "Hello world: a test of tokenizers."] * 40


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(train_sentencepiece(CORPUS, TokenizerConfig(vocab_size=300)))


TEXTS = ["\u2581 already a meta symbol \u2581\u2581", "\u2581", "a\u2581b", " \u2581 x ", "\u2581\u2581\u2581",
         "words\u2581joined\u2581by\u2581it\n\u2581 on a new line"]


@pytest.mark.parametrize("text", TEXTS)
def test_meta_symbol_decodes_back_exactly(encoder, text):
    (ids,) = encoder.encode_batch([text])
    assert encoder.decode(ids) == text
    assert encoder.processor.decode(ids.tolist()) == text  # any sentencepiece reading spm.model too


def test_batches_mix_texts_with_and_without_the_symbol(encoder):
    texts = ["plain text", *TEXTS, "", "more plain text"]
    batch = encoder.encode_batch(texts)
    assert [encoder.decode(i) for i in batch] == texts
    assert [i.tolist() for i in batch] == [encoder.encode_batch([t])[0].tolist() for t in texts]
    sp = encoder.processor
    for t, ids in zip(texts, batch):  # texts without it are encoded as sentencepiece encodes them
        if META not in t:
            assert ids.tolist() == sp.encode(t, out_type=int)
        else:
            assert ids.tolist().count(sp.piece_to_id("<0xE2>")) == t.count(META)


def test_without_byte_fallback_the_symbol_decodes_as_a_space():
    enc = Encoder(train_sentencepiece(CORPUS, TokenizerConfig(vocab_size=300, byte_fallback=False)))
    (ids,) = enc.encode_batch(["a\u2581b \u2581"])
    assert enc.decode(ids) == "a b  "  # the documented exception (README, tokenizer section)
