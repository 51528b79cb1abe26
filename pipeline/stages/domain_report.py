"""Report sections of the ``domain``, ``tokenizer`` and ``encode`` stages.

They read ``stats["stage_stats"][stage]`` (written by the stages' combiners) and render the
selection-score histogram with the cut line, the domain mix, the tokenizer's training summary,
tokens per record, fertility and coverage of the domain dictionary.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from winnow.pipeline.report import ReportSection, esc, html_table, svg_bars, svg_histogram

__all__ = ["domain_section", "tokenizer_section"]


def domain_section(stats: Mapping[str, Any], examples: Sequence[Mapping[str, Any]],
                   config: Mapping[str, Any]) -> ReportSection | None:
    """Selection-score histogram with the cut, and the domain mix before and after selection."""
    d = (stats.get("stage_stats") or {}).get("domain")
    if not d:
        return None
    sel = d.get("selection") or {}
    score = sel.get("score", "kl")
    label = "KL(record || domain), nats" if score == "kl" else "DSIR log-ratio (target vs background), nats/feature"
    parts = []
    h = d.get("score_hist")
    cut = sel.get("cut")
    scored = int(sel.get("scored") or 0)
    mix_all = d.get("mix_scored") or {}
    mix_kept = d.get("mix_kept") or {}
    kept = sum(mix_kept.values())
    how = (f"absolute threshold {sel.get('threshold')}" if sel.get("threshold") is not None
           else f"best {float(sel.get('keep_fraction', 0)):.0%} by an exact global rank cut")
    parts.append(
        f"<p>Scored {scored:,} records against {esc(', '.join(sel.get('domains') or []))} "
        f"({esc(how)}, score <b>{esc(score)}</b>"
        f"{', domain ' + esc(sel.get('select_domain')) if sel.get('select_domain') else ', closest domain'}; "
        f"background: {esc(sel.get('background'))}). Kept {kept:,}"
        f"{f' ({kept / scored:.1%})' if scored else ''}; the cut is at "
        f"<b>{'n/a' if cut is None else f'{cut:.4f}'}</b>"
        f" ({'keep at or below' if score == 'kl' else 'keep at or above'}).</p>"
    )
    if h:
        parts.append(svg_histogram(h, title=f"selection score ({score})", x_label=label, threshold=cut))
    if mix_all:
        names = sorted(set(mix_all) | set(mix_kept))
        parts.append(svg_bars([(n, mix_kept.get(n, 0)) for n in names], title="kept records by closest domain"))
        parts.append(html_table(["domain", "scored", "kept", "kept share"],
                                [(n, f"{mix_all.get(n, 0):,}", f"{mix_kept.get(n, 0):,}",
                                  f"{mix_kept.get(n, 0) / mix_all[n]:.1%}" if mix_all.get(n) else "-")
                                 for n in names], numeric=(1, 2, 3)))
    return ReportSection("Domain scoring and selection", "".join(parts))


def tokenizer_section(stats: Mapping[str, Any], examples: Sequence[Mapping[str, Any]],
                      config: Mapping[str, Any]) -> ReportSection | None:
    """Training summary, tokens per record, fertility and dictionary coverage."""
    ss = stats.get("stage_stats") or {}
    t = (ss.get("tokenizer") or {}).get("training")
    e = (ss.get("encode") or {}).get("encode")
    if not t and not e:
        return None
    parts = []
    if t:
        if t.get("trained"):
            parts.append(html_table(
                ["vocab size", "token dtype", "sample records", "sample chars", "dictionary terms", "training s", "sha256"],
                [(f"{t['vocab_size']:,}", t.get("dtype"), f"{t['sample_records']:,}", f"{t['sample_chars']:,}",
                  f"{t['dictionary_terms']:,}", f"{t['seconds']:.2f}", str(t.get("sha256", ""))[:16])],
                numeric=(0, 2, 3, 4, 5)))
        else:
            parts.append(f'<p class="warn">No tokenizer was trained: {esc(t.get("reason"))}.</p>')
    if e:
        fert = e.get("fertility")
        parts.append(f"<p>{e.get('tokens', 0):,} tokens for {e.get('words', 0):,} words: fertility "
                     f"<b>{'n/a' if fert is None else f'{fert:.3f}'}</b> tokens per word; mean "
                     f"{(e['tokens_hist'].get('mean') or 0):.1f} tokens per record.</p>")
        parts.append(svg_histogram(e["tokens_hist"], title="tokens per record", x_label="tokens (records over 4,096 in the last bin)"))
        terms = e.get("dictionary_terms") or []
        counts = e.get("dictionary_counts") or []
        if terms:
            seen = sum(1 for c in counts if c)
            parts.append(f"<p>Domain dictionary coverage: <b>{seen:,} of {len(terms):,}</b> terms occur in the "
                         f"encoded text ({seen / len(terms):.1%}); each is one piece.</p>")
            top = sorted(zip(terms, counts), key=lambda tc: (-tc[1], tc[0]))[:15]
            parts.append(svg_bars([(term, c) for term, c in top], title="most frequent dictionary terms"))
    pk = (ss.get("encode") or {}).get("packing")
    if pk:
        parts.append(f"<p>Packed into <b>{pk['rows']:,}</b> rows of {pk['length']:,} ids ({pk['documents']:,} documents, "
                     f"{pk['tokens']:,} tokens, <code>&lt;/s&gt;</code> = {pk['eos_id']} between documents, padding "
                     f"{pk['padding_share']:.2%}): <code>{esc(pk['path'])}</code>, readable by the loader.</p>")
    return ReportSection("Tokenizer and encoding", "".join(parts))
