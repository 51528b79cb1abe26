"""The report sections of ``minhash_dedup`` and ``image_dedup``."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from winnow.pipeline.report import ReportSection, esc, html_table, svg_bars
from winnow.pipeline.report_svg import plural

__all__ = ["dedup_section"]


def _size_bins(h: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The histogram's non-empty bins as labelled bars ("2", "5-7", "1024-4095", ...)."""
    edges, counts = h.get("edges") or [], h.get("counts") or []
    out = []
    for lo, hi, c in zip(edges, edges[1:], counts):
        lo_i, hi_i = int(lo), int(hi) - 1
        if c:
            out.append((f"{lo_i}" if lo_i == hi_i else f"{lo_i}-{hi_i}", c))
    return out


def _thumb(side: Mapping[str, Any] | None) -> str:
    if not side or not side.get("image"):
        return ""
    return f'<img class="thumb" alt="" src="data:image/png;base64,{esc(side["image"])}">'


def _side(side: Mapping[str, Any] | None, rid: str) -> str:
    if side is None:
        return f"<i>(kept record {esc(rid)} not found)</i>"
    body = _thumb(side)
    if side.get("phash"):
        body += f"<div><small>pHash {esc(side['phash'])}</small></div>"
    if side.get("text") is not None:
        body += f'<pre class="snippet">{esc(side["text"])}</pre>'
    return f"<div><small>{esc(rid)}</small></div>{body}"


def dedup_section(stage: str, title: str):
    """A report section for a dedup stage: cluster sizes, rounds, removed beside kept."""

    def section(stats: Mapping[str, Any], examples: Sequence[Mapping[str, Any]], config: Mapping[str, Any]):
        st = (stats.get("stage_stats") or {}).get(stage)
        if not st:
            return None
        parts = []
        sizes = st.get("cluster_sizes") or {}
        n_clusters = sizes.get("n", 0)
        removed = sum(s.get("rejected", {}).get(f"{stage}_near_duplicate", 0) for s in stats.get("stages") or []
                      if s.get("name") == stage)
        conv = "converged" if st.get("cc_converged") else "<b class=warn>did NOT converge</b> (some clusters may keep more than one record)"
        if st.get("cluster") == "representative":
            how = (f"Each record joined its most similar representative: {esc(st.get('cc_rounds'))} round(s) left "
                   f"records waiting (of {esc(st.get('cc_max_rounds'))} unrolled, one shuffle each), {conv}.")
        elif st.get("cc_rounds") == 0 and st.get("cc_converged"):
            how = ("Connected components: linking each band bucket to its smallest record already gave every "
                   "cluster its final shape, so no round had to change the graph "
                   f"(of {esc(st.get('cc_max_rounds'))} unrolled, two shuffles each), {conv}.")
        else:
            how = (f"Connected components: {esc(st.get('cc_rounds'))} round(s) changed the graph "
                   f"(of {esc(st.get('cc_max_rounds'))} unrolled, two shuffles each), {conv}.")
        parts.append(f"<p>{plural(n_clusters, 'cluster')} of two or more records; "
                     f"{plural(removed, 'record')} removed. {how}</p>")
        if st.get("verify_candidate_edges") is not None:
            cand, gone = st["verify_candidate_edges"], st.get("verify_removed", 0)
            verify = f" ({esc(st.get('verify'))})" if st.get("verify") not in (None, "", "none") else ""
            parts.append(f"<p>Verification{verify}: {cand:,} distinct candidate pairs from "
                         f"the LSH bands; {gone:,} ({gone / max(cand, 1):.1%}) fell below the bar and were "
                         f"not linked.</p>")
        params = {k: st.get(k) for k in ("num_perm", "ngram", "bands", "rows", "threshold", "verify", "verify_threshold", "cluster",
                                          "max_distance", "max_color_distance", "match") if st.get(k) is not None}
        if params:
            parts.append(html_table(["parameter", "value"], [[k, str(v)] for k, v in params.items()]))
        if n_clusters:
            parts.append(svg_bars(_size_bins(sizes), title="clusters by size (records per cluster)", unit=" clusters"))
        rows = []
        for e in st.get("examples") or []:
            rows.append(f"<tr><td>{_side(e.get('removed'), e.get('removed_id', ''))}</td>"
                        f"<td>{_side(e.get('kept'), e.get('kept_id', ''))}</td>"
                        f"<td class=num>{esc(e.get('cluster_size'))}</td></tr>")
        if rows:
            parts.append("<h3>Removed near-duplicates beside the record kept</h3><table><thead><tr>"
                         "<th>removed</th><th>kept</th><th class=num>cluster size</th></tr></thead>"
                         f"<tbody>{''.join(rows)}</tbody></table>")
        return ReportSection(title, "".join(parts))

    return section
