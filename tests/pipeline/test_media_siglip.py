"""``image_text_score`` with a SigLIP model: a tiny randomly initialised ``SiglipModel`` with a
sentencepiece ``SiglipTokenizer`` and the Pillow image processor, built offline, loaded
through the stage's real path and run through Beam's RunInference; its cosines equal those of
transformers' own ``SiglipProcessor`` + ``SiglipModel`` forward (the reference way to call it).
Other model types are a ConfigError."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from winnow.demo.clip_model import build_random_siglip
from winnow.errors import ConfigError
from winnow.filters.clip import ClipConfig, ClipScorer, clipscore
from winnow.filters.domain import keep_count
from winnow.pipeline.records import make_record

from tests.pipeline.test_image_text_stage import pairs, run_stage


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory):
    return build_random_siglip(tmp_path_factory.mktemp("siglip") / "model")


def _reference_cosines(model_dir, ps):
    """transformers' reference: SiglipProcessor (max_length padding) and the model's forward, on
    the images as the stage decodes them (JPEGs at a reduced scale near the model's side)."""
    import torch
    from transformers import SiglipModel, SiglipProcessor

    from winnow.filters.clip import _load_rgb

    proc = SiglipProcessor.from_pretrained(model_dir, local_files_only=True)
    model = SiglipModel.from_pretrained(model_dir, local_files_only=True).eval()
    images = [_load_rgb(d, 10**9, 32) for d, _ in ps]
    inputs = proc(text=[c for _, c in ps], images=images, padding="max_length", truncation=True, return_tensors="pt")
    with torch.inference_mode():
        out = model(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"])
    return (out.image_embeds * out.text_embeds).sum(-1).tolist()


def test_siglip_scores_equal_the_reference_forward(siglip_dir):
    ps = [(d, c) for d, _, c, _ in pairs(12, seed=3)]
    for fast in (True, False):
        s = ClipScorer(ClipConfig(model_dir=siglip_dir, device="cpu", batch_size=5, fast_preprocess=fast))
        try:
            assert s.kind == "siglip" and (s.prep is not None) == fast
            got = s.score(ps)
        finally:
            s.close()
        ref = _reference_cosines(siglip_dir, ps)
        assert max(abs(c - r) for (_, c), r in zip(got, ref)) < 1e-5, fast
        assert all(sc == pytest.approx(clipscore(c)) for sc, c in got)
    assert len({round(c, 5) for _, c in got}) > 6  # the random model tells pairs apart


def test_siglip_through_the_stage(tmp_path, siglip_dir):
    recs = [make_record(source=f"p:{i}", text=cap, image=data, modality="image_text")
            for i, (data, _, cap, _) in enumerate(pairs(20, seed=6))]
    recs.append(make_record(source="p:bad", text="a caption", image=b"\x89PNG\r\n\x1a\n" + bytes(40), modality="image_text"))
    recs.append(make_record(source="t", text="only text"))
    cfg = ClipConfig(model_dir=siglip_dir, device="cpu", batch_size=4, keep_fraction=0.5)
    out, counts = run_stage(tmp_path, recs, cfg, size=6)
    assert [r["source"] for r in out["dead"]] == ["p:bad"]
    scored_kept = [r for r in out["kept"] if r["image_text_score"] is not None]
    assert len(scored_kept) == keep_count(20, 0.5) and len(out["rejected"]) == 10
    assert {r["reject_reason"] for r in out["rejected"]} == {"image_text_score_below_threshold"}
    assert min(r["image_text_cosine"] for r in scored_kept) >= max(r["image_text_cosine"] for r in out["rejected"])
    assert [r["source"] for r in out["kept"] if r["image_text_score"] is None] == ["t"]


def test_other_model_types_are_a_config_error(tmp_path, siglip_dir):
    d = tmp_path / "blip"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "blip"}))
    with pytest.raises(ConfigError, match="model_type is 'blip'"):
        ClipConfig(model_dir=str(d))
    (d / "config.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        ClipConfig(model_dir=str(d))
    assert ClipConfig(model_dir=siglip_dir).model_dir == siglip_dir
