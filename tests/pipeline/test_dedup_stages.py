"""minhash_dedup and image_dedup in Beam: the labelled sets, kept sets, columns, stats and report."""

from __future__ import annotations

import base64
import json
import pathlib

import pyarrow as pa
import pytest

from winnow.filters.dedup.config import ImageDedupConfig, MinHashDedupConfig
from winnow.demo.dedup_evalset import (cluster_images, cluster_texts, hard_text_eval_set, image_eval_set, score,
                                          text_eval_set)
from winnow.format import Manifest
from winnow.pipeline.configure import load_config
from winnow.pipeline.runner import run
from tests.pipeline.batches import create_batches, rows


def _read(out: pathlib.Path):
    m = Manifest.loads((out / "index.json").read_text())
    kept = pa.concat_tables(pa.ipc.open_file(str(out / s.path)).read_all() for s in m.shards).to_pylist()
    rej = [r for s in m.rejects for r in pa.ipc.open_file(str(out / s.path)).read_all().to_pylist()]
    return kept, rej


def _predicted(kept, rejects, stage):
    pred = {r["id"]: r["id"] for r in kept}
    for r in rejects:
        if r["reject_stage"] == stage:
            pred[r["id"]] = r["duplicate_of"]
    return pred


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("dedup_text")
    items = text_eval_set()
    src = base / "in.jsonl"
    lines = [json.dumps({"id": i.id, "text": i.content}) for i in items]
    lines += [json.dumps({"id": "zz-empty", "text": ""}), json.dumps({"id": "zz-punct", "text": " ,;; -- "})]
    src.write_text("\n".join(lines) + "\n")
    out = base / "out"
    cfg = load_config(input=[str(src)], output=str(out), stages=["minhash_dedup"])
    return items, out, run(cfg)


def test_labelled_text_set_precision_and_recall_through_beam(text_run):
    items, out, result = text_run
    kept, rejects = _read(out)
    pred = _predicted(kept, rejects, "minhash_dedup")
    p, r = score(items, {i.id: pred[i.id] for i in items})
    st = result.stats["stage_stats"]["minhash_dedup"]
    print(f"\nlabelled text set: {len(items)} texts, precision {p:.3f}, recall {r:.3f}, "
          f"bands x rows {st['bands']}x{st['rows']}, cc rounds {st['cc_rounds']} (converged {st['cc_converged']})")
    assert p >= 0.95 and r >= 0.95
    assert st["cc_converged"] is True and st["cc_rounds"] <= st["cc_max_rounds"]
    # Beam keeps exactly the records the in-memory reference keeps (same pure steps).
    ref = cluster_texts(items, MinHashDedupConfig())
    assert {k["id"] for k in kept if not k["id"].startswith("zz")} == {i.id for i in items if ref[i.id] == i.id}


def test_text_columns_rejects_and_passthrough(text_run):
    items, out, result = text_run
    kept, rejects = _read(out)
    by_id = {k["id"]: k for k in kept}
    assert by_id["zz-empty"]["dup_cluster"] is None and by_id["zz-punct"]["dup_cluster_size"] is None
    sizes = {}
    for r in rejects:
        assert r["reject_reason"] == "minhash_dedup_near_duplicate"
        assert r["duplicate_of"] in by_id and r["dup_cluster"] == r["duplicate_of"] and r["duplicate_of"] < r["id"]
        sizes[r["duplicate_of"]] = sizes.get(r["duplicate_of"], 1) + 1
    for cid, n in sizes.items():
        assert by_id[cid]["dup_cluster"] == cid and by_id[cid]["dup_cluster_size"] == n
    st = result.stats
    assert st["balanced"] and st["read"] == len(items) + 2
    hist = st["stage_stats"]["minhash_dedup"]["cluster_sizes"]
    assert hist["n"] == len(sizes) and hist["sum"] == sum(sizes.values())
    ex = st["stage_stats"]["minhash_dedup"]["examples"]
    assert ex and all(e["kept"] and e["removed"]["text"] for e in ex)
    html = (out / "report.html").read_text()
    assert "Near-duplicate text clusters" in html and "beside the record kept" in html


def _run_items(base, items, overrides=()):
    src = base / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i.id, "text": i.content}) + "\n" for i in items))
    out = base / "out"
    cfg = load_config(input=[str(src)], output=str(out), stages=["minhash_dedup"], overrides=list(overrides))
    result = run(cfg)
    kept, rejects = _read(out)
    pred = _predicted(kept, rejects, "minhash_dedup")
    return score(items, {i.id: pred[i.id] for i in items}), result.stats["stage_stats"]["minhash_dedup"]


@pytest.mark.slow
def test_hard_labelled_set_through_beam_signature_and_exact_verification(tmp_path):
    """Chains of edits, pairs just below 0.8, boilerplate-heavy files (truth: exact Jaccard)."""
    items = hard_text_eval_set(seed=0)
    for d in ("default", "none", "estimate"):
        (tmp_path / d).mkdir()
    (p, r), st = _run_items(tmp_path / "default", items)
    (pn, rn), _ = _run_items(tmp_path / "none", items, ["minhash_dedup.verify=none", "minhash_dedup.fp_weight=0.5",
                                                          "minhash_dedup.fn_weight=0.5"])
    (pe, re_), ste = _run_items(tmp_path / "estimate", items, ["minhash_dedup.exact_margin=0"])
    print(f"\nhard set through Beam, {len(items)} texts at threshold 0.8: default (signature, exact within "
          f"{st['exact_margin']}, {st['bands']}x{st['rows']}) P {p:.3f} R {r:.3f}, candidate edges "
          f"{st['verify_candidate_edges']}, removed {st['verify_removed']}; estimate alone P {pe:.3f} R {re_:.3f}; "
          f"plain LSH (datasketch banding, no verification) P {pn:.3f} R {rn:.3f}")
    assert st["verify"] == "signature" and st["verify_threshold"] == 0.8 and st["exact_margin"] == 0.1
    assert st["verify_candidate_edges"] > st["verify_removed"] > 0
    assert p >= 0.98 and r >= 0.98
    assert pe > pn and re_ > rn and ste["exact_margin"] == 0.0
    # In-memory reference agrees with Beam (same pure steps, same verification).
    assert score(items, cluster_texts(items, MinHashDedupConfig())) == pytest.approx((p, r))
    assert score(items, cluster_texts(items, MinHashDedupConfig(exact_margin=0))) == pytest.approx((pe, re_))


def test_exact_verification_and_keep_highest_field():
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from winnow.pipeline.records import make_record
    from winnow.pipeline.stages.minhash_dedup import MinHashDedup

    base = "the quick brown fox jumps over the lazy dog and keeps running through the open field " * 4
    recs = []
    for rid, extra, q in (("a", "one", 0.1), ("b", "two", 0.9), ("c", "three", 0.5), ("d", None, 0.99)):
        r = make_record(source=f"mem:{rid}", id=rid, text=base + extra if extra else "a different text, not alike at all")
        r["q"] = q
        recs.append(r)
    cfg = MinHashDedupConfig(verify="exact", keep="highest_field", keep_field="q")
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = create_batches(p, recs, size=2) | MinHashDedup(cfg)
        assert_that(rows(out.kept, "RowsK") | "K" >> beam.Map(lambda r: (r["id"], r["dup_cluster"], r["dup_cluster_size"])),
                    equal_to([("b", "b", 3), ("d", "d", 1)]), label="kept")
        assert_that(rows(out.rejected, "RowsR") | "R" >> beam.Map(lambda r: (r["id"], r["duplicate_of"], r["reject_reason"])),
                    equal_to([("a", "b", "minhash_dedup_near_duplicate"), ("c", "b", "minhash_dedup_near_duplicate")]),
                    label="rejected")


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("dedup_img")
    items = image_eval_set()
    src = base / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i.id, "img": base64.b64encode(i.content).decode()}) + "\n"
                           for i in items))
    out = base / "out"
    cfg = load_config(input=[str(src)], output=str(out), stages=["image_dedup"], overrides=["reader.image_field=img"])
    return items, out, run(cfg)


def test_labelled_image_set_precision_and_recall_through_beam(image_run):
    items, out, result = image_run
    kept, rejects = _read(out)
    pred = _predicted(kept, rejects, "image_dedup")
    p, r = score(items, {i.id: pred[i.id] for i in items})
    st = result.stats["stage_stats"]["image_dedup"]
    print(f"\nlabelled image set: {len(items)} images, precision {p:.3f}, recall {r:.3f}, "
          f"cc rounds {st['cc_rounds']} (converged {st['cc_converged']})")
    assert p >= 0.95 and r >= 0.95
    ref = cluster_images(items, ImageDedupConfig())
    assert {k["id"] for k in kept} == {i.id for i in items if ref[i.id] == i.id}
    assert all(k["image_phash"] and k["image_dup_cluster"] for k in kept)
    assert "Near-duplicate image clusters" in (out / "report.html").read_text()


def _chain_records(n: int = 40):
    from winnow.pipeline.records import make_record

    import random

    rng = random.Random(5)
    words = [f"w{rng.randrange(10**6)}" for _ in range(3 * n + 200)]
    # Each text is the previous one shifted by three words: neighbours are near-duplicates, far
    # ends are not, so components need several rounds.
    return [make_record(source=f"mem:{i}", id=f"t{i:03d}", text=" ".join(words[3 * i:3 * i + 200])) for i in range(n)]


def _dump(path):
    def write(rows):
        with open(path, "w") as fh:
            json.dump(rows, fh)
    return write


def test_rounds_are_counted_in_metrics_and_non_convergence_is_flagged_not_lossy(tmp_path):
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter

    from winnow.pipeline.stages.minhash_dedup import MinHashDedup

    recs = _chain_records()
    results = {}
    for rounds in (1, 8):
        p = beam.Pipeline(runner="FnApiRunner")
        out = create_batches(p, recs, size=7) | MinHashDedup(MinHashDedupConfig(max_rounds=rounds))
        _ = out.stats | "SL" >> beam.combiners.ToList() | "SW" >> beam.Map(_dump(str(tmp_path / f"stats{rounds}.json")))
        both = (rows(out.kept, "RowsK") | "K" >> beam.Map(lambda r: ("kept", r["id"], r["dup_cluster"])),
                rows(out.rejected, "RowsR") | "R" >> beam.Map(lambda r: ("rej", r["id"], r["duplicate_of"]))) | "F" >> beam.Flatten()
        _ = both | "RL" >> beam.combiners.ToList() | "RW" >> beam.Map(_dump(str(tmp_path / f"rows{rounds}.json")))
        res = p.run()
        res.wait_until_finish()
        counters = {c.key.metric.name: c.committed for c in res.metrics().query(MetricsFilter())["counters"]}
        stats = {k: v for d in json.loads((tmp_path / f"stats{rounds}.json").read_text()) for k, v in d.items()}
        got = [tuple(r) for r in json.loads((tmp_path / f"rows{rounds}.json").read_text())]
        results[rounds] = (stats, got, counters)
    stats8, rows8, counters8 = results[8]
    stats1, rows1, counters1 = results[1]
    print(f"\nchain of {len(recs)} texts: {stats8['cc_rounds']} rounds to converge, changes {stats8['cc_changes_per_round']}")
    assert stats8["cc_converged"] and counters8["minhash_dedup/cc_rounds"] == stats8["cc_rounds"] >= 1
    assert sum(1 for r in rows8 if r[0] == "kept") < len(recs)
    # Cut off after one round: flagged, every record still in exactly one place, the smallest kept.
    assert len(rows1) == len(recs) and {r[1] for r in rows1} == {r["id"] for r in recs}
    assert stats8["cc_rounds"] >= 2 and stats1["cc_changes_per_round"][0] > 0
    assert stats1["cc_converged"] is False and counters1.get("minhash_dedup/cc_not_converged") == 1
    assert ("kept", "t000", "t000") in rows1
    assert all(r[2] <= r[1] for r in rows1 if r[0] == "rej")


def test_rounds_after_a_round_that_changed_nothing_are_skipped_with_the_same_result(tmp_path, monkeypatch):
    """Once a round changes nothing, the edges skip the later rounds (no element reaches them),
    and the records end as in a run whose last round is that one."""
    import collections

    import apache_beam as beam

    from winnow.pipeline.stages import dedup_graph
    from winnow.pipeline.stages.minhash_dedup import MinHashDedup

    calls: collections.Counter = collections.Counter()
    for cls in (dedup_graph._LargeStarFn, dedup_graph._SmallStarFn):
        def counted(self, element, _work=cls.work):  # the in-process runner runs these DoFns here
            calls[self._round] += 1
            return _work(self, element)
        monkeypatch.setattr(cls, "work", counted)
    recs = _chain_records()
    results = {}
    for rounds in (8, None):
        if rounds is None:  # just enough rounds: the last one is the first that changes nothing
            rounds = results[8][0]["cc_rounds"] + 1
        calls.clear()
        with beam.Pipeline(runner="FnApiRunner") as p:
            out = create_batches(p, recs, size=7) | MinHashDedup(MinHashDedupConfig(max_rounds=rounds))
            _ = out.stats | "SL" >> beam.combiners.ToList() | "SW" >> beam.Map(_dump(str(tmp_path / "stats.json")))
            both = (rows(out.kept, "RowsK") | "K" >> beam.Map(lambda r: ("kept", r["id"], r["dup_cluster"], r["dup_cluster_size"])),
                    rows(out.rejected, "RowsR") | "R" >> beam.Map(lambda r: ("rej", r["id"], r["duplicate_of"], r["dup_cluster_size"]))
                    ) | "F" >> beam.Flatten()
            _ = both | "RL" >> beam.combiners.ToList() | "RW" >> beam.Map(_dump(str(tmp_path / "rows.json")))
        stats = {k: v for d in json.loads((tmp_path / "stats.json").read_text()) for k, v in d.items()}
        got = sorted(tuple(r) for r in json.loads((tmp_path / "rows.json").read_text()))
        results[rounds] = (stats, got, set(calls))
    (stats8, rows8, ran8), (stats_k, rows_k, ran_k) = results[8], results[rounds]
    assert stats8["cc_converged"] and 2 <= stats8["cc_rounds"] < 7
    assert ran8 == ran_k == set(range(stats8["cc_rounds"] + 1))  # rounds past the quiet one never ran
    assert rows8 == rows_k and len(rows8) == len(recs)
    assert stats8["cc_changes_per_round"][:rounds] == stats_k["cc_changes_per_round"]
    assert stats8["cc_rounds"] == stats_k["cc_rounds"]


def test_on_not_converged_fail_fails_the_run():
    import apache_beam as beam

    from winnow.pipeline.stages.minhash_dedup import MinHashDedup

    with pytest.raises(Exception, match="did not converge"):
        with beam.Pipeline(runner="FnApiRunner") as p:
            _ = create_batches(p, _chain_records()) | MinHashDedup(MinHashDedupConfig(max_rounds=1, on_not_converged="fail"))


@pytest.mark.slow
def test_representative_clustering_through_beam_never_keeps_a_dissimilar_record_for_a_removed_one(tmp_path):
    """``cluster: representative`` through Beam: the same clusters as the in-memory steps;
    every removed record is similar (exact Jaccard >= 0.8) to the record kept for it, which
    connected components do not give on edit chains; sizes and rounds in the stats."""
    from winnow.filters.dedup.minhash import MinHasher, jaccard

    items = hard_text_eval_set(seed=0)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i.id, "text": i.content}) + "\n" for i in items))
    text = {i.id: i.content for i in items}
    h = MinHasher()

    def dissimilar(rejects):
        return sum(jaccard(h.shingle_hashes(text[r["id"]]), h.shingle_hashes(text[r["duplicate_of"]])) < 0.8
                   for r in rejects)

    got = {}
    for mode in ("components", "representative"):
        out = tmp_path / mode
        cfg = load_config(input=[str(src)], output=str(out), stages=["minhash_dedup"],
                          overrides=[f"minhash_dedup.cluster={mode}"])
        st = run(cfg).stats["stage_stats"]["minhash_dedup"]
        kept, rejects = _read(out)
        pred = _predicted(kept, rejects, "minhash_dedup")
        got[mode] = (score(items, {i.id: pred[i.id] for i in items}), dissimilar(rejects), st, len(kept))
        html = (out / "report.html").read_text()
        assert ("most similar representative" in html) == (mode == "representative")
        assert ("Connected components:" in html) == (mode == "components")
    (pc, rc), bad_c, st_c, kept_c = got["components"]
    (pr, rr), bad_r, st_r, kept_r = got["representative"]
    print(f"\nhard set, {len(items)} texts: components P {pc:.3f} R {rc:.3f} ({bad_c} removed records below 0.8 to "
          f"their kept one, {kept_c} kept); representative P {pr:.3f} R {rr:.3f} ({bad_r}, {kept_r} kept, "
          f"{st_r['cc_rounds']} rounds, sizes {st_r['cluster_sizes']})")
    assert st_r["cluster"] == "representative" and st_c["cluster"] == "components"
    assert bad_r == 0 < bad_c and kept_r > kept_c and pr == 1.0
    assert st_r["cc_converged"] and st_r["cc_unresolved_nodes"] == 0 and st_r["cluster_sizes"]
    assert score(items, cluster_texts(items, MinHashDedupConfig(cluster="representative"))) == pytest.approx((pr, rr))
