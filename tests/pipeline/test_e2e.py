"""End to end: raw files -> pipeline -> shards, rejects, dead letters, stats, report, manifest."""

import gzip
import json
import pathlib

import pyarrow as pa
import pytest

from winnow.format import Manifest, reject_schema, schema_from_json, xxh3_128_hex
from winnow.pipeline.config import DEFAULT_STAGES
from winnow.pipeline.configure import load_config
from winnow.demo.corpus import build_demo_corpus
from winnow.pipeline.runner import run

from .textroot import other_text_root

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["machine-text", "other-text-root"])
def demo_run(request, tmp_path_factory):
    """The demo corpus from this machine's text, and from a text root with other and extra pages:
    every test below asserts only what holds for any machine's text."""
    base = tmp_path_factory.mktemp("demo")
    man_root = "/usr/share/man" if request.param == "machine-text" else other_text_root(base / "man")
    corpus = build_demo_corpus(str(base / "corpus"), scale=0.3, man_root=man_root)
    out = str(base / "out")
    cfg = load_config(input=list(corpus.inputs), output=out, overrides=["sink.shard_bytes=500KB", "sink.batch_bytes=64KB"])
    result = run(cfg)
    return corpus, pathlib.Path(out), result


def _tables(out, shards):
    return pa.concat_tables(pa.ipc.open_file(str(out / s.path)).read_all() for s in shards).to_pylist()


def test_stats_balance_exactly_against_what_was_planted(demo_run):
    corpus, out, result = demo_run
    stats = json.loads((out / "stats.json").read_text())
    assert stats == result.stats
    assert stats["balanced"] is True
    assert stats["read"] == corpus.records_written + corpus.malformed_written
    assert stats["read"] == stats["kept"] + stats["rejected"] + stats["dead_letter"]
    assert stats["dead_letter"] == corpus.malformed_written
    funnel = {s["name"]: s for s in stats["stages"]}
    assert stats["rejected"] == sum(sum(s["rejected"].values()) for s in stats["stages"])
    # The machine's own text may hold more empties and duplicates than were planted (a page that
    # is only control characters, two pages equal once normalized): at least the planted ones.
    assert set(funnel["normalize"]["rejected"]) == {"normalize_empty_text"}
    assert funnel["normalize"]["rejected"]["normalize_empty_text"] >= corpus.planted["empty_text"] > 0
    dups = corpus.planted["exact_duplicates"] + corpus.planted["whitespace_duplicates"] + corpus.planted["duplicate_images"]
    assert set(funnel["exact_dedup"]["rejected"]) == {"exact_dedup_duplicate"}
    assert funnel["exact_dedup"]["rejected"]["exact_dedup_duplicate"] >= dups > 0
    # Planted near-duplicate texts can fall to the quality rules first (which ones depends on the
    # machine's text); test_rejects_and_dead_letters_say_why follows each one. The drawn images
    # do not depend on the machine: every planted near-duplicate image, plus any the drawing made.
    assert funnel["minhash_dedup"]["rejected"]["minhash_dedup_near_duplicate"] > 0
    assert funnel["image_dedup"]["rejected"]["image_dedup_near_duplicate"] >= corpus.planted["near_duplicate_images"] > 0
    assert stats["stage_stats"]["minhash_dedup"]["cc_converged"] and stats["stage_stats"]["image_dedup"]["cc_converged"]
    assert stats["modalities"].get("image_text", 0) > 0 and stats["modalities"]["text"] > 0
    # Each stage's input is the previous stage's output, and it accounts for every record.
    for before, after in zip(stats["stages"], stats["stages"][1:]):
        assert after["in"] == before["out"], (before["name"], after["name"])
    for st in stats["stages"]:
        if st["name"] != "augment":
            assert st["in"] == st["out"] + sum(st["rejected"].values()) + st["dead_letter"], st["name"]


def test_every_planted_empty_and_duplicate_is_removed_where_it_must_be(demo_run):
    corpus, out, _ = demo_run
    m = Manifest.loads((out / "index.json").read_text())
    rejects = _tables(out, m.rejects)
    stage_of = {r["id"]: (r["reject_stage"], r["reject_reason"]) for r in rejects}
    empties = [f"empty-{j:04d}" for j in range(corpus.planted["empty_text"])]
    assert all(stage_of.get(i) == ("normalize", "normalize_empty_text") for i in empties)
    # A planted copy is removed by exact_dedup, or it is the one kept and its original removed.
    pointed_at = {r["duplicate_of"] for r in rejects if r["reject_stage"] == "exact_dedup"}
    copies = [f"dup-{j:05d}" for j in range(corpus.planted["exact_duplicates"])]
    copies += [f"wsdup-{j:05d}" for j in range(corpus.planted["whitespace_duplicates"])]
    for i in copies:
        assert stage_of.get(i) == ("exact_dedup", "exact_dedup_duplicate") or i in pointed_at, i


def test_planted_toxic_and_secret_records_are_dropped_and_pii_redacted(demo_run):
    corpus, out, result = demo_run
    m = Manifest.loads((out / "index.json").read_text())
    rejects = _tables(out, m.rejects)
    stage_of = {r["id"]: r["reject_stage"] for r in rejects}
    by_reason: dict = {}
    for r in rejects:
        by_reason.setdefault(r["reject_reason"], set()).add(r["id"])
    stages = [s["name"] for s in result.stats["stages"]]
    kept = _tables(out, m.shards)
    kept_ids = {r["id"] for r in kept}
    toxic = {f"toxic-{j:04d}" for j in range(corpus.planted["toxic_records"])}
    secret = {f"secret-{j:04d}" for j in range(corpus.planted["secret_records"])}
    # model_quality learns from the machine's text, so it may take a plant out first; one that
    # reaches its stage is removed there, and none is ever kept.
    for ids, stage, reason in ((toxic, "toxicity", "toxicity_toxic"), (secret, "pii", "pii_secret")):
        assert ids and not ids & kept_ids
        assert all(stages.index(stage_of[i]) < stages.index(stage) or i in by_reason[reason] for i in ids)
        assert ids & by_reason[reason], f"no planted record reached {stage}"
    pii = [r for r in kept if r["id"].startswith("pii-")]
    planted_pii = {f"pii-{j:04d}" for j in range(corpus.planted["pii_records"])}
    assert pii and {r["id"] for r in pii} | {i for i in planted_pii if i in stage_of} == planted_pii
    assert all(stages.index(stage_of[i]) < stages.index("pii") for i in planted_pii if i in stage_of)
    for r in pii:
        assert r["text"].startswith("Questions about this page go to the maintainer (")
        assert sum(r[f"pii_{t}"] for t in ("email", "phone", "iban", "credit_card")) >= 1
        assert "@" not in r["text"].split("\n")[0]  # the planted e-mail, if any, is redacted
    found = result.stats["stage_stats"]["pii"]["pii"]["found"]
    assert found.get("secret", 0) >= len(secret & by_reason["pii_secret"]) > 0
    assert sum(found.get(t, 0) for t in ("email", "phone", "iban", "credit_card")) >= len(pii)


def test_manifest_lists_shards_with_true_sizes_and_checksums(demo_run):
    _, out, _ = demo_run
    m = Manifest.loads((out / "index.json").read_text())
    assert len(m.shards) > 1
    assert m.counts["kept"] == m.total_rows
    for s in (*m.shards, *m.rejects, *m.dead_letter):
        data = (out / s.path).read_bytes()
        assert len(data) == s.bytes and xxh3_128_hex(data) == s.xxh3_128
        assert pa.ipc.open_file(pa.py_buffer(data)).read_all().num_rows == s.rows
    listed = {s.path for s in m.shards}
    on_disk = {str(p.relative_to(out)) for p in (out / "shards").iterdir()}
    assert listed == on_disk  # nothing half-written left behind
    # The manifest is written last.
    newest_shard = max(p.stat().st_mtime_ns for p in (out / "shards").iterdir())
    assert (out / "index.json").stat().st_mtime_ns >= newest_shard


def test_shards_open_with_pyarrow_polars_and_duckdb_with_the_manifest_schema(demo_run):
    polars = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    _, out, _ = demo_run
    m = Manifest.loads((out / "index.json").read_text())
    path = str(out / m.shards[0].path)
    with pa.memory_map(path) as src:
        reader = pa.ipc.open_file(src)
        assert reader.schema == m.schema
        table = reader.read_all()
    df = polars.read_ipc(path)
    assert df.height == table.num_rows and df.columns == m.schema.names
    assert df["id"].to_list() == table.column("id").to_pylist()
    # DuckDB scans the shard through a pyarrow dataset over the IPC file (no extension download).
    import pyarrow.dataset as ds

    con = duckdb.connect()
    con.register("shard", ds.dataset(path, format="ipc"))
    n_rows, n_text, first = con.execute("SELECT count(*), count(text), min(id) FROM shard").fetchone()
    assert n_rows == table.num_rows
    assert n_text == table.num_rows - table.column("text").null_count
    assert first == min(table.column("id").to_pylist())


def test_rejects_and_dead_letters_say_why(demo_run):
    corpus, out, _ = demo_run
    m = Manifest.loads((out / "index.json").read_text())
    rejects = pa.concat_tables(pa.ipc.open_file(str(out / s.path)).read_all() for s in m.rejects).to_pylist()
    dead = pa.concat_tables(pa.ipc.open_file(str(out / s.path)).read_all() for s in m.dead_letter).to_pylist()
    assert pa.ipc.open_file(str(out / m.rejects[0].path)).schema == reject_schema(m.schema)
    listed = schema_from_json(json.loads((out / "index.json").read_text())["reject_schema"])
    assert all(pa.ipc.open_file(str(out / s.path)).schema == listed for s in (*m.rejects, *m.dead_letter))
    reasons = {r["reject_reason"] for r in rejects}
    assert {"normalize_empty_text", "exact_dedup_duplicate", "minhash_dedup_near_duplicate",
            "image_dedup_near_duplicate"} <= reasons
    from winnow.pipeline.stages.registry import STAGES
    for r in rejects:
        assert r["reject_reason"] in STAGES[r["reject_stage"]].reasons and r["reject_reason"].startswith(r["reject_stage"])
    kept = pa.concat_tables(pa.ipc.open_file(str(out / s.path)).read_all() for s in m.shards).to_pylist()
    kept_ids = {r["id"] for r in kept}
    stages = list(DEFAULT_STAGES)
    stage_of = {r["id"]: r["reject_stage"] for r in rejects}
    # Each planted near-duplicate that reached minhash_dedup together with its original was removed there.
    reached = lambda i: i in kept_ids or (  # noqa: E731
        i in stage_of and stages.index(stage_of[i]) >= stages.index("minhash_dedup"))
    planted = [r for r in (*kept, *rejects) if r["id"].startswith("zz-near-")]
    assert len(planted) == corpus.planted["near_duplicates"]
    both = [r for r in planted if reached(r["id"]) and reached(json.loads(r["meta"])["near_of"])]
    assert both and all(stage_of.get(r["id"]) == "minhash_dedup" for r in both)
    # The record a duplicate points at passed its stage: kept, or removed by a later stage.
    dedup = ("exact_dedup", "minhash_dedup", "image_dedup")
    later = {st: {x["id"] for x in rejects if stages.index(x["reject_stage"]) > stages.index(st)} for st in dedup}
    for r in rejects:
        if r["reject_stage"] in dedup:
            later_ids = later[r["reject_stage"]]
            assert r["duplicate_of"] in kept_ids | later_ids and r["duplicate_of"] <= r["id"] and r["duplicate_of_source"]
    assert dead and all(r["reject_reason"] == "dead_letter" and r["error"] and r["source"] for r in dead)
    # Each dead letter points at its file and line or member.
    assert all((":" in r["source"]) or ("#" in r["source"]) for r in dead)


def test_report_and_config_written(demo_run):
    _, out, _ = demo_run
    html = (out / "report.html").read_text()
    assert "normalize_empty_text" in html and "exact_dedup_duplicate" in html and "<svg" in html
    cfg = load_config(str(out / "config.yaml"))
    assert cfg.stages == DEFAULT_STAGES and cfg.sink.shard_bytes == 500_000
    assert "Near-duplicate text clusters (MinHash)" in html and "Near-duplicate image clusters (pHash)" in html
    for title in ("Language", "Heuristic quality", "Model quality", "Toxicity", "PII"):
        assert f">{title}<" in html, title


def test_one_percent_malformed_lines_balance_exactly(tmp_path):
    lines = []
    bad = 0
    for i in range(3000):
        if i % 100 == 37:
            lines.append(b'{"id": "x%d", "text": "unterminated' % i)
            bad += 1
        else:
            lines.append(json.dumps({"id": f"d{i}", "text": f"document number {i} " * 3}).encode())
    src = tmp_path / "in.jsonl.gz"
    src.write_bytes(gzip.compress(b"\n".join(lines) + b"\n", mtime=0))
    # Repetitive one-line texts: only the parsing stages, the quality rules would reject them all.
    cfg = load_config(input=[str(src)], output=str(tmp_path / "out"), stages=["normalize", "exact_dedup"])
    stats = run(cfg).stats
    assert bad == 30
    assert stats["read"] == 3000 and stats["dead_letter"] == 30 and stats["kept"] == 2970
    assert stats["balanced"]
