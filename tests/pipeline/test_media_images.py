"""The image stages on the hostile image samples: the stage alone rejects what the reader would
have dead-lettered, the kept shards are the same on every runner, and the demo corpus plants
one image per content defect. The whole hostile corpus (images and audio in one tar, every
media stage, memory bounded) is tests/pipeline/test_media_hostile.py."""

from __future__ import annotations

import json
import os

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.util import assert_that

from winnow.demo.hostile_media import image_samples
from winnow.format import Manifest
from winnow.pipeline.configure import load_config
from winnow.pipeline.records import make_record
from winnow.pipeline.runner import run
from winnow.pipeline.stages.image_quality import ImageQualityStage

from tests.pipeline.batches import create_batches
from tests.pipeline import test_runners

worker_pool = test_runners.worker_pool  # the Beam worker pool on loopback (a module fixture)


@pytest.fixture(scope="module")
def samples():
    return image_samples()


def _table(out, entries):
    tables = [pa.ipc.open_file(os.path.join(out, e.path)).read_all() for e in entries]
    return [r for t in tables for r in t.to_pylist()]


def _outputs(out):
    m = Manifest.loads(open(os.path.join(out, "index.json")).read())
    return _table(out, m.shards), _table(out, m.rejects), _table(out, m.dead_letter)


def _key(source: str) -> str:
    return source.rsplit("#", 1)[1]


def test_stage_alone_rejects_what_the_reader_would_have_dead_lettered(tmp_path, samples):
    """Without the reader's structural check (records from another tool), the stage itself
    rejects the bad-CRC PNG and the 20,000 x 20,000 bomb; a value that is not bytes at all is
    an unexpected failure and dead-letters alone."""
    recs = [make_record(source=s.key, text="caption", image=s.members[0][1], modality="image_text") for s in samples]
    odd = make_record(source="odd", text="caption", image=b"x", modality="image_text")
    odd["image"] = "not bytes"  # bytes(str) raises TypeError: not a property of image data, a failure
    recs.append(odd)
    recs.append(make_record(source="text", text="just text"))
    p = beam.Pipeline(runner="FnApiRunner")
    out = create_batches(p, recs, size=5) | ImageQualityStage()
    got: dict[str, list] = {}

    def grab(name):
        def check(rows):
            got[name] = sorted((r["source"], r.get("reject_reason"), r.get("image_width")) for r in rows)
            (tmp_path / f"{name}.json").write_text(json.dumps(got[name]))
        return check

    for name, pc in (("kept", out.kept), ("rejected", out.rejected), ("dead", out.dead)):
        assert_that(pc | f"{name}Rows" >> beam.FlatMap(lambda b: b.rows), grab(name), label=f"{name}Check")
    p.run().wait_until_finish()
    got = {n: json.loads((tmp_path / f"{n}.json").read_text()) for n in ("kept", "rejected", "dead")}
    reasons = {src: reason for src, reason, _ in got["rejected"]}
    assert reasons["bad-png-crc"] == "image_quality_corrupt"
    assert reasons["bad-bomb-20000"] == "image_quality_too_many_pixels"
    for s in samples:
        if s.expect == "rejected":
            assert reasons[s.key] == s.reason, s.key
        if s.expect == "kept":
            assert s.key in {src for src, _, _ in got["kept"]}, s.key
    assert [src for src, _, _ in got["dead"]] == ["odd"]
    assert ("text", None, None) in [tuple(x) for x in got["kept"]]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_identical_image_shards_across_runners(tmp_path, samples, worker_pool):
    import random

    from winnow.demo.clip_model import build_random_clip
    from winnow.demo.images import draw_image, tar_bytes

    model = build_random_clip(tmp_path / "clip")
    rng = random.Random(3)
    members = [(f"{s.key}.{ext}", data) for s in samples for ext, data in s.members]
    for i in range(60):
        data, ext, cap, _ = draw_image(rng)
        members += [(f"pair-{i:04d}.{ext}", data), (f"pair-{i:04d}.txt", cap.encode())]
    src = tmp_path / "in.tar"
    src.write_bytes(tar_bytes(members))
    overrides = ["sink.shard_bytes=40KB", "sink.batch_bytes=8KB", f"image_text_score.model_dir={model}",
                 "image_text_score.device=cpu", "image_text_score.keep_fraction=0.7", "image_text_score.batch_size=8",
                 "image_quality.max_side=96"]
    setups = {
        "fnapi": dict(workers=1, beam_args=[]),
        "multiprocess2": dict(workers=2, beam_args=[]),
        "portable": dict(workers=1, beam_args=[
            "--runner=PortableRunner", "--job_endpoint=embed",
            "--environment_type=EXTERNAL", f"--environment_config={worker_pool}"]),
    }
    results = {}
    for name, kw in setups.items():
        out = str(tmp_path / name)
        res = run(load_config(input=[str(src)], output=out, overrides=overrides,
                              stages=["image_quality", "image_dedup", "image_text_score"]), **kw)
        assert res.stats["balanced"], name
        m = json.loads(open(os.path.join(out, "index.json")).read())
        results[name] = ({k: [(s["path"], s["rows"], s["xxh3_128"]) for s in m[k]] for k in ("shards", "rejects", "dead_letter")},
                         m["counts"])
    base_files, base_counts = results["fnapi"]
    assert len(base_files["shards"]) > 1
    for name, (files, counts) in results.items():
        assert counts == base_counts, name
        assert files == base_files, f"{name} wrote different shards than the in-process runner"


@pytest.mark.slow
def test_the_demo_corpus_plants_one_image_per_content_defect(tmp_path):
    from winnow.demo.corpus import build_demo_corpus

    corpus = build_demo_corpus(str(tmp_path / "corpus"), scale=0.02)
    assert corpus.planted["mismatched_captions"] >= 2
    (tar,) = [f.path for f in corpus.files if f.kind == "tar"]
    out = str(tmp_path / "out")
    stats = run(load_config(input=[tar], output=out, stages=["image_quality"])).stats
    _, rejected, _ = _outputs(out)
    got = {_key(r["source"]): r["reject_reason"] for r in rejected}
    # the drawn pictures do not depend on the machine: exactly the planted defects are dropped
    assert got == {"zz-defect-blank": "image_quality_blank", "zz-defect-blurred": "image_quality_blurry",
                   "zz-defect-tiny": "image_quality_too_small", "zz-defect-extreme_aspect": "image_quality_aspect_ratio"}
    assert all(corpus.planted[f"{n}_image"] == 1 for n in ("blank", "blurred", "tiny", "extreme_aspect"))
    assert stats["balanced"]
