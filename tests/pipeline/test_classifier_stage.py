"""The ``classifier`` stage: a tiny randomly initialised BERT and a WordPiece tokenizer built
offline in tmp_path, loaded through the real path (``from_pretrained(local_files_only=True)``)
and run through Beam's RunInference."""

from __future__ import annotations

import json
import random

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that

from winnow.errors import ConfigError
from winnow.filters.classifier import ClassifierConfig, ClassifierModel
from winnow.filters.domain import keep_count
from winnow.format import Manifest
from winnow.pipeline.configure import load_config
from winnow.pipeline.records import make_record
from winnow.pipeline.runner import run
from winnow.pipeline.stages.classifier import ClassifierStage

from tests.pipeline.batches import create_batches

WORDS = ("the a of and to in is it that for on with as was be by this are or an not from at which "
         "data model text file line code value list word set run test stage record batch score").split()


def make_model(path, num_labels=2, id2label=None, seed=0):
    """A 2-layer BERT (hidden 32) and a WordPiece vocab written here: no download."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *("##" + c for c in "abcdefghijklmnopqrstuvwxyz")]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizer(str(path / "vocab.txt"))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=num_labels,
                     **({"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}} if id2label else {}))
    BertForSequenceClassification(cfg).eval().save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return str(path)


def texts(n, seed=1):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40))) for _ in range(n)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("clf") / "model")


def counters(result):
    out = {}
    for c in result.metrics().query(MetricsFilter().with_namespace("winnow"))["counters"]:
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + c.committed
    return out


def _collect(pcoll, label, path):
    def write(items):
        path.write_text(json.dumps(sorted((json.loads(i) for i in items), key=lambda r: r["id"])))

    # records as JSON text (ASCII escapes): a lone surrogate cannot cross Beam's str coder
    as_json = pcoll | f"{label}Json" >> beam.FlatMap(lambda b: [json.dumps(r, default=str) for r in b.rows])
    assert_that(as_json, write, label=f"{label}Write")


def run_stage(tmp_path, recs, cfg, size=7):
    p = beam.Pipeline(runner="FnApiRunner")
    out = create_batches(p, recs, size=size) | ClassifierStage(cfg)
    files = {k: tmp_path / f"{k}.json" for k in ("kept", "rejected", "dead")}
    _collect(out.kept, "Kept", files["kept"])
    _collect(out.rejected, "Rejected", files["rejected"])
    _collect(out.dead, "Dead", files["dead"])
    result = p.run()
    result.wait_until_finish()
    return ({k: json.loads(f.read_text()) for k, f in files.items()}, counters(result))


def direct_scores(cfg, ts):
    return ClassifierModel(cfg).score(ts)


# -- config ---------------------------------------------------------------------------------------

def test_model_dir_is_required_and_must_be_a_directory(tmp_path):
    with pytest.raises(ConfigError) as e:
        ClassifierConfig()
    assert e.value.key == "classifier.model_dir"
    with pytest.raises(ConfigError) as e:
        ClassifierConfig(model_dir=str(tmp_path / "nowhere"))
    assert e.value.key == "classifier.model_dir"
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError) as e:
        ClassifierConfig(model_dir=str(tmp_path / "f"))
    assert e.value.key == "classifier.model_dir"
    run_cfg = load_config(input=["x.jsonl"], output=str(tmp_path / "o"), stages=["classifier"])
    with pytest.raises(ConfigError) as e:  # the stage's options when the run builds it
        run_cfg.options("classifier")
    assert e.value.key == "classifier.model_dir"
    with pytest.raises(ConfigError) as e:  # a --set of a missing directory
        load_config(input=["x.jsonl"], output=str(tmp_path / "o"), stages=["classifier"],
                    overrides=[f"classifier.model_dir={tmp_path / 'nowhere'}"])
    assert e.value.key == "classifier.model_dir"


def test_threshold_and_fraction_are_exclusive(model_dir):
    with pytest.raises(ConfigError) as e:
        ClassifierConfig(model_dir=model_dir, threshold=0.5, keep_fraction=0.5)
    assert e.value.key == "classifier.keep_fraction"
    with pytest.raises(ConfigError):
        ClassifierConfig(model_dir=model_dir, keep_fraction=1.5)


def test_label_by_name_or_index(tmp_path):
    d = make_model(tmp_path / "m3", num_labels=3, id2label={0: "low", 1: "mid", 2: "high"})
    ts = texts(6)
    by_name = direct_scores(ClassifierConfig(model_dir=d, label="high", device="cpu"), ts)
    by_index = direct_scores(ClassifierConfig(model_dir=d, label="2", device="cpu"), ts)
    assert by_name == by_index and all(0.0 < s < 1.0 for s in by_name)
    low = direct_scores(ClassifierConfig(model_dir=d, label="low", device="cpu"), ts)
    mid = direct_scores(ClassifierConfig(model_dir=d, label="mid", device="cpu"), ts)
    assert all(abs(a + b + c - 1.0) < 1e-5 for a, b, c in zip(low, mid, by_name))
    with pytest.raises(ConfigError) as e:  # three labels: the label must be named
        ClassifierModel(ClassifierConfig(model_dir=d, device="cpu"))
    assert e.value.key == "classifier.label"
    with pytest.raises(ConfigError):
        ClassifierModel(ClassifierConfig(model_dir=d, label="nope", device="cpu"))


def test_batching_and_length_sorting_do_not_change_scores(model_dir):
    ts = texts(40)
    one = direct_scores(ClassifierConfig(model_dir=model_dir, batch_size=1, device="cpu"), ts)
    many = direct_scores(ClassifierConfig(model_dir=model_dir, batch_size=16, device="cpu"), ts)
    assert max(abs(a - b) for a, b in zip(one, many)) < 1e-5
    assert len({round(s, 6) for s in one}) > 10  # the random model does tell texts apart


# -- the stage in Beam ----------------------------------------------------------------------------

def _records(n, seed=1):
    return [make_record(source=f"t:{i}", text=t) for i, t in enumerate(texts(n, seed))]


def test_threshold_keeps_scores_at_or_above_and_counts_balance(tmp_path, model_dir):
    recs = _records(50)
    base = ClassifierConfig(model_dir=model_dir, device="cpu", batch_size=8, records_per_call=16)
    scores = direct_scores(base, [r["text"] for r in recs])
    threshold = sorted(scores)[len(scores) // 2]
    cfg = ClassifierConfig(model_dir=model_dir, device="cpu", batch_size=8, records_per_call=16, threshold=threshold)
    out, c = run_stage(tmp_path, recs, cfg)
    by_id = {r["id"]: s for r, s in zip(recs, scores)}
    assert len(out["kept"]) + len(out["rejected"]) == len(recs) and not out["dead"]
    assert len(out["kept"]) == sum(s >= threshold for s in scores)
    for r in out["kept"]:
        assert r["classifier_score"] == pytest.approx(by_id[r["id"]], abs=1e-6) and r["classifier_score"] >= threshold
    for r in out["rejected"]:
        assert r["classifier_score"] < threshold
        assert (r["reject_stage"], r["reject_reason"]) == ("classifier", "classifier_below_threshold")
    assert c["classifier/kept"] == len(out["kept"])
    assert c["classifier/classifier_below_threshold"] == len(out["rejected"])


def test_keep_fraction_keeps_exactly_the_top_scores(tmp_path, model_dir):
    recs = _records(45, seed=3)
    recs.append(make_record(source="img:0", text=None, modality="image"))  # passes through unscored
    cfg = ClassifierConfig(model_dir=model_dir, device="cpu", batch_size=8, keep_fraction=0.3)
    out, c = run_stage(tmp_path, recs, cfg, size=10)
    assert keep_count(45, 0.3) == 14
    scored_kept = [r for r in out["kept"] if r["classifier_score"] is not None]
    assert len(scored_kept) == 14 and len(out["rejected"]) == 31 and not out["dead"]
    assert min(r["classifier_score"] for r in scored_kept) >= max(r["classifier_score"] for r in out["rejected"])
    assert [r for r in out["kept"] if r["classifier_score"] is None][0]["modality"] == "image"
    assert c["classifier/kept"] == 15 and c["classifier/classifier_below_threshold"] == 31
    assert c["classifier/not_scored"] == 1


def test_untokenizable_text_dead_letters_alone(tmp_path, model_dir):
    recs = _records(12)
    recs[5] = make_record(source="t:bad", text="the data \ud800 model")  # a lone surrogate
    cfg = ClassifierConfig(model_dir=model_dir, device="cpu", threshold=0.0)
    out, c = run_stage(tmp_path, recs, cfg, size=6)
    assert [r["source"] for r in out["dead"]] == ["t:bad"]
    assert "tokenization failed" in out["dead"][0]["error"]
    assert len(out["kept"]) == 11 and not out["rejected"]
    assert c["classifier/dead_letter"] == 1 and c["classifier/kept"] == 11


def test_scores_are_deterministic_across_runs(tmp_path, model_dir):
    recs = _records(30, seed=7)
    cfg = ClassifierConfig(model_dir=model_dir, device="cpu", batch_size=4, keep_fraction=0.5)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, _ = run_stage(tmp_path / "a", recs, cfg, size=5)
    second, _ = run_stage(tmp_path / "b", recs, cfg, size=9)
    assert first == second


@pytest.mark.slow
def test_classifier_stage_through_the_runner_offline(tmp_path, model_dir, monkeypatch):
    from tests.pipeline.test_text_filter_stages import _block_network

    attempts = _block_network(monkeypatch)
    recs = [{"id": f"r{i:02d}", "text": t} for i, t in enumerate(texts(30, seed=11))]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = tmp_path / "out"
    cfg = load_config(input=[str(src)], output=str(out), stages=["classifier"],
                      overrides=[f"classifier.model_dir={model_dir}", "classifier.keep_fraction=0.6",
                                 "classifier.device=cpu"])
    stats = run(cfg).stats
    assert attempts == []  # the model and tokenizer load from the directory; nothing connects out
    assert stats["balanced"] and stats["dead_letter"] == 0 and stats["read"] == 30
    m = Manifest.loads((out / "index.json").read_text())
    kept = pa.concat_tables(pa.ipc.open_file(str(out / s.path)).read_all() for s in m.shards).to_pylist()
    rej = [r for s in m.rejects for r in pa.ipc.open_file(str(out / s.path)).read_all().to_pylist()]
    assert len(kept) == 18 and len(rej) == 12
    assert min(r["classifier_score"] for r in kept) >= max(r["classifier_score"] for r in rej)
    sel = stats["stage_stats"]["classifier"]["selection"]
    assert sel["scored"] == 30 and sel["keep_fraction"] == 0.6
