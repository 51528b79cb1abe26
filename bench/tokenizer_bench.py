"""Tokenizer benchmark: encode throughput in the pipeline vs sentencepiece alone; training time.

Real text from this machine (``winnow.demo.text.clean_records``), about ``--mb`` MB.
Each measurement is repeated ``--repeats`` times, interleaved with its peer; medians are printed.

Encode (the peer: ``SentencePieceProcessor.encode(texts)`` on the same texts, same model, same
thread count, batches of the stage's batch size):

* ``stage DoFn``: the encode stage's DoFn (``_EncodeFn.process``) on the same batches of records,
  without the Beam runtime (dict copies, dtype conversion, stats included), timed batch by batch
  alternately with the peer;
* ``in Beam``: the time spent inside the encode stage's DoFn while a FnApiRunner pipeline
  (Create -> encode stage -> Count) runs, measured by a timing wrapper around ``process``;
* ``pipeline difference``: that pipeline's wall time minus the same pipeline without the stage
  (fixed per-stage costs included; noisy on a shared machine, printed for information).

Training (the peer: ``SentencePieceTrainer.train`` alone on the same lines with the same options):
``train_sentencepiece`` as the tokenizer stage calls it (line preparation included).

    python bench/tokenizer_bench.py [--mb 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time


def _records(mb: float) -> list[dict]:
    from winnow.demo.text import clean_records

    return [{"id": r["id"], "source": f"bench:{i}", "modality": "text", "text": r["text"], "meta": "{}"}
            for i, r in enumerate(clean_records(int(mb * 1e6), 0, "/usr/share/man"))]


def _batches(recs: list[dict], n: int) -> list[list[dict]]:
    return [recs[i:i + n] for i in range(0, len(recs), n)]


def bench_encode(recs: list[dict], model: bytes, repeats: int, batch: int) -> dict[str, float]:
    import apache_beam as beam
    import sentencepiece as spm

    from winnow.pipeline.stages.tokenize import _EncodeFn
    from winnow.tokenizer.encode import EncodeConfig, token_dtype

    texts = [r["text"] for r in recs]
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    sp = spm.SentencePieceProcessor(model_proto=model)
    cfg = EncodeConfig(batch_size=batch, threads=1)
    fn = _EncodeFn(cfg, token_dtype(sp.get_piece_size()), ())
    fn.setup()
    fn._load(model)
    batches = _batches(recs, batch)
    text_batches = [[r["text"] for r in b] for b in batches]

    def direct_and_dofn() -> tuple[float, float]:
        """Both on every batch in turn, so a change in machine load hits both alike."""
        td = tf = 0.0
        for b, tb in zip(batches, text_batches):
            t = time.perf_counter()
            sp.encode(tb, out_type=int, num_threads=1)
            td += time.perf_counter() - t
            t = time.perf_counter()
            for _ in fn.process(b, [model]):
                pass
            tf += time.perf_counter() - t
        return td, tf

    from winnow.pipeline.stages import tokenize as tk

    inside = {"s": 0.0}
    plain_process = tk._EncodeFn.process

    def timed_process(self, batch, model):  # the stage's own DoFn, timed from the inside
        t0 = time.perf_counter()
        out = list(plain_process(self, batch, model))
        inside["s"] += time.perf_counter() - t0
        return out

    def beam_run(with_stage: bool) -> float:
        from winnow.pipeline.stages.tokenize import EncodeTokens, MODEL_KEY
        from winnow.tokenizer.train import TokenizerConfig

        inside["s"] = 0.0
        t = time.perf_counter()
        with beam.Pipeline(runner="FnApiRunner") as p:
            pc = p | "Create" >> beam.Create(recs, reshuffle=False)
            if with_stage:
                ctx = {MODEL_KEY: p | "Model" >> beam.Create([model]),
                       "tokenizer_config": TokenizerConfig(vocab_size=sp.get_piece_size())}
                pc = (pc | "Enc" >> EncodeTokens(EncodeConfig(batch_size=batch, vocab_size=sp.get_piece_size()), ctx)).kept
            else:
                pc = pc | "Pass" >> beam.Map(lambda r: dict(r))
            _ = pc | "Count" >> beam.combiners.Count.Globally()
        return time.perf_counter() - t

    res: dict[str, list[float]] = {"direct": [], "dofn": [], "beam_with": [], "beam_without": [], "inside": []}
    tk._EncodeFn.process = timed_process
    try:
        for _ in range(repeats):
            d, f = direct_and_dofn()
            res["direct"].append(d)
            res["dofn"].append(f)
            res["beam_without"].append(beam_run(False))
            res["beam_with"].append(beam_run(True))
            res["inside"].append(inside["s"])
    finally:
        tk._EncodeFn.process = plain_process
    med = {k: statistics.median(v) for k, v in res.items()}
    stage = max(med["beam_with"] - med["beam_without"], 1e-9)
    print(f"encode: {len(texts):,} texts, {nbytes / 1e6:.1f} MB, batch {batch}, 1 thread, median of {repeats}")
    print(f"  sentencepiece direct   {nbytes / 1e6 / med['direct']:7.2f} MB/s  ({med['direct']:.2f} s)")
    print(f"  encode stage DoFn      {nbytes / 1e6 / med['dofn']:7.2f} MB/s  ({med['dofn']:.2f} s)  "
          f"ratio {med['direct'] / med['dofn']:.2f}x")
    print(f"  encode stage in Beam   {nbytes / 1e6 / med['inside']:7.2f} MB/s  ({med['inside']:.2f} s inside the "
          f"stage's DoFn during the run)  ratio {med['direct'] / med['inside']:.2f}x")
    print(f"  pipeline difference    {nbytes / 1e6 / stage:7.2f} MB/s  (pipeline {med['beam_with']:.2f} s - "
          f"same pipeline without the stage {med['beam_without']:.2f} s)  ratio {med['direct'] / stage:.2f}x")
    return {"dofn_ratio": med["direct"] / med["dofn"], "beam_ratio": med["direct"] / med["inside"],
            "diff_ratio": med["direct"] / stage}


def bench_train(recs: list[dict], repeats: int, vocab: int) -> None:
    import sentencepiece as spm

    from winnow.tokenizer.train import TokenizerConfig, train_sentencepiece, training_lines

    cfg = TokenizerConfig(vocab_size=vocab)
    texts = [r["text"] for r in recs[: cfg.sample_records]]
    lines = list(training_lines(texts, cfg))

    def alone() -> float:
        t = time.perf_counter()
        spm.set_random_generator_seed(cfg.seed)
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=io.BytesIO(), model_type="bpe", vocab_size=vocab,
            hard_vocab_limit=False, byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=False,
            remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
            character_coverage=cfg.character_coverage, max_sentence_length=cfg.max_sentence_bytes,
            input_sentence_size=0, shuffle_input_sentence=False, num_threads=1, unk_id=0, bos_id=1, eos_id=2,
            pad_id=-1, minloglevel=2)
        return time.perf_counter() - t

    def ours() -> float:
        t = time.perf_counter()
        train_sentencepiece(texts, cfg)
        return time.perf_counter() - t

    a, o = [], []
    for _ in range(repeats):
        a.append(alone())
        o.append(ours())
    ma, mo = statistics.median(a), statistics.median(o)
    chars = sum(len(t[: cfg.sample_chars]) for t in texts)
    print(f"training: {len(texts):,} records ({chars / 1e6:.1f} M chars, {len(lines):,} lines), vocab {vocab}, "
          f"1 thread, median of {repeats}")
    print(f"  sentencepiece alone    {ma:6.2f} s")
    print(f"  train_sentencepiece    {mo:6.2f} s   ratio {ma / mo:.2f}x (time alone / ours)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=8.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=8000)
    args = ap.parse_args()
    from winnow.tokenizer.train import TokenizerConfig, train_sentencepiece

    recs = _records(args.mb)
    model = train_sentencepiece([r["text"] for r in recs[:5000]], TokenizerConfig(vocab_size=args.vocab))
    r = bench_encode(recs, model, args.repeats, args.batch)
    bench_train(recs, args.repeats, args.vocab)
    ok = r["beam_ratio"] >= 0.8
    print(f"target: encode in the pipeline >= 0.8x sentencepiece direct: {'met' if ok else 'NOT met'} "
          f"(in Beam {r['beam_ratio']:.2f}x, DoFn alone {r['dofn_ratio']:.2f}x, pipeline difference "
          f"{r['diff_ratio']:.2f}x)")


if __name__ == "__main__":
    main()
