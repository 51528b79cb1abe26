"""Tokens/s to the GPU and the data-wait share of a synthetic training step.

Usage (on a CUDA machine, from the repository root; runs on CPU too, slowly, for a smoke test)::

    python bench/loader/gpu_step.py                     # ~1M tokens per step, 4 workers
    python bench/loader/gpu_step.py --steps 50 --workers 8 --json out/gpu.json

Pipeline: synthetic ragged documents written as winnow shards -> StreamingDataset (batched,
shuffled, L2 cache on local disk) -> TokenPacker (fixed 4096-token sequences with document
masks) -> DataLoader workers with pin_memory -> CudaPrefetcher (host-to-device copies on a
side stream) -> a synthetic step: embedding, a 1024->4096->1024 MLP in bf16, loss, backward
and an optimizer step, with ``loss.item()`` every step as a logging trainer would.

Data wait is the host time spent in ``next()`` for the next batch while the GPU is idle
(the step synchronises through ``loss.item()``); its share is wait / total step time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def import_winnow_cache() -> None:
    """Import winnow.cache from this checkout even where winnow is not pip-installed."""
    try:
        import winnow.cache  # noqa: F401
        return
    except ImportError:
        pass
    sys.path.insert(0, ROOT)
    import winnow

    spec = importlib.util.spec_from_file_location("winnow.cache", os.path.join(ROOT, "cache", "__init__.py"),
                                                  submodule_search_locations=[os.path.join(ROOT, "cache")])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["winnow.cache"] = mod
    winnow.cache = mod  # type: ignore[attr-defined]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/winnow-gpu-bench")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--seqs", type=int, default=256, help="sequences per step (256 x 4096 = 1,048,576 tokens)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    import_winnow_cache()
    import numpy as np
    import torch

    from winnow.cache import CudaPrefetcher, StreamingDataset, TokenPacker
    from winnow.cache.synth import sample_length, write_token_shards

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokens_per_step = a.seq_len * a.seqs
    need_tokens = tokens_per_step * (a.steps + a.warmup + 4) * 3 // 2
    lengths = (256, 2048)
    docs = int(need_tokens / np.mean(lengths)) + 1
    remote = os.path.join(a.work, f"shards-{docs}")
    t0 = time.time()
    if not os.path.exists(os.path.join(remote, "index.json")):
        write_token_shards(remote, num_samples=docs, rows_per_shard=8192, lengths=lengths)
    shutil.rmtree(os.path.join(a.work, "cache"), ignore_errors=True)
    written = int(sample_length(np.arange(docs), lengths).sum())
    print(f"device {torch.cuda.get_device_name(0) if dev.type == 'cuda' else 'cpu'}; torch {torch.__version__}; "
          f"{docs} documents, {written / 1e6:.0f}M tokens written in {time.time() - t0:.0f}s")

    def loader(seed: int):
        ds = StreamingDataset(remote=remote, local=os.path.join(a.work, "cache"), cache_limit="50GB",
                              memory_limit="8GB", columns=["tokens"], shuffle=True, seed=seed, batch_size=256,
                              batched=True)
        packer = TokenPacker(ds, seq_len=a.seq_len, batch_size=a.seqs, eos_id=0, doc_mask=True)
        dl = torch.utils.data.DataLoader(packer, batch_size=None, num_workers=a.workers,
                                         pin_memory=dev.type == "cuda", prefetch_factor=4 if a.workers else None,
                                         persistent_workers=False)
        return CudaPrefetcher(dl, device=dev, depth=2)

    # 1) loader alone: tokens/s delivered into GPU memory (first pass also fills the L2 cache)
    res: dict[str, float] = {}
    for label in ("cold", "warm"):
        it = iter(loader(1))
        t0 = time.perf_counter()
        n = 0
        for k, b in enumerate(it):
            if dev.type == "cuda":
                torch.cuda.current_stream().synchronize()
            n += b["input_ids"].numel()
            if k + 1 >= a.steps + a.warmup:
                break
        res[f"loader_tokens_per_s_{label}"] = n / (time.perf_counter() - t0)
        del it

    # 2) a synthetic step consuming tokens_per_step tokens
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    emb = torch.nn.Embedding(50021, a.dim, device=dev, dtype=dtype)
    w1 = torch.nn.Linear(a.dim, a.hidden, device=dev, dtype=dtype)
    w2 = torch.nn.Linear(a.hidden, a.dim, device=dev, dtype=dtype)
    params = [*emb.parameters(), *w1.parameters(), *w2.parameters()]
    opt = torch.optim.SGD(params, lr=1e-4)

    def step(batch: dict) -> float:
        x = emb(batch["input_ids"].long())
        h = torch.nn.functional.gelu(w1(x))
        y = w2(h)
        pos = batch["position_ids"].to(y.dtype)
        loss = (y.float().mean(-1) * (batch["doc_ids"] >= 0) + 1e-6 * pos.float()).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    it = iter(loader(2))
    waits, totals = [], []
    for k in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        step(batch)
        t2 = time.perf_counter()
        if k >= a.warmup:
            waits.append(t1 - t0)
            totals.append(t2 - t0)
    share = sum(waits) / sum(totals)
    res.update({
        "tokens_per_step": tokens_per_step,
        "step_s_median": statistics.median(totals),
        "data_wait_s_median": statistics.median(waits),
        "data_wait_s_max": max(waits),
        "data_wait_share": share,
        "train_tokens_per_s": tokens_per_step * len(totals) / sum(totals),
    })
    print(f"loader alone, into GPU memory: cold {res['loader_tokens_per_s_cold'] / 1e6:.1f}M tokens/s, "
          f"warm {res['loader_tokens_per_s_warm'] / 1e6:.1f}M tokens/s ({a.workers} workers)")
    print(f"synthetic step of {tokens_per_step:,} tokens: median {res['step_s_median'] * 1e3:.1f} ms; data wait median "
          f"{res['data_wait_s_median'] * 1e3:.2f} ms, max {res['data_wait_s_max'] * 1e3:.2f} ms; "
          f"data-wait share {share * 100:.2f}% (target < 2%); {res['train_tokens_per_s'] / 1e6:.1f}M tokens/s trained")
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
