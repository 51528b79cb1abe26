"""The ``image_text_score`` stage: a tiny randomly initialised CLIP with its own byte-level
tokenizer built offline in tmp_path, loaded through the real path
(``from_pretrained(local_files_only=True)``, the Pillow/numpy image processor) and run through
Beam's RunInference."""

from __future__ import annotations

import importlib.util
import io
import json
import random

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that
from PIL import Image

from winnow.demo.clip_model import build_random_clip
from winnow.demo.images import draw_image, tar_bytes
from winnow.errors import ConfigError
from winnow.filters.clip import ClipConfig, ClipScorer, _load_rgb, clipscore, fast_image_prep
from winnow.filters.domain import keep_count
from winnow.format import Manifest
from winnow.pipeline.configure import load_config
from winnow.pipeline.records import make_record
from winnow.pipeline.runner import run
from winnow.pipeline.stages.image_text import ImageTextScoreStage

from tests.pipeline.batches import create_batches


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_random_clip(tmp_path_factory.mktemp("clip") / "model")


def pairs(n, seed=1):
    rng = random.Random(seed)
    return [draw_image(rng) for _ in range(n)]


def records(n, seed=1):
    return [make_record(source=f"p:{i}", text=cap, image=data, modality="image_text")
            for i, (data, _, cap, _) in enumerate(pairs(n, seed))]


def counters(result):
    out = {}
    for c in result.metrics().query(MetricsFilter().with_namespace("winnow"))["counters"]:
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + c.committed
    return out


def _collect(pcoll, label, path):
    def write(items):
        path.write_text(json.dumps(sorted((json.loads(i) for i in items), key=lambda r: r["id"])))

    def as_json(b):
        return [json.dumps({k: v for k, v in r.items() if k != "image"}, default=str) for r in b.rows]

    assert_that(pcoll | f"{label}Json" >> beam.FlatMap(as_json), write, label=f"{label}Write")


def run_stage(tmp_path, recs, cfg, size=7):
    p = beam.Pipeline(runner="FnApiRunner")
    out = create_batches(p, recs, size=size) | ImageTextScoreStage(cfg)
    files = {k: tmp_path / f"{k}.json" for k in ("kept", "rejected", "dead")}
    _collect(out.kept, "Kept", files["kept"])
    _collect(out.rejected, "Rejected", files["rejected"])
    _collect(out.dead, "Dead", files["dead"])
    result = p.run()
    result.wait_until_finish()
    return ({k: json.loads(f.read_text()) for k, f in files.items()}, counters(result))


def test_no_torchvision_and_the_pillow_processor():
    assert importlib.util.find_spec("torchvision") is None  # the processor must work without it
    assert importlib.util.find_spec("open_clip") is None


def test_config_errors(tmp_path, model_dir):
    with pytest.raises(ConfigError) as e:
        ClipConfig()
    assert e.value.key == "image_text_score.model_dir"
    with pytest.raises(ConfigError) as e:
        ClipConfig(model_dir=str(tmp_path / "nowhere"))
    assert e.value.key == "image_text_score.model_dir"
    with pytest.raises(ConfigError) as e:
        ClipConfig(model_dir=model_dir, threshold=0.5, keep_fraction=0.5)
    assert e.value.key == "image_text_score.keep_fraction"
    with pytest.raises(ConfigError) as e:
        ClipConfig(model_dir=model_dir, batch_bytes=0)
    assert e.value.key == "image_text_score.batch_bytes"
    with pytest.raises(ConfigError) as e:
        ClipConfig(model_dir=model_dir, preprocess_threads=-1)
    assert e.value.key == "image_text_score.preprocess_threads"


def test_cuda_requested_without_cuda_is_a_config_error(model_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError) as e:
        ClipScorer(ClipConfig(model_dir=model_dir, device="cuda"))
    assert e.value.key == "image_text_score.device" and "no CUDA" in str(e.value)


def test_scores_are_clipscore_of_the_cosine_and_batching_does_not_change_them(model_dir):
    ps = [(d, c) for d, _, c, _ in pairs(20)]
    one = ClipScorer(ClipConfig(model_dir=model_dir, device="cpu", batch_size=1)).score(ps)
    many = ClipScorer(ClipConfig(model_dir=model_dir, device="cpu", batch_size=8, batch_bytes=4000)).score(ps)
    assert max(abs(a[1] - b[1]) for a, b in zip(one, many)) < 1e-5
    assert all(s == pytest.approx(clipscore(c)) and -1.0 <= c <= 1.0 for s, c in one)
    assert len({round(c, 5) for _, c in one}) > 10  # the random model does tell pairs apart
    # the caption matters: the same image with another caption scores differently
    other = ClipScorer(ClipConfig(model_dir=model_dir, device="cpu")).score([(ps[0][0], "zzzz qqqq")])
    assert abs(other[0][1] - one[0][1]) > 1e-4


def test_fixed_shapes_make_scores_independent_of_grouping(model_dir):
    ps = [(d, c) for d, _, c, _ in pairs(13, seed=5)]
    s = ClipScorer(ClipConfig(model_dir=model_dir, device="cpu", batch_size=8))
    whole = s.score(ps)
    parts = s.score(ps[:3]) + s.score(ps[3:5]) + s.score(ps[5:])
    assert whole == parts  # exactly: the shards must be byte-identical whatever the bundles


def test_byte_budget_cuts_model_calls(model_dir):
    s = ClipScorer(ClipConfig(model_dir=model_dir, device="cpu", batch_size=10, batch_bytes=1000))
    assert s._chunks([400, 400, 400, 2000, 10]) == [[0, 1], [2], [3], [4]]
    assert ClipScorer(ClipConfig(model_dir=model_dir, device="cpu", batch_size=2))._chunks([1] * 5) == [[0, 1], [2, 3], [4]]


def test_threshold_keeps_at_or_above_and_counts_balance(tmp_path, model_dir):
    recs = records(30)
    scores = [s for s, _ in ClipScorer(ClipConfig(model_dir=model_dir, device="cpu")).score(
        [(r["image"], r["text"]) for r in recs])]
    threshold = sorted(scores)[len(scores) // 2]
    recs.append(make_record(source="t:0", text="only text"))  # passes through unscored
    recs.append(make_record(source="i:0", text=None, image=recs[0]["image"], modality="image"))
    cfg = ClipConfig(model_dir=model_dir, device="cpu", batch_size=8, records_per_call=16, threshold=threshold)
    out, c = run_stage(tmp_path, recs, cfg)
    by_id = {r["id"]: s for r, s in zip(recs, scores)}
    assert len(out["kept"]) + len(out["rejected"]) == len(recs) and not out["dead"]
    assert len(out["rejected"]) == sum(s < threshold for s in scores)
    for r in out["kept"]:
        if r["modality"] == "image_text":
            assert r["image_text_score"] == pytest.approx(by_id[r["id"]], abs=1e-5) and r["image_text_score"] >= threshold
        else:
            assert r["image_text_score"] is None and r["image_text_cosine"] is None
    for r in out["rejected"]:
        assert (r["reject_stage"], r["reject_reason"]) == ("image_text_score", "image_text_score_below_threshold")
    assert c["image_text_score/not_scored"] == 2
    assert c["image_text_score/kept"] == len(out["kept"])


def test_keep_fraction_is_exact_and_a_bad_image_dead_letters_alone(tmp_path, model_dir):
    recs = records(25, seed=4)
    recs[3] = make_record(source="p:bad", text="a red circle", image=b"\x89PNG\r\n\x1a\n" + bytes(40), modality="image_text")
    cfg = ClipConfig(model_dir=model_dir, device="cpu", batch_size=4, keep_fraction=0.4)
    out, c = run_stage(tmp_path, recs, cfg, size=6)
    assert [r["source"] for r in out["dead"]] == ["p:bad"]
    assert "does not decode" in out["dead"][0]["error"] and "0x" not in out["dead"][0]["error"]
    assert len(out["kept"]) == keep_count(24, 0.4) == 10 and len(out["rejected"]) == 14
    assert min(r["image_text_score"] for r in out["kept"]) >= max(r["image_text_score"] for r in out["rejected"])
    assert c["image_text_score/dead_letter"] == 1


def _awkward_images(n, seed=11):
    """Drawn pictures re-encoded at odd sizes and in awkward modes (L, RGBA, P, CMYK JPEG,
    16-bit greyscale, EXIF-rotated JPEG), so the fast path meets what the processor meets."""
    rng = random.Random(seed)
    out = []
    for i, (data, _, cap, _) in enumerate(pairs(n, seed)):
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB").resize((rng.randint(33, 300), rng.randint(33, 300)))
        kind = i % 7
        buf = io.BytesIO()
        if kind == 0:
            im.save(buf, format="JPEG", quality=85)
        elif kind == 1:
            im.convert("L").save(buf, format="PNG")
        elif kind == 2:
            im.convert("RGBA").save(buf, format="PNG")
        elif kind == 3:
            im.convert("P").save(buf, format="PNG")
        elif kind == 4:
            im.convert("CMYK").save(buf, format="JPEG")
        elif kind == 5:
            im.convert("I;16").save(buf, format="PNG")
        else:
            exif = Image.Exif()
            exif[0x0112] = 6  # rotated 90 degrees
            im.save(buf, format="JPEG", exif=exif.tobytes())
        out.append((buf.getvalue(), cap))
    return out


def test_fast_path_gives_the_processors_pixels_and_scores(model_dir):
    """The fast path (Pillow resize + crop in the pool, the processor's value table on the
    device) and the transformers processor give the same float32 pixel values bit for bit, so
    the cosines agree exactly: measured max |fast - processor| = 0.0 (tolerance 0, not a
    bound: same pixels, same model call shapes)."""
    import torch

    ps = _awkward_images(40)
    fast = ClipScorer(ClipConfig(model_dir=model_dir, device="cpu", batch_size=16))
    slow = ClipScorer(ClipConfig(model_dir=model_dir, device="cpu", batch_size=16, fast_preprocess=False))
    assert fast.prep is not None and slow.prep is None
    images = [_load_rgb(d, 10**9, fast.side) for d, _ in ps]
    b = slow.pixel_values(images)
    # the CPU path: the pool threads look the values up (numpy); the CUDA path: uint8 crops
    # looked up by torch on the device (run here on the CPU)
    on_cpu = fast.pixel_values([fast._prepare(im) for im in images])
    on_device = fast.pixel_values([fast.prep.prepare(im) for im in images])
    for a in (on_cpu, on_device):
        assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape == (len(ps), 3, 32, 32)
        assert torch.equal(a, b)
    got, want = fast.score(ps), slow.score(ps)
    assert max(abs(x[1] - y[1]) for x, y in zip(got, want)) == 0.0
    assert got == want
    # the public one-call API agrees too
    assert fast.cosine(images[:5], [c for _, c in ps[:5]]) == slow.cosine(images[:5], [c for _, c in ps[:5]])
    fast.close()
    slow.close()


def _processor(**kw):
    from winnow.demo.clip_model import image_processor_class

    return image_processor_class()(**kw)


@pytest.mark.parametrize("kw", [
    # SigLIP-style: a square resize, no crop, mean/std 0.5, bilinear
    dict(size={"height": 40, "width": 48}, do_center_crop=False, image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=2),
    # CLIP with an odd crop inside a larger shortest edge, nearest filter, no normalisation
    dict(size={"shortest_edge": 37}, crop_size={"height": 31, "width": 29}, do_normalize=False, resample=0),
    # a square resize then a crop, scalar mean/std, lanczos
    dict(size={"height": 50, "width": 50}, do_center_crop=True, crop_size={"height": 44, "width": 44},
         image_mean=0.3, image_std=0.2, resample=1),
])
def test_fast_plan_matches_other_processor_configs(kw):
    import numpy as np

    proc = _processor(**kw)
    plan = fast_image_prep(proc)
    assert plan is not None
    images = [_load_rgb(d, 10**9, 64) for d, _ in _awkward_images(14, seed=2)]
    want = proc(images=images, return_tensors="np")["pixel_values"]
    prepared = np.stack([plan.prepare(im) for im in images])
    got = plan.table[np.arange(3), prepared].transpose(0, 3, 1, 2)
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got, want)


@pytest.mark.parametrize("kw", [
    dict(do_resize=False),                                              # sizes would differ
    dict(size={"shortest_edge": 28}, crop_size={"height": 32, "width": 32}),  # the crop pads
    dict(size={"shortest_edge": 32, "longest_edge": 40}),                # capped long side
    dict(size={"shortest_edge": 32}, do_center_crop=False),              # no fixed size
    dict(do_pad=True),
    dict(do_rescale=False, do_normalize=False),                          # uint8 to the model
])
def test_fast_plan_declines_what_it_does_not_cover(kw):
    assert fast_image_prep(_processor(**kw)) is None


def test_a_processor_the_fast_path_does_not_cover_runs_the_processor(tmp_path, model_dir):
    import shutil

    d = tmp_path / "padding-crop"
    shutil.copytree(model_dir, d)
    cfg_path = d / "processor_config.json"
    conf = json.loads(cfg_path.read_text())
    conf["image_processor"]["size"] = {"shortest_edge": 28}  # the 32-pixel crop pads: not covered
    cfg_path.write_text(json.dumps(conf))
    s = ClipScorer(ClipConfig(model_dir=str(d), device="cpu", batch_size=8))
    assert s.prep is None
    ps = _awkward_images(10, seed=3)
    got = s.score(ps)
    images = [_load_rgb(x, 10**9, s.side) for x, _ in ps]
    want = s.cosine(images[:8], [c for _, c in ps[:8]]) + s.cosine(images[8:], [c for _, c in ps[8:]])
    assert [c for _, c in got] == want
    s.close()


def test_thread_pool_is_deterministic_and_chunks_as_before(model_dir, monkeypatch):
    ps = _awkward_images(30, seed=7)
    bad = b"\x89PNG\r\n\x1a\n" + bytes(40)
    ps[4] = (bad, "a broken picture")
    ps[17] = (b"not an image at all", "another")
    runs = {}
    for threads in (1, 2, 5):
        s = ClipScorer(ClipConfig(model_dir=model_dir, device="cpu", batch_size=6, batch_bytes=8000,
                                  preprocess_threads=threads, fixed_shapes=False))
        calls = []
        real = s._cosine_tensor

        def spy(images, texts, real=real, calls=calls):
            calls.append(len(images))
            return real(images, texts)

        monkeypatch.setattr(s, "_cosine_tensor", spy)
        out = s.score(ps)
        runs[threads] = [r if isinstance(r, tuple) else str(r) for r in out]
        # model calls are cut from the decodable pairs in order, by count and bytes, as _chunks says
        ok = [len(d) for i, (d, _) in enumerate(ps) if i not in (4, 17)]
        assert calls == [len(c) for c in s._chunks(ok)]
        s.close()
    assert runs[1] == runs[2] == runs[5]
    assert runs[1][4].startswith("image does not decode") and runs[1][17].startswith("image does not decode")
    assert "0x" not in runs[1][17]  # no per-process addresses in error texts (shards must be identical)
    assert sum(isinstance(r, tuple) for r in runs[1]) == 28


@pytest.mark.slow
def test_image_text_stage_through_the_runner_offline(tmp_path, model_dir, monkeypatch):
    from tests.pipeline.test_text_filter_stages import _block_network

    attempts = _block_network(monkeypatch)
    members = []
    for i, (data, ext, cap, _) in enumerate(pairs(24, seed=9)):
        members += [(f"s{i:03d}.{ext}", data), (f"s{i:03d}.txt", cap.encode())]
    src = tmp_path / "pairs.tar"
    src.write_bytes(tar_bytes(members))
    out = tmp_path / "out"
    cfg = load_config(input=[str(src)], output=str(out), stages=["image_quality", "image_text_score"],
                      overrides=[f"image_text_score.model_dir={model_dir}", "image_text_score.keep_fraction=0.5",
                                 "image_text_score.device=cpu"])
    stats = run(cfg).stats
    assert attempts == []  # model, tokenizer and processor load from the directory; nothing connects out
    assert stats["balanced"] and stats["dead_letter"] == 0 and stats["read"] == 24
    m = Manifest.loads((out / "index.json").read_text())
    kept = pa.concat_tables(pa.ipc.open_file(str(out / s.path)).read_all() for s in m.shards).to_pylist()
    rej = [r for s in m.rejects for r in pa.ipc.open_file(str(out / s.path)).read_all().to_pylist()]
    clip_rej = [r for r in rej if r["reject_stage"] == "image_text_score"]
    scored = len(kept) + len(clip_rej)
    assert len(kept) == keep_count(scored, 0.5)
    assert all(r["image_width"] is not None for r in kept)
    with Image.open(io.BytesIO(kept[0]["image"])) as im:
        assert im.size == (kept[0]["image_width"], kept[0]["image_height"])
    sel = stats["stage_stats"]["image_text_score"]["selection"]
    assert sel["scored"] == scored and sel["keep_fraction"] == 0.5
    html = (out / "report.html").read_text()
    assert "Image-text agreement (CLIP)" in html and "Image quality" in html
