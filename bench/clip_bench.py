"""The ``image_text_score`` stage against the same CLIP model called directly, in one run.

A CLIP with ViT-B/16's shape (vision 12 layers x 768 on 224-pixel images in 16-pixel patches,
text 12 x 512, projection 512) and random weights is written to a temporary directory with a
byte-level tokenizer and the Pillow/numpy image processor (:mod:`winnow.demo.clip_model`);
nothing is downloaded. The pairs are generated pictures (shapes on backgrounds, 256-384
pixels, PNG and JPEG) with captions naming what was drawn. Measured, same pairs, same batch
size, same dtype and device, in this order:

* ``model only``: the model on pre-processed tensors (the GPU's ceiling for this shape);
* ``plain loop``: transformers directly, batches of ``--batch-size`` pairs in input order:
  decode with Pillow, the image processor, the tokenizer, ``get_image_features`` and
  ``get_text_features``, cosine, copy to the host;
* ``preprocessing only``: the stage's image path alone (:class:`~winnow.filters.clip.ClipScorer`'s
  thread pool: decode, resize and crop to uint8, then stack and normalise on the device) on
  every image, no model: what the CPU side can feed;
* ``scorer direct``: the stage's :class:`~winnow.filters.clip.ClipScorer` called directly (no
  Beam) on calls of ``records_per_call`` pairs, as RunInference hands them over;
* ``stage``: the records as Records batches through ``ImageTextScoreStage`` (Beam
  RunInference + the StageFn steps + the exact keep-fraction cut + the report statistics) on
  the FnApiRunner, end to end, and without its model load (RunInference's
  ``load_model_latency_milli_secs``). The batches are read from a local file inside the
  pipeline (pickled Arrow IPC), as a reader would, not pickled into the pipeline graph by
  ``beam.Create``.

    python bench/clip_bench.py                  # CUDA when present (bf16), else CPU
    python bench/clip_bench.py --small          # a tiny model and 96 pairs (CPU smoke run)
    python bench/clip_bench.py --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time


def make_pairs(n: int, pool: int = 256) -> list[tuple[bytes, str]]:
    """``n`` (image bytes, caption) pairs drawn from a pool of ``pool`` generated pictures."""
    import io

    from PIL import Image

    from winnow.demo.images import draw_image

    rng = random.Random(0)
    out = []
    for _ in range(min(n, pool)):
        data, ext, caption, _ = draw_image(rng)
        with Image.open(io.BytesIO(data)) as im:
            big = im.convert("RGB").resize((rng.choice((256, 320, 384)), rng.choice((256, 320, 384))))
        buf = io.BytesIO()
        big.save(buf, format="PNG" if ext == "png" else "JPEG", **({} if ext == "png" else {"quality": 90}))
        out.append((buf.getvalue(), caption))
    return [out[i % len(out)] for i in range(n)]


def model_only(model_dir: str, pairs, batch_size: int, device, dtype) -> float:
    import torch
    from transformers import AutoTokenizer, CLIPModel

    from winnow.demo.clip_model import image_processor_class
    from winnow.filters.clip import _load_rgb

    proc = image_processor_class().from_pretrained(model_dir, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = CLIPModel.from_pretrained(model_dir, local_files_only=True).to(device=device, dtype=dtype).eval()
    side = model.config.vision_config.image_size
    pb = pairs[:batch_size]
    pix = proc(images=[_load_rgb(d, 10**9, side) for d, _ in pb], return_tensors="pt")["pixel_values"].to(device, dtype)
    ids = tok([c for _, c in pb], padding="max_length", truncation=True, max_length=77, return_tensors="pt").to(device)
    steps = max(3, len(pairs) // batch_size)

    def step():
        with torch.inference_mode():
            a = model.get_image_features(pixel_values=pix)
            b = model.get_text_features(**ids)
            a = getattr(a, "pooler_output", a)
            b = getattr(b, "pooler_output", b)
            return torch.nn.functional.cosine_similarity(a.float(), b.float()).cpu()

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - t)


def plain_loop(model_dir: str, pairs, batch_size: int, device, dtype) -> tuple[float, list[float]]:
    import io

    import torch
    from PIL import Image, ImageOps
    from transformers import AutoTokenizer, CLIPModel

    from winnow.demo.clip_model import image_processor_class

    proc = image_processor_class().from_pretrained(model_dir, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = CLIPModel.from_pretrained(model_dir, local_files_only=True).to(device=device, dtype=dtype).eval()

    def load(data: bytes):
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return ImageOps.exif_transpose(im).convert("RGB")

    def go(ps):
        out = []
        for s in range(0, len(ps), batch_size):
            chunk = ps[s:s + batch_size]
            pix = proc(images=[load(d) for d, _ in chunk], return_tensors="pt")["pixel_values"]
            ids = tok([c for _, c in chunk], padding="max_length", truncation=True, max_length=77, return_tensors="pt")
            with torch.inference_mode():
                a = model.get_image_features(pixel_values=pix.to(device, dtype, non_blocking=True))
                b = model.get_text_features(input_ids=ids["input_ids"].to(device), attention_mask=ids["attention_mask"].to(device))
                a = getattr(a, "pooler_output", a).float()
                b = getattr(b, "pooler_output", b).float()
                out += torch.nn.functional.cosine_similarity(a, b).cpu().tolist()
        return out

    go(pairs[: batch_size * 2])  # warm-up (kernels, allocator)
    t = time.perf_counter()
    cos = go(pairs)
    return time.perf_counter() - t, cos


def prep_only(model_dir: str, pairs, batch_size: int, device: str) -> float:
    from winnow.filters.clip import ClipConfig, ClipScorer

    s = ClipScorer(ClipConfig(model_dir=model_dir, batch_size=batch_size, device=device))
    try:
        def go(ps):
            for i in range(0, len(ps), batch_size):
                items = list(s._pool.map(s._load, [d for d, _ in ps[i:i + batch_size]]))
                s.pixel_values(items)
            if s.device.type == "cuda":
                import torch

                torch.cuda.synchronize()

        go(pairs[:batch_size])
        t = time.perf_counter()
        go(pairs)
        return len(pairs) / (time.perf_counter() - t)
    finally:
        s.close()


def scorer_direct(model_dir: str, pairs, batch_size: int, device: str) -> tuple[float, list[float]]:
    from winnow.filters.clip import ClipConfig, ClipScorer

    cfg = ClipConfig(model_dir=model_dir, batch_size=batch_size, device=device)
    s = ClipScorer(cfg)
    try:
        s.score(pairs[: batch_size * 2])  # warm-up
        t = time.perf_counter()
        out = []
        for i in range(0, len(pairs), cfg.records_per_call):
            out += s.score(pairs[i:i + cfg.records_per_call])
        return time.perf_counter() - t, [c for _, c in out]
    finally:
        s.close()


def stage_run(model_dir: str, pairs, batch_size: int, device: str) -> dict:
    from stage_timing import run_model_stage

    from winnow.filters.clip import ClipConfig
    from winnow.pipeline.batch import BATCH_RECORDS, Records
    from winnow.pipeline.records import make_record
    from winnow.pipeline.stages.image_text import ImageTextScoreStage

    recs = [make_record(source=f"bench:{i}", text=c, image=d, modality="image_text") for i, (d, c) in enumerate(pairs)]
    batches = [Records(recs[i:i + BATCH_RECORDS]) for i in range(0, len(recs), BATCH_RECORDS)]
    cfg = ClipConfig(model_dir=model_dir, batch_size=batch_size, device=device, keep_fraction=0.5)
    res = run_model_stage(ImageTextScoreStage(cfg), batches, "source", "image_text_cosine",
                          "winnow:image_text_score/run_inference")
    return {"wall_s": res["wall_s"], "load_s": res["load_s"], "infer_s": res["infer_s"], "dead": res["dead"],
            "cos": [res["values"].get(r["source"]) for r in recs]}


def _threads() -> int:
    from winnow.filters.clip import _prep_threads

    return _prep_threads(0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=0, help="image-text pairs (default 4096 on CUDA, 256 on CPU, 96 with --small)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--small", action="store_true", help="a tiny 2-layer model instead of ViT-B/16's shape")
    ap.add_argument("--json", default="", help="also write the figures here")
    a = ap.parse_args()
    import torch

    from winnow.demo.clip_model import build_random_clip

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    n = a.pairs or (96 if a.small else 4096 if cuda else 256)
    t = time.perf_counter()
    pairs = make_pairs(n)
    made = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        build_random_clip(d, "tiny" if a.small else "vit-b-16")
        built = time.perf_counter() - t
        print(f"model written in {built:.1f} s; {n} pairs made in {made:.1f} s "
              f"({sum(len(x) for x, _ in pairs) / n / 1024:.1f} KB/image mean)", flush=True)
        ceiling = model_only(d, pairs, a.batch_size, device, dtype)
        print(f"  (model only: {ceiling:.1f} pairs/s)", flush=True)
        plain_s, plain_cos = plain_loop(d, pairs, a.batch_size, device, dtype)
        print(f"  (plain loop: {n / plain_s:.1f} pairs/s)", flush=True)
        prep = prep_only(d, pairs, a.batch_size, "cuda" if cuda else "cpu")
        print(f"  (preprocessing only: {prep:.1f} pairs/s)", flush=True)
        direct_s, direct_cos = scorer_direct(d, pairs, a.batch_size, "cuda" if cuda else "cpu")
        print(f"  (scorer direct: {n / direct_s:.1f} pairs/s)", flush=True)
        st = stage_run(d, pairs, a.batch_size, "cuda" if cuda else "cpu")
    diffs = [abs(x - y) for x, y in zip(plain_cos, st["cos"]) if y is not None]
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    res = {
        "device": name, "dtype": str(dtype).replace("torch.", ""),
        "model": "CLIP " + ("tiny (2 layers, hidden 32)" if a.small else "ViT-B/16 shape, random weights"),
        "pairs": n, "batch_size": a.batch_size, "model_build_s": round(built, 2),
        "model_only_pairs_per_s": ceiling, "plain_loop_pairs_per_s": n / plain_s,
        "preprocessing_only_pairs_per_s": prep, "scorer_direct_pairs_per_s": n / direct_s,
        "preprocess_threads": _threads(),
        "stage_pairs_per_s": n / st["wall_s"],
        "stage_pairs_per_s_without_model_load": n / max(1e-9, st["wall_s"] - st["load_s"]),
        "stage_inference_pairs_per_s": n / max(1e-9, st["infer_s"]),
        "stage_wall_s": st["wall_s"], "stage_run_inference_s": st["infer_s"], "stage_model_load_s": st["load_s"],
        "stage_dead": st["dead"], "scored": len(diffs), "max_abs_cosine_diff_vs_plain": max(diffs) if diffs else None,
        "max_abs_cosine_diff_direct_vs_plain": max(abs(x - y) for x, y in zip(plain_cos, direct_cos)),
    }
    res["ratio_stage_vs_plain"] = res["stage_pairs_per_s"] / res["plain_loop_pairs_per_s"]
    res["ratio_stage_without_load_vs_plain"] = res["stage_pairs_per_s_without_model_load"] / res["plain_loop_pairs_per_s"]
    print(f"image_text_score: {res['model']} on {name} ({res['dtype']}), {n} pairs, batch {a.batch_size}")
    print(f"  model only (tensors ready)   {ceiling:9.1f} pairs/s")
    print(f"  plain loop (decode+process)  {res['plain_loop_pairs_per_s']:9.1f} pairs/s")
    print(f"  preprocessing only (pool)    {prep:9.1f} pairs/s   ({res['preprocess_threads']} threads, no model)")
    print(f"  scorer direct (no Beam)      {res['scorer_direct_pairs_per_s']:9.1f} pairs/s   "
          f"x{res['scorer_direct_pairs_per_s'] / res['plain_loop_pairs_per_s']:.2f} of the plain loop")
    print(f"  stage (Beam, end to end)     {res['stage_pairs_per_s']:9.1f} pairs/s   "
          f"x{res['ratio_stage_vs_plain']:.2f} of the plain loop (wall {st['wall_s']:.1f} s, model load {st['load_s']:.1f} s)")
    print(f"  stage without model load     {res['stage_pairs_per_s_without_model_load']:9.1f} pairs/s   "
          f"x{res['ratio_stage_without_load_vs_plain']:.2f} of the plain loop")
    print(f"  stage, RunInference calls    {res['stage_inference_pairs_per_s']:9.1f} pairs/s   "
          f"(time inside run_inference: {st['infer_s']:.1f} s)")
    print(f"  cosines: {len(diffs)}/{n} scored by the stage, max |stage - plain| {res['max_abs_cosine_diff_vs_plain']}, "
          f"max |direct - plain| {res['max_abs_cosine_diff_direct_vs_plain']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0 if len(diffs) == n and st["dead"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
