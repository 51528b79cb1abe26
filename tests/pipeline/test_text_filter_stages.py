"""The lang, quality, model_quality, toxicity and pii stages in Beam: routing, counters, stats,
report sections, a kept fraction from a global quantile, and a whole run with the network cut."""

import ipaddress
import json
import socket

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute  # noqa: F401
import pytest
from apache_beam.testing.util import assert_that, equal_to

from winnow.filters.model_quality import ModelQualityConfig
from winnow.filters.pii import PIIConfig
from winnow.pipeline.config import DEFAULT_STAGES
from winnow.pipeline.configure import load_config
from winnow.pipeline.records import make_record
from winnow.pipeline.runner import run
from winnow.pipeline.stages.model_quality import ModelQuality
from winnow.pipeline.stages.text_filters import pii_stage
from tests.pipeline.batches import create_batches, rows
from tests.pipeline.test_stages import counters

TEXT_STAGES = ("lang", "quality", "model_quality", "toxicity", "pii")


def _good_docs(n):
    from pydoc_data.topics import topics

    out = []
    for k in sorted(topics):
        for para in topics[k].split("\n\n"):
            para = " ".join(para.split())
            if 400 < len(para) < 3000 and "{" not in para and para.count(".") >= 6:
                out.append(para.replace(". ", ".\n"))
        if len(out) >= n:
            break
    return out[:n]


PLANTED = {
    "pii": "Contact our office at jane.doe@example.com or call +1 415-555-2671 for help.\n",
    "secret": "The deploy key is AKIAIOSFODNN7EXAMPLE and must be rotated.\n",
    "toxic": "You are a fucking idiot. Shut up, you stupid bitch. Everybody hates your shit. Fuck off, asshole.",
    "short": "Too short to keep.",
    "german": ("Der Ausschuss hat den Bericht über die neue Eisenbahnlinie geprüft und empfiehlt den Bau. "
               "Die Kosten werden von der Stadt und dem Land gemeinsam getragen. ") * 4,
}


@pytest.fixture
def corpus(tmp_path):
    from winnow.filters.quality import QualityFilter

    docs = _good_docs(40)
    recs = [{"id": f"good-{i:03d}", "text": t} for i, t in enumerate(docs)]
    q = QualityFilter()
    base, other = [t for t in docs if q.process({"text": t, "modality": "text", "lang": "en"})[1].keep][:2]
    recs.append({"id": "plant-pii", "text": PLANTED["pii"] + base})
    recs.append({"id": "plant-secret", "text": PLANTED["secret"] + base})
    recs.append({"id": "plant-toxic", "text": other + "\n" + PLANTED["toxic"]})
    recs.append({"id": "plant-short", "text": PLANTED["short"]})
    recs.append({"id": "plant-german", "text": PLANTED["german"]})
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path, len(recs)


def _block_network(monkeypatch):
    """Any connection that is not to loopback raises (and is recorded)."""
    attempts = []
    real_connect = socket.socket.connect
    real_create = socket.create_connection

    def loopback(addr):
        host = addr[0] if isinstance(addr, tuple) else addr
        if isinstance(host, str) and host in ("localhost", ""):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def connect(self, addr):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not loopback(addr):
            attempts.append(addr)
            raise OSError(f"network blocked by test: {addr}")
        return real_connect(self, addr)

    def create_connection(addr, *a, **kw):
        if not loopback(addr):
            attempts.append(addr)
            raise OSError(f"network blocked by test: {addr}")
        return real_create(addr, *a, **kw)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return attempts


def test_defaults_include_the_text_filters_in_order():
    idx = [DEFAULT_STAGES.index(s) for s in TEXT_STAGES]
    assert idx == sorted(idx) and DEFAULT_STAGES.index("exact_dedup") < idx[0]


def test_whole_filter_stack_offline(tmp_path, corpus, monkeypatch):
    attempts = _block_network(monkeypatch)
    with pytest.raises(OSError, match="blocked"):
        socket.create_connection(("198.51.100.7", 443), timeout=1)  # the block works
    path, n = corpus
    out = tmp_path / "out"
    cfg = load_config(input=[str(path)], output=str(out), stages=["normalize", *TEXT_STAGES, "grammar"],
                      overrides=["model_quality.keep_fraction=0.9", "lang.keep=en",
                                 "grammar.max_errors_per_100_words=0"])
    stats = run(cfg).stats
    assert attempts == [("198.51.100.7", 443)]  # nothing else tried to connect
    assert stats["balanced"] and stats["read"] == n and stats["dead_letter"] == 0
    funnel = {s["name"]: s["rejected"] for s in stats["stages"]}
    assert funnel["toxicity"] == {"toxicity_toxic": 1}
    assert funnel["pii"] == {"pii_secret": 1}
    assert funnel["model_quality"].get("model_quality_low_score", 0) >= 1
    rejects = pa.concat_tables(pa.ipc.open_file(str(p)).read_all() for p in sorted((out / "rejects").iterdir()))
    why = dict(zip(rejects.column("id").to_pylist(), rejects.column("reject_reason").to_pylist()))
    assert why["plant-german"] == "lang_not_kept" and why["plant-short"] == "quality_gopher_word_count"
    assert why["plant-toxic"] == "toxicity_toxic" and why["plant-secret"] == "pii_secret" and "plant-pii" not in why
    ss = stats["stage_stats"]
    assert ss["lang"]["languages"]["en"] >= 40 and ss["lang"]["languages"]["de"] == 1
    assert ss["pii"]["pii"]["found"]["email"] >= 1 and ss["pii"]["pii"]["found"]["phone"] >= 1
    assert ss["pii"]["pii"]["found"]["secret"] == 1
    assert ss["model_quality"]["training"]["background_docs"] > 0 and ss["model_quality"]["thresholds"]["min_score"] > 0
    assert ss["toxicity"]["score_hist"]["n"] >= 20 and ss["quality"]["words_hist"]["n"] >= 40
    assert ss["grammar"]["rate_hist"]["n"] >= 20 and "Agreement" in ss["grammar"]["counted_kinds"]
    assert funnel["grammar"] == {}  # annotate only here
    html = (out / "report.html").read_text()
    for title in ("Language", "Heuristic quality", "Model quality", "Toxicity", "PII", "Grammar"):
        assert f">{title}<" in html, title
    assert "(failed)" not in html

    kept = pa.concat_tables(pa.ipc.open_file(str(p)).read_all() for p in sorted((out / "shards").iterdir()))
    texts = dict(zip(kept.column("id").to_pylist(), kept.column("text").to_pylist()))
    assert "<EMAIL>" in texts["plant-pii"] and "<PHONE>" in texts["plant-pii"] and "jane.doe" not in texts["plant-pii"]
    row = kept.filter(pa.compute.equal(kept.column("id"), "plant-pii")).to_pylist()[0]
    assert row["pii_email"] == 1 and row["pii_phone"] == 1 and row["lang"] == "en"
    assert {"lang", "lang_score", "quality_words", "model_quality_score", "toxicity_score", "pii_email"} <= set(kept.schema.names)


def test_model_quality_keeps_the_requested_fraction_and_counts():
    docs = _good_docs(60) + [f"filler words number {i} " * 12 for i in range(60)]
    recs = [make_record(source=f"t:{i}", text=t) for i, t in enumerate(docs)]
    recs.append(make_record(source="img:0", image=b"\x89PNG", modality="image"))
    p = beam.Pipeline(runner="FnApiRunner")
    out = create_batches(p, recs, size=16) | ModelQuality(ModelQualityConfig(keep_fraction=0.5, background_sample=40))
    n_kept = rows(out.kept, "RowsK") | "CountK" >> beam.combiners.Count.Globally()
    n_rej = rows(out.rejected, "RowsR") | "CountR" >> beam.combiners.Count.Globally()

    def near_half(counts):
        (k,) = counts
        assert 50 <= k <= 72, k  # 60 of 120 texts, plus the image, within histogram resolution

    assert_that(n_kept, near_half, label="kept")
    assert_that(n_rej | beam.Map(lambda k: k + 0), lambda c: 49 <= c[0] <= 71, label="rej")
    assert_that(rows(out.dead, "RowsD"), equal_to([]), label="dead")
    result = p.run()
    result.wait_until_finish()
    c = counters(result)
    assert c["model_quality/kept"] + c["model_quality/model_quality_low_score"] == len(recs)


def test_pii_stage_counts_in_beam():
    texts = ["mail a@example.com now", "nothing here", "key AKIAIOSFODNN7EXAMPLE", None]
    recs = [make_record(source=f"t:{i}", text=t) if t else make_record(source="i", image=b"x", modality="image")
            for i, t in enumerate(texts)]
    p = beam.Pipeline(runner="FnApiRunner")
    out = create_batches(p, recs, size=3) | pii_stage(PIIConfig(), {})
    assert_that(rows(out.kept, "RowsK") | beam.Map(lambda r: r["text"]), equal_to(["mail <EMAIL> now", "nothing here", None]))
    assert_that(rows(out.rejected, "RowsR") | "R" >> beam.Map(lambda r: r["reject_reason"]), equal_to(["pii_secret"]), label="rej")
    stats = out.stats | beam.Filter(lambda d: "pii" in d)
    assert_that(stats | beam.Map(lambda d: d["pii"]), equal_to([{"found": {"email": 1, "secret": 1},
                                                                 "records": {"email": 1, "secret": 1}}]), label="st")
    result = p.run()
    result.wait_until_finish()
    c = counters(result)
    assert c["pii/kept"] == 3 and c["pii/pii_secret"] == 1
