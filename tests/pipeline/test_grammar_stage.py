"""The grammar stage in Beam: columns, the drop reason, per-kind stats and the report section."""

import json

import pyarrow as pa

from winnow.demo.grammar_evalset import grammar_eval_set
from winnow.format import Manifest
from winnow.pipeline.configure import load_config
from winnow.pipeline.runner import run


def test_grammar_stage_drops_erroneous_text_and_counts_kinds(tmp_path):
    clean, bad = grammar_eval_set(n=12)
    recs = [{"id": f"c{i:02d}", "text": t} for i, t in enumerate(clean)]
    recs += [{"id": f"b{i:02d}", "text": t} for i, (t, _) in enumerate(bad[:12])]
    recs.append({"id": "short", "text": "It are an dog."})
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = tmp_path / "out"
    stats = run(load_config(input=[str(src)], output=str(out), stages=["grammar"])).stats
    assert stats["balanced"] and stats["dead_letter"] == 0 and stats["read"] == len(recs)
    m = Manifest.loads((out / "index.json").read_text())
    kept = pa.concat_tables(pa.ipc.open_file(str(out / s.path)).read_all() for s in m.shards).to_pylist()
    rej = [r for s in m.rejects for r in pa.ipc.open_file(str(out / s.path)).read_all().to_pylist()]
    assert {r["reject_reason"] for r in rej} == {"grammar_too_many_errors"}
    dropped = {r["id"] for r in rej}
    assert sum(i.startswith("b") for i in dropped) >= 8 and sum(i.startswith("c") for i in dropped) <= 1
    assert "short" not in dropped
    for r in kept + rej:
        assert r["grammar_errors"] == sum(json.loads(r["grammar_kinds"]).values())
        assert r["grammar_errors_per_100_words"] >= 0
    g = stats["stage_stats"]["grammar"]
    assert g["kinds"]["found"] and sum(g["kinds"]["found"].values()) == sum(r["grammar_errors"] for r in kept + rej)
    assert g["thresholds"]["max_errors_per_100_words"] == 1.0 and g["rate_hist"]["n"] == len(recs)
    assert ">Grammar<" in (out / "report.html").read_text()
