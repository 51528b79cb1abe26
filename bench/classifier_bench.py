"""The ``classifier`` stage against the same model called directly, in one run.

A DeBERTa-v3-base-sized sequence classifier (12 layers, hidden 768, 12 heads, vocabulary
128,100, relative attention as in v3-base) with random weights is written to a temporary
directory, with a WordPiece tokenizer built from the words of Python's own documentation
(``pydoc_data.topics``, read at run time); nothing is downloaded. The texts are paragraphs of
the same documentation. Measured, same texts, same batch size, same dtype and device:

* ``plain loop``: ``AutoTokenizer`` + ``AutoModelForSequenceClassification`` from the
  directory, batches of ``--batch-size`` texts in input order: tokenize with padding, forward,
  softmax, copy the scores to the host;
* ``plain loop, length-sorted``: the same, texts sorted by length first (what the stage does
  inside a call);
* ``stage``: the records as Records batches through ``ClassifierStage`` (Beam RunInference +
  the StageFn steps + the exact keep-fraction cut) on the FnApiRunner, end to end, and again
  without its model load (RunInference's ``load_model_latency_milli_secs``).

    python bench/classifier_bench.py                 # CUDA when present, else CPU
    python bench/classifier_bench.py --small         # a 2-layer hidden-128 model (CPU smoke run)
    python bench/classifier_bench.py --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time


def corpus_texts(n: int) -> list[str]:
    """``n`` paragraphs of Python's documentation (repeated when there are fewer)."""
    from pydoc_data.topics import topics

    paras = []
    for key in sorted(topics):
        for p in re.split(r"\n\s*\n", topics[key]):
            p = " ".join(p.split())
            if len(p) >= 40:
                paras.append(p)
    return [paras[i % len(paras)] for i in range(n)]


def build_model(path: str, small: bool) -> None:
    import torch
    from pydoc_data.topics import topics
    from transformers import BertTokenizer, DebertaV2Config, DebertaV2ForSequenceClassification

    words: dict[str, int] = {}
    for text in topics.values():
        for w in re.findall(r"[a-z]+", text.lower()):
            words[w] = words.get(w, 0) + 1
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:20000]]
    vocab += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    vocab += list("0123456789.,;:!?()[]{}<>=+-*/%&|^~'\"#@$_\\`")
    with open(os.path.join(path, "vocab.txt"), "w") as f:
        f.write("\n".join(dict.fromkeys(vocab)) + "\n")
    tok = BertTokenizer(os.path.join(path, "vocab.txt"), model_max_length=512)
    if small:
        size = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
    else:  # microsoft/deberta-v3-base's shape
        size = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    cfg = DebertaV2Config(
        vocab_size=128100, max_position_embeddings=512, type_vocab_size=0, relative_attention=True,
        max_relative_positions=-1, position_buckets=256, norm_rel_ebd="layer_norm", share_att_key=True,
        pos_att_type=["p2c", "c2p"], position_biased_input=False, layer_norm_eps=1e-7, hidden_act="gelu",
        pad_token_id=0, num_labels=2, **size)
    torch.manual_seed(0)
    DebertaV2ForSequenceClassification(cfg).eval().save_pretrained(path)
    tok.save_pretrained(path)


def plain_loop(model_dir: str, texts: list[str], batch_size: int, max_length: int, device, dtype,
               sort: bool) -> tuple[float, list[float]]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True)
    model = model.to(device=device, dtype=dtype).eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i])) if sort else list(range(len(texts)))

    def go(idx):
        out = [0.0] * len(texts)
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            enc = tok([texts[i] for i in chunk], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt").to(device)
            with torch.inference_mode():
                p = torch.softmax(model(**enc).logits.float(), dim=-1)[:, 1].cpu().tolist()
            for i, v in zip(chunk, p):
                out[i] = v
        return out

    go(order[: batch_size * 2])  # warm-up (kernels, allocator)
    t = time.perf_counter()
    scores = go(order)
    return time.perf_counter() - t, scores


def stage_run(model_dir: str, texts: list[str], batch_size: int, max_length: int, device: str) -> dict:
    from stage_timing import run_model_stage

    from winnow.filters.classifier import ClassifierConfig
    from winnow.pipeline.batch import BATCH_RECORDS, Records
    from winnow.pipeline.records import make_record
    from winnow.pipeline.stages.classifier import ClassifierStage

    recs = [make_record(source=f"bench:{i}", text=t) for i, t in enumerate(texts)]
    batches = [Records(recs[i:i + BATCH_RECORDS]) for i in range(0, len(recs), BATCH_RECORDS)]
    cfg = ClassifierConfig(model_dir=model_dir, batch_size=batch_size, max_length=max_length, device=device,
                           keep_fraction=0.5)
    res = run_model_stage(ClassifierStage(cfg), batches, "source", "classifier_score", "winnow:classifier/run_inference")
    return {"wall_s": res["wall_s"], "load_s": res["load_s"], "infer_s": res["infer_s"], "dead": res["dead"],
            "scores": [res["values"].get(r["source"]) for r in recs]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=0, help="number of texts (default 8192 on CUDA, 256 on CPU)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--small", action="store_true", help="a 2-layer hidden-128 model instead of the base size")
    ap.add_argument("--json", default="", help="also write the figures here")
    a = ap.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    n = a.texts or (8192 if cuda else 256)
    texts = corpus_texts(n)
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        build_model(d, a.small)
        built = time.perf_counter() - t
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
        lens = [len(x) for x in tok(texts, truncation=True, max_length=a.max_length)["input_ids"]]
        print(f"model written in {built:.1f} s; {n} texts, {sum(lens) / len(lens):.0f} tokens/text mean", flush=True)
        plain_s, plain_scores = plain_loop(d, texts, a.batch_size, a.max_length, device, dtype, sort=False)
        print(f"  (plain loop: {n / plain_s:.1f} texts/s)", flush=True)
        sorted_s, _ = plain_loop(d, texts, a.batch_size, a.max_length, device, dtype, sort=True)
        print(f"  (plain loop, sorted: {n / sorted_s:.1f} texts/s)", flush=True)
        st = stage_run(d, texts, a.batch_size, a.max_length, "cuda" if cuda else "cpu")
    diffs = [abs(x - y) for x, y in zip(plain_scores, st["scores"]) if y is not None]
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    res = {
        "device": name, "dtype": str(dtype).replace("torch.", ""),
        "model": "deberta-v2 " + ("small" if a.small else "base-size (v3-base shape)"),
        "texts": n, "batch_size": a.batch_size, "max_length": a.max_length,
        "tokens_mean": sum(lens) / len(lens), "tokens_max": max(lens), "model_build_s": round(built, 2),
        "plain_loop_texts_per_s": n / plain_s, "plain_loop_sorted_texts_per_s": n / sorted_s,
        "stage_texts_per_s": n / st["wall_s"],
        "stage_texts_per_s_without_model_load": n / max(1e-9, st["wall_s"] - st["load_s"]),
        "stage_inference_texts_per_s": n / max(1e-9, st["infer_s"]),
        "stage_wall_s": st["wall_s"], "stage_run_inference_s": st["infer_s"], "stage_model_load_s": st["load_s"], "stage_dead": st["dead"],
        "scored": len(diffs), "max_abs_score_diff_vs_plain": max(diffs) if diffs else None,
    }
    res["ratio_stage_vs_plain"] = res["stage_texts_per_s"] / res["plain_loop_texts_per_s"]
    res["ratio_stage_without_load_vs_plain"] = res["stage_texts_per_s_without_model_load"] / res["plain_loop_texts_per_s"]
    res["ratio_stage_without_load_vs_plain_sorted"] = (res["stage_texts_per_s_without_model_load"]
                                                      / res["plain_loop_sorted_texts_per_s"])
    print(f"classifier: {res['model']} on {name} ({res['dtype']}), {n} texts, batch {a.batch_size}, "
          f"max_length {a.max_length}, {res['tokens_mean']:.0f} tokens/text mean")
    print(f"  plain loop (input order)     {res['plain_loop_texts_per_s']:9.1f} texts/s")
    print(f"  plain loop (length-sorted)   {res['plain_loop_sorted_texts_per_s']:9.1f} texts/s")
    print(f"  stage (Beam, end to end)     {res['stage_texts_per_s']:9.1f} texts/s   "
          f"x{res['ratio_stage_vs_plain']:.2f} of the plain loop (wall {st['wall_s']:.1f} s, model load {st['load_s']:.1f} s)")
    print(f"  stage without model load     {res['stage_texts_per_s_without_model_load']:9.1f} texts/s   "
          f"x{res['ratio_stage_without_load_vs_plain']:.2f} of the plain loop, "
          f"x{res['ratio_stage_without_load_vs_plain_sorted']:.2f} of the sorted loop")
    print(f"  stage, RunInference calls    {res['stage_inference_texts_per_s']:9.1f} texts/s   "
          f"x{res['stage_inference_texts_per_s'] / res['plain_loop_texts_per_s']:.2f} of the plain loop "
          f"(time inside run_inference: {st['infer_s']:.1f} s)")
    print(f"  scores: {len(diffs)}/{n} scored by the stage, max |stage - plain| {res['max_abs_score_diff_vs_plain']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0 if len(diffs) == n and st["dead"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
