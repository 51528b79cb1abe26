"""report.html: one self-contained page that says what a run did and why records left.

The page has inline CSS and inline SVG only: no script, no fonts, no external asset, so it
opens from a bucket or a laptop alike. Everything that comes from the corpus or the config is
HTML-escaped. Sections are: the run summary with the balance check
(read = kept + rejected + dead letters), the funnel (chart and table), modalities, any
registered or passed :class:`ReportSection`, the dead letters by error kind (every kind with its
count, files and one example error; file-level failures such as a truncated stream first),
examples of every drop reason, and the resolved config.

Later stages add their own sections::

    def dedup_clusters(stats, examples, config):
        sizes = stats.get("dedup", {}).get("cluster_sizes")
        if not sizes:
            return None
        return ReportSection("Near-duplicate clusters",
                             svg_histogram(sizes, title="cluster size", x_label="records"))

    register_section("dedup_clusters", dedup_clusters)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import yaml

from winnow.pipeline.report_svg import (
    esc,
    html_table,
    human_bytes,
    make_thumbnail,
    plural,
    slug,
    svg_bars,
    svg_histogram,
    thumb_data_uri,
    to_int,
)

__all__ = [
    "ReportSection",
    "SectionFn",
    "register_section",
    "unregister_section",
    "registered_sections",
    "render_report",
    "svg_histogram",
    "svg_bars",
    "html_table",
    "esc",
    "human_bytes",
    "make_thumbnail",
]


@dataclass(frozen=True)
class ReportSection:
    """One block of the report.

    Attributes:
        title: plain text; escaped when rendered.
        html: the body, trusted HTML (escape corpus text with :func:`esc`, or build it with
            :func:`html_table`, :func:`svg_histogram` and :func:`svg_bars`).
        anchor: the element id to link to; derived from the title when empty.
    """

    title: str
    html: str
    anchor: str = ""


SectionFn = Callable[[Mapping[str, Any], Sequence[Mapping[str, Any]], Mapping[str, Any]], "ReportSection | None"]
_SECTIONS: dict[str, SectionFn] = {}


def register_section(name: str, fn: SectionFn) -> None:
    """Add (or replace) a section builder; it runs on every report.

    A section named like a stage is shown in the run's stage order; others follow in
    registration order.

    ``fn(stats, examples, config)`` returns a :class:`ReportSection`, or ``None`` when it has
    nothing to show. If it raises, the report shows the error in its place and goes on.
    """
    if not callable(fn):
        raise TypeError(f"register_section({name!r}, ...) needs a callable, got {type(fn).__name__}")
    _SECTIONS[name] = fn


def unregister_section(name: str) -> None:
    """Remove a section builder; unknown names are ignored."""
    _SECTIONS.pop(name, None)


def registered_sections() -> tuple[str, ...]:
    """Names of the registered section builders, in registration order."""
    return tuple(_SECTIONS)


# ---------------------------------------------------------------------------------------------
# The page

_KEPT, _DEAD, _IN = "#3d9a5b", "#c0392b", "#d5dae1"
_PALETTE = ("#e39b24", "#7e57c2", "#2f7fc1", "#d0598f", "#8d6e4f", "#1aa3a3", "#9aa937",
            "#e0664a", "#5c6bc0", "#7f8c8d")


def _stages(stats: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for s in stats.get("stages") or []:
        if isinstance(s, Mapping):
            rejected = s.get("rejected") if isinstance(s.get("rejected"), Mapping) else {}
            out.append({"name": str(s.get("name", "?")), "in": to_int(s.get("in")), "out": to_int(s.get("out")),
                        "rejected": {str(k): to_int(v) for k, v in rejected.items()},
                        "dead_letter": to_int(s.get("dead_letter")), "time": _time(s.get("time"))})
    return out


def _time(t: Any) -> dict[str, float]:
    """The numeric per-stage time figures of a funnel entry (anything else dropped)."""
    if not isinstance(t, Mapping):
        return {}
    return {str(k): float(v) for k, v in t.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _reason_colors(stages: list[dict[str, Any]], examples: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    names = [r for s in stages for r in sorted(s["rejected"], key=lambda r: -s["rejected"][r])]
    names += sorted({str(e.get("reason")) for e in examples})
    colors: dict[str, str] = {}
    for r in names:
        if r not in colors and r != "dead_letter":
            colors[r] = _PALETTE[len(colors) % len(_PALETTE)]
    colors["dead_letter"] = _DEAD
    return colors


def _summary(stats: Mapping[str, Any]) -> tuple[str, str]:
    """(balance banner, summary cards)."""
    read, kept, rej, dead = (to_int(stats.get(k)) for k in ("read", "kept", "rejected", "dead_letter"))
    total = kept + rej + dead
    flagged = stats.get("balanced")
    eq = f"read {read:,} = kept {kept:,} + rejected {rej:,} + dead letters {dead:,}"
    if total == read and flagged is not False:
        banner = f'<div class="banner ok" id="balance"><b>Balance OK</b>: {esc(eq)}</div>'
    else:
        why = (f"{abs(read - total):,} records {'unaccounted for' if read > total else 'counted twice'}"
               if total != read else "the pipeline reported balanced = false")
        banner = (f'<div class="banner bad" id="balance"><b>MISMATCH</b>: read {read:,} &ne; kept {kept:,} '
                  f"+ rejected {rej:,} + dead letters {dead:,} = {total:,} ({esc(why)}). "
                  "Records were lost or double-counted; do not train on this output before finding out why.</div>")
    stages = _stages(stats)
    # augmented records the funnel carries (none when it follows the records read, as the pipeline's does)
    aug = sum(a for _, a, _ in _added(stages, to_int(stats.get("augmented"))))
    if stages and stages[-1]["out"] != kept + aug:
        with_aug = f" + augmented {aug:,} = {kept + aug:,}" if aug else ""
        banner += (f'<div class="banner bad"><b>MISMATCH</b>: the last stage ({esc(stages[-1]["name"])}) passed '
                   f'{stages[-1]["out"]:,} records but kept {kept:,}{with_aug}.</div>')
    shards = stats.get("shards") if isinstance(stats.get("shards"), Mapping) else {}
    cards = [("read", f"{read:,}", ""), ("kept", f"{kept:,}", f"{kept / read:.1%} of read" if read else ""),
             ("rejected", f"{rej:,}", f"{rej / read:.1%} of read" if read else ""),
             ("dead letters", f"{dead:,}", plural(to_int(stats.get("dead_letter_files")), "file")),
             ("augmented", f"{to_int(stats.get('augmented')):,}", "counted on their own"),
             ("shards", f"{to_int(shards.get('count')):,}",
              f"{to_int(shards.get('rows')):,} rows, {human_bytes(to_int(shards.get('bytes')))}")]
    html_cards = "".join(f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div>'
                         f'<div class="s">{esc(s)}</div></div>' for k, v, s in cards)
    return banner, f'<div class="cards">{html_cards}</div>'


def _added(stages: list[dict[str, Any]], augmented: int) -> list[tuple[int, int, int]]:
    """Per stage, (records in its ``out`` that did not enter it, of which augmented, augmented
    records it made that its ``out`` leaves out).

    The pipeline's funnel follows the records read (``out = in - rejected - dead letters``),
    so the ``augment`` stage's new records are counted on their own (the run's ``augmented``)
    and are noted at that stage. A funnel whose ``out`` includes them is read too: up to the
    run's ``augmented`` count, records a stage adds are augmentations, the rest is an
    imbalance the table flags."""
    left = augmented
    out = []
    for s in stages:
        added = max(0, s["out"] + sum(s["rejected"].values()) + s["dead_letter"] - s["in"])
        aug = min(added, left)
        left -= aug
        out.append([added, aug, 0])
    names = [s["name"] for s in stages]
    if left and "augment" in names:
        out[names.index("augment")][2] = left
    return [(a, b, c) for a, b, c in out]


def _floor1(x: float) -> float:
    """``x`` rounded down to one decimal (as drawn), so drawn segments never end past their bar."""
    return math.floor(x * 10 + 1e-6) / 10


def _segment_widths(counts: Sequence[int], scale: float, bar_w: float, limit: float, min_w: float = 1.5) -> list[float]:
    """Widths of a stage's kept / reason / dead-letter segments inside its entering bar.

    Each non-zero segment is at least ``min_w`` wide so a small reason stays visible; the
    width that costs is taken from the wider segments, and the segments together never
    exceed ``limit`` (the entering bar's width)."""
    exact = [n / scale * bar_w if n > 0 else 0.0 for n in counts]
    widths = [max(w, min_w) if n > 0 else 0.0 for n, w in zip(counts, exact)]
    target = min(sum(exact), limit)
    excess = sum(widths) - target
    if excess > 0:
        room = [w - min_w if w > min_w else 0.0 for w in widths]
        spare = sum(room)
        if spare >= excess:  # shrink the wide segments in proportion to what they have to spare
            widths = [w - excess * r / spare for w, r in zip(widths, room)]
        else:  # every segment at its minimum and still too wide: scale all down to fit
            total = sum(widths)
            widths = [w * target / total if total else 0.0 for w in widths]
    return widths


def _funnel_svg(stages: list[dict[str, Any]], colors: Mapping[str, str], augmented: int = 0) -> str:
    label_w, bar_w, row_h, width = 150, 470, 34, 800
    height = row_h * len(stages) + 8
    added = _added(stages, augmented)
    scale = max([max(s["in"], s["out"] - a + sum(s["rejected"].values()) + s["dead_letter"])
                 for s, (a, _, _) in zip(stages, added)] + [1])
    parts = [f'<svg class="chart funnel" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"><title>Funnel</title>']
    for i, (s, (n_added, n_aug, n_noted)) in enumerate(zip(stages, added)):
        y = 4 + i * row_h
        dropped = sum(s["rejected"].values())
        in_w = _floor1(s["in"] / scale * bar_w)
        tip = f"{s['name']}: in {s['in']:,}, out {s['out']:,}, rejected {dropped:,}, dead letters {s['dead_letter']:,}"
        if n_added or n_noted:
            tip += (f", added {n_added + n_noted:,}"
                    + (" (augmented records, counted on their own)" if n_aug == n_added else ""))
        parts.append(f'<g class="funnel-stage" data-stage="{esc(s["name"])}"><title>{esc(tip)}</title>'
                     f'<text x="{label_w - 8}" y="{y + 19}" text-anchor="end" class="label">{esc(s["name"])}</text>'
                     f'<rect class="in" x="{label_w}" y="{y + 2}" width="{in_w:.1f}" '
                     f'height="{row_h - 8}" fill="{_IN}"/>')
        # The segments split what entered: records a stage added (augmentations) are not part
        # of its entering bar; they are in the summary text and the table.
        segs = [("kept", s["out"] - n_added, _KEPT)]
        segs += [(r, n, colors.get(r, _PALETTE[-1])) for r, n in sorted(s["rejected"].items(), key=lambda kv: -kv[1])]
        segs.append(("dead_letter", s["dead_letter"], _DEAD))
        widths = _segment_widths([n for _, n, _ in segs], scale, bar_w, in_w)
        end = 0.0
        for (name, n, fill), w in zip(segs, widths):
            if n <= 0:
                continue
            x0, end = _floor1(end), end + w
            parts.append(f'<rect class="seg" x="{label_w + x0:.1f}" y="{y + 6}" width="{_floor1(end) - x0:.1f}" '
                         f'height="{row_h - 16}" fill="{esc(fill)}"><title>{esc(s["name"])} / {esc(name)}: {n:,}'
                         f'</title></rect>')
        summary = f"{s['in']:,} \u2192 {s['out']:,}" + (f"  (\u2212{dropped + s['dead_letter']:,})"
                                                         if dropped + s["dead_letter"] else "")
        if n_added or n_noted:
            summary += f"  (+{n_added + n_noted:,} {'augmented' if n_aug == n_added else 'added'})"
        parts.append(f'<text x="{label_w + bar_w + 10}" y="{y + 19}" class="value">{esc(summary)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _funnel(stages: list[dict[str, Any]], colors: Mapping[str, str], augmented: int = 0) -> str:
    if not stages:
        return '<p class="muted">The stats list no stages.</p>'
    legend = "".join(f'<span class="lg"><i style="background:{c}"></i>{esc(n)}</span>'
                     for n, c in [("entering", _IN), ("kept", _KEPT), *colors.items()])
    rows = []
    for s, (_, n_aug, n_noted) in zip(stages, _added(stages, augmented)):
        dropped = sum(s["rejected"].values())
        delta = s["in"] - s["out"] + n_aug - dropped - s["dead_letter"]
        reasons = "".join(
            f'<li><i class="sw" style="background:{esc(colors.get(r, _PALETTE[-1]))}"></i>'
            f'<a href="#{esc(_example_anchor(s["name"], r))}">{esc(r)}</a> {n:,}</li>'
            for r, n in sorted(s["rejected"].items(), key=lambda kv: -kv[1]))
        check = "ok" if delta == 0 else f"{-delta:+,} records"
        if n_aug or n_noted:
            check += f" (+{n_aug + n_noted:,} augmented)"
        t = s["time"]
        cpu = f'{t["cpu_s"]:,.1f}' if "cpu_s" in t else "&ndash;"
        speed = (f'{t["records_per_s"]:,.0f} rec/s<br>{t.get("mb_per_s_in", 0.0):,.2f} MB/s'
                 if "records_per_s" in t else "&ndash;")
        rows.append(
            f'<tr><td>{esc(s["name"])}</td><td class="num">{s["in"]:,}</td><td class="num">{s["out"]:,}</td>'
            f'<td class="num">{dropped:,}</td><td class="num">{s["dead_letter"]:,}</td>'
            f'<td class="num">{(s["out"] / s["in"] if s["in"] else 0):.1%}</td>'
            f'<td><ul class="reasons">{reasons}</ul></td>'
            f'<td class="num">{cpu}</td><td class="num">{speed}</td>'
            f'<td class="{"" if delta == 0 else "warn"}">{esc(check)}</td></tr>')
    table = ("<table><thead><tr><th>stage</th><th class=num>in</th><th class=num>out</th>"
             "<th class=num>rejected</th><th class=num>dead letters</th><th class=num>passed</th>"
             "<th>drop reasons</th><th class=num title='CPU seconds of the stage&#39;s steps'>CPU s</th>"
             "<th class=num title='records in and MB in per CPU second'>speed</th>"
             f"<th>in = out + dropped</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return f'{_funnel_svg(stages, colors, augmented)}<div class="legend">{legend}</div>{table}'


def _example_anchor(stage: str, reason: str) -> str:
    return f"ex-{slug(stage)}--{slug(reason)}"


def _example_card(e: Mapping[str, Any], chars: int) -> str:
    fields = [("id", e.get("id")), ("source", e.get("source")), ("modality", e.get("modality")),
              ("size", human_bytes(to_int(e.get("bytes"))) if e.get("bytes") is not None else None),
              ("duplicate of", e.get("duplicate_of"))]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in fields if v not in (None, ""))
    body = ""
    uri = thumb_data_uri(e.get("thumb_png"))
    if uri:
        body += f'<img class="thumb" alt="thumbnail of {esc(e.get("id", ""))}" src="{esc(uri)}">'
    if e.get("error"):
        body += f'<pre class="error">{esc(str(e["error"])[:2000])}</pre>'
    text = e.get("text")
    if isinstance(text, str):
        shown = text if len(text) <= chars else text[:chars] + "\u2026"
        if not shown.strip():
            shown_html = f"<i>(empty text{': whitespace only, ' + esc(repr(text)) if text else ''})</i>"
        else:
            shown_html = esc(shown)
        body += f'<pre class="snippet">{shown_html}</pre>'
    elif text is None and e.get("modality") in (None, "text") and not e.get("error"):
        body += '<p class="muted">(no text)</p>'
    return f'<div class="example"><dl>{dl}</dl>{body}</div>'


def _examples(stages: list[dict[str, Any]], examples: Sequence[Mapping[str, Any]],
              colors: Mapping[str, str], config: Mapping[str, Any], has_kinds: bool = False) -> str:
    rep = config.get("report") if isinstance(config.get("report"), Mapping) else {}
    per_reason = to_int(rep.get("examples_per_reason")) if "examples_per_reason" in rep else 50
    chars = max(to_int(rep.get("example_chars")), 20) if "example_chars" in rep else 400
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    counts: dict[tuple[str, str], int] = {}
    for s in stages:
        for r, n in sorted(s["rejected"].items(), key=lambda kv: -kv[1]):
            groups[(s["name"], r)], counts[(s["name"], r)] = [], n
        if s["dead_letter"]:
            groups[(s["name"], "dead_letter")], counts[(s["name"], "dead_letter")] = [], s["dead_letter"]
    extra: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for e in examples:
        key = (str(e.get("stage", "?")), str(e.get("reason", "?")))
        (groups if key in groups else extra).setdefault(key, []).append(e)
    groups.update(sorted(extra.items()))
    if not groups:
        return '<p class="muted">Nothing was rejected or dead-lettered.</p>'
    out = []
    for (stage, reason), exs in groups.items():
        n = counts.get((stage, reason))
        what = f"{n:,} records" if n is not None else "not in the stage counts"
        shown = exs[:per_reason]
        cards = "".join(_example_card(e, chars) for e in shown) or \
            '<p class="muted">No examples were captured for this reason.</p>'
        more = f'<p class="muted">{len(exs) - len(shown):,} more examples not shown.</p>' if len(exs) > len(shown) else ""
        if reason == "dead_letter" and has_kinds:
            more += ('<p class="muted">These examples are a sample; <a href="#dead-letter-kinds">the dead letters '
                     "by error kind</a> list every kind with an example.</p>")
        out.append(f'<div class="group" id="{esc(_example_anchor(stage, reason))}">'
                   f'<h3><i class="sw" style="background:{esc(colors.get(reason, _PALETTE[-1]))}"></i>'
                   f'{esc(stage)} / <span class="reason">{esc(reason)}</span> <small>{esc(what)}</small></h3>'
                   f"{cards}{more}</div>")
    return "".join(out)


#: ``stats["stage_stats"][DEAD_KINDS_KEY]``: dead letters counted by error kind (made by
#: ``winnow.pipeline.build``'s combiner).
DEAD_KINDS_KEY = "dead_letter_kinds"


def _dead_kinds(stats: Mapping[str, Any]) -> str | None:
    """The table of dead letters by error kind (``stats["stage_stats"]["dead_letter_kinds"]``),
    or None when the run has none to show."""
    d = (stats.get("stage_stats") or {}).get(DEAD_KINDS_KEY) if isinstance(stats.get("stage_stats"), Mapping) else None
    if not isinstance(d, Mapping):
        return None
    kinds = [k for k in d.get("kinds") or [] if isinstance(k, Mapping)]
    other = to_int(d.get("other"))
    if not kinds and not other:
        return None
    rows = []
    for k in kinds:
        files = [f for f in k.get("files") or [] if isinstance(f, (list, tuple)) and len(f) == 2]
        listed = "".join(f"<li>{esc(f)} <small>({to_int(n):,})</small></li>" for f, n in files)
        if k.get("more_files"):
            listed += '<li class="muted">and more files</li>'
        level = '<b class="warn">file-level</b><br>' if k.get("file_level") else ""
        rows.append(
            f'<tr><td>{esc(k.get("stage"))}</td><td>{level}<span class="reason">{esc(k.get("kind"))}</span></td>'
            f'<td class="num">{to_int(k.get("count")):,}</td><td><ul class="reasons">{listed}</ul></td>'
            f'<td><div><small>{esc(k.get("example_source"))}</small></div>'
            f'<pre class="error">{esc(str(k.get("example_error") or "")[:1000])}</pre></td></tr>')
    if other:
        rows.append(f'<tr><td colspan=2 class="muted">further kinds (not listed: too many kinds)</td>'
                    f'<td class="num">{other:,}</td><td></td><td></td></tr>')
    total = sum(to_int(k.get("count")) for k in kinds) + other
    n_file = sum(1 for k in kinds if k.get("file_level"))
    intro = (f"<p>{plural(total, 'dead letter')} in {plural(len(kinds), 'kind')} of error"
             + (f", {n_file:,} of them file-level (a broken stream or file: what follows the failure was "
                "not read, or every row of the file is dead-lettered)" if n_file else "")
             + ". A kind is the error message without its specifics (paths, quoted values, numbers); "
             "each row shows one example. Every dead letter is in the output's dead_letter/ folder.</p>")
    return (intro + "<table><thead><tr><th>stage</th><th>error kind</th><th class=num>dead letters</th>"
            f"<th>files</th><th>example</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def _run_sections(stats: Mapping[str, Any], examples: Sequence[Mapping[str, Any]],
                  config: Mapping[str, Any], stage_sections: Mapping[str, SectionFn]) -> list[ReportSection]:
    out = []
    # A section named like a stage shows where that stage ran; the others after them.
    order = {str(st): i for i, st in enumerate(config.get("stages") or ())}
    items = sorted({**stage_sections, **_SECTIONS}.items(), key=lambda kv: order.get(kv[0], len(order)))
    for name, fn in items:
        try:
            sec = fn(stats, examples, config)
            if sec is not None and not isinstance(sec, ReportSection):
                raise TypeError(f"returned {type(sec).__name__}, expected ReportSection or None")
        except Exception as exc:  # noqa: BLE001 - one broken section must not cost the report
            sec = ReportSection(f"{name} (failed)", f'<p class="warn">This section could not be built: '
                                f"{esc(type(exc).__name__)}: {esc(exc)}</p>", anchor=f"sec-{slug(name)}")
        if sec is not None:
            out.append(sec if sec.anchor else dataclasses.replace(sec, anchor=f"sec-{slug(name)}"))
    return out


def render_report(stats: Mapping[str, Any], examples: Sequence[Mapping[str, Any]], config: Mapping[str, Any],
                  *, sections: Sequence[ReportSection] = (),
                  stage_sections: Mapping[str, SectionFn] | None = None) -> str:
    """The whole report.html page.

    Args:
        stats: the run's stats.json content (missing keys show as zero).
        examples: reject and dead-letter examples, each with ``stage``, ``reason``, ``id``,
            ``source``, ``modality``, ``text``, ``duplicate_of``, ``error``, ``bytes`` and
            optionally ``thumb_png`` (PNG bytes or base64).
        config: the resolved config (``config_to_dict``); its ``report`` section limits how
            many examples and characters are shown.
        sections: extra sections, shown after the registered ones.
        stage_sections: the stages' declared report sections, by stage name (each shown
            where its stage ran; :meth:`Registry.report_sections`).
    """
    config = _plain(config) if config else {}
    stages = _stages(stats)
    colors = _reason_colors(stages, examples)
    banner, cards = _summary(stats)
    modalities = stats.get("modalities") if isinstance(stats.get("modalities"), Mapping) else {}
    blocks = [ReportSection("Funnel", _funnel(stages, colors, to_int(stats.get("augmented"))), "funnel")]
    if modalities:
        blocks.append(ReportSection("Kept records by modality", svg_bars(
            {str(k): to_int(v) for k, v in modalities.items()}), "modalities"))
    blocks += _run_sections(stats, examples, config, stage_sections or {})
    blocks += [s if s.anchor else dataclasses.replace(s, anchor=f"sec-{slug(s.title)}") for s in sections]
    dead_kinds = _dead_kinds(stats)
    if dead_kinds is not None:
        blocks.append(ReportSection("Dead letters by error kind", dead_kinds, "dead-letter-kinds"))
    blocks.append(ReportSection("Examples of each drop reason",
                                _examples(stages, examples, colors, config, dead_kinds is not None), "examples"))
    try:
        cfg_text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=False)
    except yaml.YAMLError as exc:
        cfg_text = f"(config could not be shown: {exc})"
    blocks.append(ReportSection("Resolved config", f"<pre class=config>{esc(cfg_text)}</pre>", "config"))

    used: set[str] = {"balance", "summary"}
    body = []
    for sec in blocks:
        anchor, k = slug(sec.anchor), 2
        while anchor in used:
            anchor, k = f"{slug(sec.anchor)}-{k}", k + 1
        used.add(anchor)
        body.append((anchor, sec.title, f'<section id="{esc(anchor)}"><h2>{esc(sec.title)}</h2>{sec.html}</section>'))
    nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in body)
    chash = str(stats.get("config_hash") or "")
    elapsed = stats.get("elapsed_s")
    sub = [f"config <code title=\"{esc(chash)}\">{esc(chash[:12]) or 'unknown'}</code>"]
    if isinstance(elapsed, (int, float)):
        sub.append(f"{elapsed:,.1f} s")
    sub.append(plural(to_int(stats.get("rejects_files")), "reject file"))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>winnow report</title><style>{_CSS}</style></head><body>"
        f'<header><h1>winnow run report</h1><p class="sub">{" &middot; ".join(sub)}</p>'
        f"<nav>{nav}</nav></header>"
        f'<main>{banner}<section id="summary">{cards}</section>{"".join(b for _, _, b in body)}</main>'
        "<footer>Generated by winnow. Every input record ends kept, rejected or dead-lettered; "
        "rejects and dead letters are in the output's rejects/ and dead_letter/ folders.</footer>"
        "</body></html>\n"
    )


_CSS = """
:root{--fg:#1d2430;--muted:#6b7585;--line:#e3e7ee;--bg:#fff;--soft:#f6f8fb}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--soft)}header{background:#1f2a3a;color:#fff;padding:18px 28px 10px}
h1{margin:0;font-size:22px}.sub{margin:4px 0 8px;color:#c6cfdc}.sub code{color:#fff}
nav a{color:#b9d3ff;margin-right:14px;font-size:13px;text-decoration:none}nav a:hover{text-decoration:underline}
main{max-width:1120px;margin:0 auto;padding:18px 24px 40px}section{background:var(--bg);border:1px solid var(--line);
border-radius:8px;padding:14px 18px;margin:16px 0}h2{margin:0 0 10px;font-size:17px}h3{font-size:14px;margin:16px 0 8px}
.banner{border-radius:8px;padding:10px 14px;font-size:15px}.banner.ok{background:#e6f4ea;border:1px solid #a8d5b5;color:#1e5631}
.banner.bad{background:#fdecea;border:2px solid #c0392b;color:#7b1d14}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 12px}.card .k{color:var(--muted);font-size:12px;text-transform:uppercase}
.card .v{font-size:22px;font-weight:600}.card .s{color:var(--muted);font-size:12px}
table{border-collapse:collapse;width:100%;margin-top:10px;font-size:13px}th,td{border-bottom:1px solid var(--line);
padding:5px 8px;text-align:left;vertical-align:top}th{background:var(--soft)}.num{text-align:right;font-variant-numeric:tabular-nums}
.warn{color:#b03a2e;font-weight:600}.muted{color:var(--muted)}ul.reasons{list-style:none;margin:0;padding:0}
i.sw,.lg i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:baseline}
.legend{margin:4px 0 0;font-size:12px;color:var(--muted)}.lg{margin-right:14px;white-space:nowrap}
svg.chart{max-width:100%;height:auto;display:block}svg text{font:12px system-ui,sans-serif;fill:var(--fg)}
svg .ctitle{font-weight:600}svg .tick,svg .xlabel{fill:var(--muted);font-size:11px}svg .axis{stroke:#9aa3b2}
svg .threshold{stroke:#c0392b;stroke-width:2;stroke-dasharray:5 3}svg .tlabel{fill:#c0392b;font-size:11px}
svg .in{opacity:.9}.group{border-top:1px solid var(--line);padding-top:4px}.reason{font-family:ui-monospace,monospace}
.example{border:1px solid var(--line);border-radius:6px;padding:8px 10px;margin:8px 0;background:var(--soft);overflow:hidden}
.example dl{display:grid;grid-template-columns:max-content 1fr;gap:1px 10px;margin:0 0 6px;font-size:12px}
.example dt{color:var(--muted)}.example dd{margin:0;font-family:ui-monospace,monospace;word-break:break-all}
pre{white-space:pre-wrap;word-break:break-word;margin:4px 0;padding:6px 8px;background:#fff;border:1px solid var(--line);
border-radius:4px;max-height:14em;overflow:auto;font-size:12px}pre.error{border-color:#e7b1aa;color:#7b1d14}
pre.config{max-height:none}img.thumb{float:right;max-width:96px;max-height:96px;margin-left:10px;border:1px solid var(--line)}
footer{max-width:1120px;margin:0 auto;padding:0 24px 30px;color:var(--muted);font-size:12px}
"""
