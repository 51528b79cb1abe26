"""The augment stage in a real run: balance, tagging, determinism, report."""

import hashlib
import json
import shutil

import pyarrow as pa
import pytest

from winnow.errors import ConfigError
from winnow.pipeline.configure import load_config
from winnow.pipeline.runner import run
from tests.pipeline.test_runners import worker_pool  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(shutil.which("apertium") is None,
                                reason="apertium missing: make install (as root) installs it")

_SUBJECTS = ["The Kubernetes scheduler", "An etcd cluster", "The build server", "Our kubectl apply step",
             "The storage layer", "A worker node"]
_VERBS = ["assigns work to", "keeps the state of", "restarts", "reports errors from", "waits for", "updates"]
_OBJECTS = ["every pod in the namespace", "the nodes with free memory", "the failed jobs quickly",
            "the database backups", "all services after a deploy", "the queue when it is full"]


def _texts(n):
    return [f"{_SUBJECTS[i % 6]} {_VERBS[(i // 6) % 6]} {_OBJECTS[(i // 36) % 6]} (case {i})." for i in range(n)]


def _write(tmp_path, n=80):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"t{i}", "text": t}) + "\n" for i, t in enumerate(_texts(n))))
    terms = tmp_path / "terms.txt"
    terms.write_text("Kubernetes\netcd\nkubectl apply\npod\n")
    return src, terms


def _shards(out):
    tables = [pa.ipc.open_file(p).read_all() for p in sorted((out / "shards").glob("*.arrow"))]
    return pa.concat_tables(tables).to_pylist()


def _run(tmp_path, name, src, terms, extra=()):
    out = tmp_path / name
    cfg = load_config(input=[str(src)], output=str(out), stages=["normalize", "augment"],
                      overrides=["augment.fraction=0.5", "augment.methods=backtranslate,synonym,entity",
                                 "augment.pivots=spa,cat", f"augment.terms={terms}", *extra])
    return out, run(cfg)


def test_augment_run_balances_tags_and_reports(tmp_path):
    src, terms = _write(tmp_path)
    out, result = _run(tmp_path, "out", src, terms)
    st = result.stats
    rows = _shards(out)
    originals = [r for r in rows if r["aug_from"] is None]
    augmented = [r for r in rows if r["aug_from"] is not None]
    assert st["read"] == 80 == st["kept"] + st["rejected"] + st["dead_letter"]
    assert st["shards"]["rows"] == st["kept"] + st["augmented"] and st["balanced"]
    assert len(augmented) == st["augmented"] > 0
    by_id = {r["id"]: r for r in originals}
    assert sorted(r["text"] for r in originals) == sorted(_texts(80))  # originals unchanged
    counts = st["stage_stats"]["augment"]["counts"]
    kept_counts = sum(v for k, v in counts.items() if k.endswith("/augmented"))
    assert kept_counts == len(augmented)
    per_method = {k.split("/")[0]: v for k, v in counts.items() if k.endswith("/augmented")}
    assert st["augmented_by_method"] == dict(sorted(per_method.items()))
    attempts = sum(counts.values())
    assert 20 < attempts < 60  # fraction 0.5 of 80
    shield_terms = ("Kubernetes", "etcd", "kubectl apply", "pod")
    for r in augmented:
        src_rec = by_id[r["aug_from"]]
        assert r["aug_method"] in ("backtranslate", "synonym", "entity") and r["text"] != src_rec["text"]
        for t in shield_terms:
            if t in src_rec["text"].split(" (")[0]:
                assert t in r["text"], (src_rec["text"], r["text"])
        assert r["aug_chrf"] >= 40.0
    assert {r["aug_method"] for r in augmented} >= {"backtranslate", "entity"}
    html = (out / "report.html").read_text()
    assert "Augmentation" in html and "what changed" in html


def test_augment_is_deterministic(tmp_path):
    src, terms = _write(tmp_path, 40)
    a, _ = _run(tmp_path, "a", src, terms)
    b, _ = _run(tmp_path, "b", src, terms)

    def digest(out):
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "shards").glob("*.arrow"))]

    assert digest(a) == digest(b)


def test_a_missing_backend_is_a_config_error_before_the_run(tmp_path):
    src, terms = _write(tmp_path, 5)
    cfg = load_config(input=[str(src)], output=str(tmp_path / "o"), stages=["normalize", "augment"],
                      overrides=["augment.backend=seq2seq", f"augment.forward_model={tmp_path}/nope"])
    with pytest.raises(ConfigError, match="augment.forward_model"):
        run(cfg)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_identical_augmented_shards_across_runners(tmp_path, worker_pool):  # noqa: F811 - the fixture
    src, terms = _write(tmp_path, 120)
    setups = {
        "fnapi": dict(workers=1, beam_args=[]),
        "multiprocess2": dict(workers=2, beam_args=[]),
        "portable": dict(workers=1, beam_args=[
            "--runner=PortableRunner", "--job_endpoint=embed",
            "--environment_type=EXTERNAL", f"--environment_config={worker_pool}",
        ]),
    }
    results = {}
    for name, kw in setups.items():
        out = tmp_path / name
        cfg = load_config(input=[str(src)], output=str(out), stages=["normalize", "augment"],
                          overrides=["augment.fraction=0.5", "augment.methods=backtranslate,synonym,entity",
                                     "augment.pivots=spa,epo", f"augment.terms={terms}", "sink.shard_bytes=4KB",
                                     "sink.batch_bytes=2KB"])
        res = run(cfg, **kw)
        assert res.stats["balanced"] and res.stats["augmented"] > 0, name
        m = json.loads((out / "index.json").read_text())
        results[name] = ([(s["path"], s["rows"], s["xxh3_128"]) for s in m["shards"]], m["counts"])
    assert len(results["fnapi"][0]) > 1
    for name, got in results.items():
        assert got == results["fnapi"], f"{name} wrote different augmented shards than the in-process runner"


def test_terms_default_to_the_tokenizer_dictionary(tmp_path):
    from winnow.pipeline.stages.augment import resolve_terms

    d = tmp_path / "dict.txt"
    d.write_text("# domain\nKubernetes\netcd\n")
    cfg = load_config(input=["x"], output=str(tmp_path / "o"), stages=["normalize", "tokenizer", "augment"],
                      overrides=[f"tokenizer.dictionary={d}"])
    assert resolve_terms(cfg.options("augment"), cfg) == ("Kubernetes", "etcd")
    own = tmp_path / "terms.txt"
    own.write_text("kubectl apply\n")
    cfg2 = load_config(input=["x"], output=str(tmp_path / "o"), stages=["normalize", "tokenizer", "augment"],
                       overrides=[f"tokenizer.dictionary={d}", f"augment.terms={own}"])
    assert resolve_terms(cfg2.options("augment"), cfg2) == ("kubectl apply",)
