"""The local seq2seq back-translation backend, with a tiny random Marian model built offline.

The model's output is nonsense; the test checks the wiring: local loading without the hub,
batching, one output per input, and that lost protected terms are caught.
"""

import pytest

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")


@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory):
    import json

    import pydoc_data.topics
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    d = tmp_path_factory.mktemp("marian")
    corpus = d / "corpus.txt"
    lines = [ln.strip() for t in pydoc_data.topics.topics.values() for ln in t.splitlines() if len(ln.strip()) > 20]
    corpus.write_text("\n".join(lines[:3000]))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(d / "sp"), vocab_size=300,
                                   character_coverage=1.0, model_type="unigram", num_threads=1,
                                   minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(d / "sp.model"))
    vocab = {"</s>": 0, "<unk>": 1, "<pad>": 2}
    for i in range(sp.get_piece_size()):
        vocab.setdefault(sp.id_to_piece(i), len(vocab))
    out = d / "model"
    out.mkdir()
    (out / "vocab.json").write_text(json.dumps(vocab))
    for name in ("source.spm", "target.spm"):
        (out / name).write_bytes((d / "sp.model").read_bytes())
    tok = MarianTokenizer(str(out / "source.spm"), str(out / "target.spm"), str(out / "vocab.json"))
    torch.manual_seed(0)
    cfg = MarianConfig(vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1,
                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                       decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=2, eos_token_id=0,
                       decoder_start_token_id=2, forced_eos_token_id=0)
    MarianMTModel(cfg).eval().save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return str(out)


def test_seq2seq_translator_loads_locally_and_batches(tiny_marian, monkeypatch):
    from winnow.filters.augment_translate import Seq2SeqTranslator

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    Seq2SeqTranslator.check(tiny_marian, "augment.forward_model")
    t = Seq2SeqTranslator(tiny_marian, batch_size=2, max_length=12)
    texts = ["The function returns a list.", "A second sentence is here.", "Third one."]
    out = t.translate(texts)
    assert len(out) == 3 and all(isinstance(o, str) for o in out)
    assert out == [t.translate([x])[0] for x in texts]  # padding in a batch changes nothing


def test_seq2seq_backend_in_the_augmenter_catches_lost_terms(tiny_marian, tmp_path):
    from winnow.filters.augment import REASONS, AugmentConfig
    from winnow.pipeline.stages.augment import check_backend, make_augmenter

    cfg = AugmentConfig(fraction=1.0, backend="seq2seq", forward_model=tiny_marian, backward_model=tiny_marian,
                        pivots=("zho",))
    check_backend(cfg)
    aug = make_augmenter(cfg, ("Kubernetes",))
    recs = [{"id": str(i), "text": f"Kubernetes runs job number {i} on the cluster."} for i in range(5)]
    results = aug.augment(recs)
    assert [len(r) for r in results] == [1] * 5
    for (a,) in results:
        assert a.method == "backtranslate" and a.params == {"pivot": "zho"}
        assert a.reason in REASONS or a.reason is None
        if a.reason is None:
            assert "Kubernetes" in a.text
        if a.text is not None and "Kubernetes" not in a.text and a.text.strip():
            assert a.reason in ("augment_lost_term", "augment_identical")
