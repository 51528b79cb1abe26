"""The Arrow sink: deterministic shards, byte-sized batches, readable by other tools."""

import json
import random

import apache_beam as beam
import pyarrow as pa
import pytest

from winnow.format import ShardInfo, output_schema, xxh3_128_hex
from winnow.pipeline.config import SinkConfig
from winnow.pipeline.records import make_record
from winnow.pipeline.sink import WriteShards
from winnow.shardio import rows_to_batches, shard_of, sort_order, sort_rows, table_to_batches, write_arrow_file

from tests.pipeline.batches import create_batches

SCHEMA = output_schema([pa.field("extra_score", pa.float64())])


def records(n=300, seed=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = make_record(source=f"mem://in.jsonl:{i + 1}", text="word " * rng.randint(1, 80), meta={"i": i})
        r["extra_score"] = i / 7
        out.append(r)
    return out


def run_sink(tmp_path, name, recs, cfg, spill=False):
    out = str(tmp_path / name)
    spill_dir = str(tmp_path / name / ".tmp-spill-shards") if spill else None
    with beam.Pipeline(runner="FnApiRunner") as p:
        infos = create_batches(p, recs, size=37) | WriteShards(out, "shards", SCHEMA, cfg, spill_dir=spill_dir)
        infos | beam.Map(lambda i: None)
    return out


def checksums(out):
    import pathlib

    return {p.name: xxh3_128_hex(p.read_bytes()) for p in sorted(pathlib.Path(out, "shards").glob("*.arrow"))}


def test_same_records_in_any_order_give_identical_shards(tmp_path):
    recs = records()
    cfg = SinkConfig(shard_bytes=8_000, batch_bytes=2_000)
    a = checksums(run_sink(tmp_path, "a", recs, cfg))
    shuffled = list(recs)
    random.Random(1).shuffle(shuffled)
    b = checksums(run_sink(tmp_path, "b", shuffled, cfg))
    assert a == b
    assert len(a) > 3  # several shards, named part-XXXXX-of-NNNNN
    n = len(a)
    assert sorted(a) == [f"part-{i:05d}-of-{n:05d}.arrow" for i in range(n)]


@pytest.fixture
def written(monkeypatch):
    """The URIs the sink's Arrow writer writes to, in order."""
    from winnow.pipeline import sink

    uris = []
    real_write = sink.write_arrow_file

    def spy(uri, *a, **k):
        uris.append(uri)
        return real_write(uri, *a, **k)

    monkeypatch.setattr(sink, "write_arrow_file", spy)
    return uris


def test_a_spilling_sink_writes_the_same_shards_and_removes_its_spill_files(tmp_path, monkeypatch, written):
    import pathlib

    from winnow.pipeline import sink

    recs = records()
    cfg = SinkConfig(shard_bytes=8_000, batch_bytes=2_000)
    plain = checksums(run_sink(tmp_path, "plain", recs, cfg))
    written.clear()
    monkeypatch.setattr(sink, "SPILL_FLUSH_BYTES", 5_000)
    out = run_sink(tmp_path, "spilled", recs, cfg, spill=True)
    spills = [u for u in written if "/.tmp-spill-shards/" in u]
    # several spill files per bundle (a file per 5,000 bytes of batches, then each split by
    # shard into a file of its own), and the shards byte-identical to the in-memory path
    assert len(spills) > 4
    assert checksums(out) == plain
    assert not pathlib.Path(out, ".tmp-spill-shards").exists()


def test_a_local_run_spills_unless_told_not_to_and_keeps_identical_output(tmp_path, monkeypatch):
    from winnow.pipeline import spill
    from winnow.pipeline.build import build_pipeline
    from winnow.pipeline.configure import load_config
    from winnow.pipeline.readers import expand_inputs

    src = tmp_path / "in.jsonl"
    words = [f"w{j}" for j in range(60)]
    # near-duplicates (one word changed) so that minhash_dedup's verification shuffles run
    src.write_text("".join(json.dumps({"text": " ".join(words[: 40 + i % 20] + [f"x{i}"])}) + "\n" for i in range(200)))
    seen: list = []

    def spy(cls):
        import inspect

        real_init = cls.__init__
        sig = inspect.signature(real_init)

        def init(self, *a, **k):
            seen.append((cls.__name__, sig.bind(self, *a, **k).arguments.get("spill_dir")))
            real_init(self, *a, **k)

        monkeypatch.setattr(cls, "__init__", init)

    spy(WriteShards)
    spy(spill.SpillingGroupByKey)
    outs = {}
    for mode in ("auto", "never"):
        seen.clear()
        out = tmp_path / mode
        cfg = load_config(None, input=[str(src)], output=str(out), stages=["normalize", "exact_dedup", "minhash_dedup"],
                          overrides=[f"sink.spill={mode}", "minhash_dedup.verify=signature"])
        with beam.Pipeline(runner="FnApiRunner") as p:
            build_pipeline(p, cfg, expand_inputs(cfg.input, cfg.reader), local=True)
        kinds = [k for k, _ in seen]
        assert kinds.count("WriteShards") == 3 and kinds.count("SpillingGroupByKey") >= 2
        assert all(d for _, d in seen) if mode == "auto" else not any(d for _, d in seen)
        assert not [e for e in out.iterdir() if e.name.startswith(".tmp-")]
        stats = json.loads((out / "stats.json").read_text())
        mh = stats["stage_stats"]["minhash_dedup"]
        assert mh["verify_candidate_edges"] > mh["verify_removed"] > 0  # the verified shuffles carried edges
        outs[mode] = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.arrow"))}
    assert outs["auto"] == outs["never"] and len(outs["auto"]) >= 3


def test_shards_hold_every_record_once_sorted_and_batched_by_bytes(tmp_path):
    recs = records()
    cfg = SinkConfig(shard_bytes=8_000, batch_bytes=2_000)
    out = run_sink(tmp_path, "c", recs, cfg)
    import pathlib

    seen = []
    for p in sorted(pathlib.Path(out, "shards").glob("*.arrow")):
        reader = pa.ipc.open_file(pa.memory_map(str(p)))
        assert reader.schema == SCHEMA
        table = reader.read_all()
        ids = table.column("id").to_pylist()
        assert ids == sorted(ids)
        n = int(p.name.split("-of-")[1].split(".")[0])
        shard = int(p.name.split("-")[1])
        assert all(shard_of({"id": i, "source": s}, n) == shard for i, s in zip(ids, table.column("source").to_pylist()))
        if table.num_rows > 20:
            assert reader.num_record_batches > 1  # cut by bytes, not one batch per shard
        seen.extend(ids)
    assert sorted(seen) == sorted(r["id"] for r in recs)
    assert not list(pathlib.Path(out, "shards").glob(".tmp-*"))  # temp files renamed


def test_empty_input_writes_min_shards_of_the_schema(tmp_path):
    out = run_sink(tmp_path, "e", [], SinkConfig(min_shards=2))
    import pathlib

    files = sorted(pathlib.Path(out, "shards").glob("*.arrow"))
    assert [f.name for f in files] == ["part-00000-of-00002.arrow", "part-00001-of-00002.arrow"]
    assert pa.ipc.open_file(str(files[0])).read_all().num_rows == 0


@pytest.mark.parametrize("compression", ["none", "zstd", "lz4"])
def test_write_arrow_file_reports_size_and_checksum(tmp_path, compression):
    recs = records(50)
    uri = str(tmp_path / "x" / "f.arrow")
    nbytes, digest = write_arrow_file(uri, SCHEMA, rows_to_batches(recs, SCHEMA, 10_000), compression)
    data = (tmp_path / "x" / "f.arrow").read_bytes()
    assert nbytes == len(data) and digest == xxh3_128_hex(data)
    assert pa.ipc.open_file(pa.py_buffer(data)).read_all().num_rows == 50


def test_a_failed_write_leaves_no_file_and_no_temporary(tmp_path):
    good = list(rows_to_batches(records(20), SCHEMA, 1000))

    def batches():
        yield from good[:2]
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        write_arrow_file(str(tmp_path / "d" / "f.arrow"), SCHEMA, batches())
    assert list((tmp_path / "d").iterdir()) == []


def test_sorted_batches_are_gathered_in_id_order(tmp_path):
    recs = records(40)
    rev = recs[::-1]  # several chunks of different lengths, as a shard's incoming batches are
    table = pa.concat_tables([pa.Table.from_pylist(rev[a:b], schema=SCHEMA) for a, b in ((0, 7), (7, 8), (8, 8), (8, 40))])
    assert table.column("id").num_chunks == 4
    got = pa.Table.from_batches(list(table_to_batches(table, 500, sort_order(table))))
    assert got.column("id").to_pylist() == sorted(r["id"] for r in recs)
    assert got.equals(sort_rows(table))


def test_lone_surrogates_do_not_break_the_writer(tmp_path):
    r = make_record(source="s:1", text="bad \udcff byte")
    uri = str(tmp_path / "s.arrow")
    write_arrow_file(uri, SCHEMA, rows_to_batches([r], SCHEMA, 1000))
    assert pa.ipc.open_file(uri).read_all().column("text")[0].as_py() == "bad ? byte"


def test_shard_info_round_trip():
    s = ShardInfo("shards/part-00000-of-00001.arrow", 3, 100, "ab" * 16)
    assert ShardInfo.from_json(json.loads(json.dumps(s.to_json()))) == s


def test_the_log_names_a_shard_by_its_path_in_the_run(tmp_path, caplog):
    """A packed shard is logged as packed/shards/... (where it is), not as shards/..."""
    import logging

    out = str(tmp_path / "run" / "packed")
    with caplog.at_level(logging.INFO, logger="winnow"):
        with beam.Pipeline(runner="FnApiRunner") as p:
            create_batches(p, records(20), size=7) | WriteShards(out, "shards", SCHEMA, SinkConfig(), shown_as="packed")
    wrote = [m for m in caplog.messages if m.startswith("winnow: wrote")]
    assert wrote and all(m.startswith("winnow: wrote packed/shards/part-00000-of-00001.arrow") for m in wrote)


def test_a_local_run_to_an_object_store_spills_on_local_disk(tmp_path, s3, monkeypatch, written):
    import tempfile

    from winnow.pipeline.configure import load_config
    from winnow.pipeline.runner import run

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": f"record {i} " + "word " * (i % 7)}) + "\n" for i in range(120)))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    cfg = load_config(None, input=[str(src)], output="s3://winnow-readers/spill-out", stages=["normalize", "exact_dedup"])
    result = run(cfg, overwrite=True)
    assert result.stats["read"] == 120 and result.stats["balanced"]
    spilled = [u for u in written if "winnow-spill-" in u]
    assert spilled and all(u.startswith(str(tmp_path / "tmp")) for u in spilled)  # local disk, not the store
    assert not [u for u in written if "/.tmp-spill" in u and u.startswith("s3://")]
    assert s3.ls("winnow-readers/spill-out/shards") and not [p for p in s3.ls("winnow-readers/spill-out") if ".tmp-" in p]
    assert not list((tmp_path / "tmp").iterdir())  # every spill folder removed
