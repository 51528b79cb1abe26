"""report.html: one self-contained page that says what a run did and why records left.

The page has inline CSS and inline SVG only: no script, no fonts, no external asset, so it
opens from a bucket or a laptop alike. Everything that comes from the corpus or the config is
HTML-escaped. Sections are: the run summary with the balance check
(read = kept + rejected + dead letters), the funnel (chart and table), modalities, any
registered or passed :class:`ReportSection`, examples of every drop reason, and the resolved
config.

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

import base64
import binascii
import dataclasses
import html
import io
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

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
    """Add (or replace) a section builder; it runs on every report, in registration order.

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
    """Names of the registered section builders, in the order they render."""
    return tuple(_SECTIONS)


# ---------------------------------------------------------------------------------------------
# Small helpers

_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_KEPT, _DEAD, _IN = "#3d9a5b", "#c0392b", "#d5dae1"
_PALETTE = ("#e39b24", "#7e57c2", "#2f7fc1", "#d0598f", "#8d6e4f", "#1aa3a3", "#9aa937",
            "#e0664a", "#5c6bc0", "#7f8c8d")


def esc(value: Any) -> str:
    """HTML-escape anything; control characters and lone surrogates become visible escapes."""
    s = value if isinstance(value, str) else str(value)
    s = _UNSAFE.sub(lambda m: "\ufffd" if "\ud800" <= m.group() <= "\udfff" else f"\\x{ord(m.group()):02x}", s)
    return html.escape(s, quote=True)


def human_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _num(x: float) -> str:
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e15):
        return f"{int(x):,}"
    return f"{x:.4g}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "section"


def html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric: Sequence[int] = (),
               cls: str = "") -> str:
    """An HTML table; every cell is escaped, ints get thousands separators.

    Args:
        headers: column titles.
        rows: cell values.
        numeric: indexes of right-aligned columns.
        cls: extra CSS class of the table.
    """
    def cell(i: int, v: Any, tag: str) -> str:
        text = f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else ("" if v is None else v)
        return f'<{tag}{" class=num" if i in numeric else ""}>{esc(text)}</{tag}>'

    head = "".join(cell(i, h, "th") for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell(i, v, "td") for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def make_thumbnail(data: bytes, size: int = 96) -> bytes | None:
    """A small PNG of encoded image bytes for an example's ``thumb_png``; ``None`` if undecodable."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            return buf.getvalue()
    except Exception:  # noqa: BLE001 - a corrupt image simply gets no thumbnail
        return None


def _thumb_data_uri(thumb: Any) -> str | None:
    if isinstance(thumb, str):
        try:
            thumb = base64.b64decode(thumb, validate=True)
        except (binascii.Error, ValueError):
            return None
    if not isinstance(thumb, (bytes, bytearray, memoryview)):
        return None
    data = bytes(thumb)
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------------------------------------
# SVG charts


def _bins_of(values_or_bins: Any, bins: int) -> tuple[list[tuple[float, float, int]], list[float] | None]:
    """(lo, hi, count) bins, plus the raw values when they were given."""
    if isinstance(values_or_bins, Mapping):
        edges = [float(e) for e in values_or_bins.get("edges", [])]
        counts = [_int(c) for c in values_or_bins.get("counts", [])]
        if len(edges) != len(counts) + 1:
            raise ValueError(f"histogram bins need len(edges) == len(counts) + 1, got {len(edges)} and {len(counts)}")
        return [(edges[i], edges[i + 1], counts[i]) for i in range(len(counts))], None
    seq = list(values_or_bins)
    if seq and all(isinstance(b, (tuple, list)) and len(b) == 3 for b in seq):
        return [(float(lo), float(hi), _int(c)) for lo, hi, c in seq], None
    vals = [float(v) for v in seq if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return [], vals
    lo, hi = min(vals), max(vals)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    n = max(1, min(bins, len(vals)))
    width = (hi - lo) / n
    counts = [0] * n
    for v in vals:
        counts[min(n - 1, int((v - lo) / width))] += 1
    return [(lo + i * width, lo + (i + 1) * width, counts[i]) for i in range(n)], vals


def svg_histogram(values_or_bins: Any, *, title: str, x_label: str, threshold: float | None = None,
                  bins: int = 30, width: int = 640, height: int = 220, color: str = "#2f7fc1") -> str:
    """An inline SVG histogram.

    Args:
        values_or_bins: raw numbers (non-finite ones are skipped), a mapping
            ``{"edges": [...], "counts": [...]}``, or ``(lo, hi, count)`` triples.
        title: shown above the chart.
        x_label: shown under the x axis.
        threshold: draws a dashed line there and counts the values on each side.
        bins: bin count for raw values.
        width: SVG width in pixels.
        height: SVG height in pixels.
        color: bar fill.
    """
    data, raw = _bins_of(values_or_bins, bins)
    left, right, top, bottom = 56, 16, 28, 44
    pw, ph = width - left - right, height - top - bottom
    parts = [f'<svg class="chart histogram" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{esc(title)}</title>",
             f'<text x="{left}" y="16" class="ctitle">{esc(title)}</text>']
    if not data:
        parts.append(f'<text x="{left}" y="{top + ph // 2}" class="muted">no data</text></svg>')
        return "".join(parts)
    lo, hi = min(b[0] for b in data), max(b[1] for b in data)
    span = (hi - lo) or 1.0
    cmax = max(b[2] for b in data) or 1
    x = lambda v: left + (v - lo) / span * pw  # noqa: E731
    parts.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" class="axis"/>')
    for b_lo, b_hi, c in data:
        h = c / cmax * ph
        parts.append(f'<rect class="bin" x="{x(b_lo):.1f}" y="{top + ph - h:.1f}" '
                     f'width="{max(x(b_hi) - x(b_lo) - 1, 0.5):.1f}" height="{h:.1f}" fill="{esc(color)}">'
                     f"<title>{esc(_num(b_lo))} to {esc(_num(b_hi))}: {c:,}</title></rect>")
    for v, anchor in ((lo, "start"), ((lo + hi) / 2, "middle"), (hi, "end")):
        parts.append(f'<text x="{x(v):.1f}" y="{top + ph + 14}" text-anchor="{anchor}" class="tick">{esc(_num(v))}</text>')
    parts.append(f'<text x="{left - 6}" y="{top + 8}" text-anchor="end" class="tick">{cmax:,}</text>')
    parts.append(f'<text x="{left - 6}" y="{top + ph}" text-anchor="end" class="tick">0</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 8}" text-anchor="middle" class="xlabel">{esc(x_label)}</text>')
    if threshold is not None and math.isfinite(threshold):
        tx = x(min(max(threshold, lo), hi))
        if raw is not None:
            below = sum(1 for v in raw if v < threshold)
            above = len(raw) - below
        else:
            below = sum(c for b_lo, b_hi, c in data if b_hi <= threshold)
            above = sum(c for b_lo, b_hi, c in data if b_lo >= threshold)
        parts.append(f'<line class="threshold" x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{top + ph}"/>')
        label = f"threshold {_num(threshold)}: {below:,} below, {above:,} at or above"
        anchor = "end" if tx > left + pw / 2 else "start"
        dx = -4 if anchor == "end" else 4
        parts.append(f'<text x="{tx + dx:.1f}" y="{top + 6}" text-anchor="{anchor}" class="tlabel">{esc(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_bars(items: Mapping[str, float] | Sequence[tuple[str, float]], *, title: str = "",
             colors: Mapping[str, str] | None = None, width: int = 640, unit: str = "") -> str:
    """Labelled horizontal bars, one per item, scaled to the largest value.

    Args:
        items: ``{label: value}`` or ``[(label, value), ...]``, drawn in the given order.
        title: shown above the bars.
        colors: fill per label (default blue).
        width: SVG width in pixels.
        unit: appended to each value label.
    """
    rows = list(items.items()) if isinstance(items, Mapping) else [tuple(i) for i in items]
    label_w, value_w, row_h, top = 170, 110, 24, 26 if title else 6
    height = top + row_h * max(len(rows), 1) + 6
    vmax = max([float(v) for _, v in rows if isinstance(v, (int, float))] + [0.0]) or 1.0
    parts = [f'<svg class="chart bars" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">']
    if title:
        parts.append(f'<title>{esc(title)}</title><text x="0" y="16" class="ctitle">{esc(title)}</text>')
    for i, (label, value) in enumerate(rows):
        y = top + i * row_h
        v = float(value) if isinstance(value, (int, float)) else 0.0
        w = max(v / vmax * (width - label_w - value_w), 1.0 if v > 0 else 0.0)
        short = label if len(str(label)) <= 24 else str(label)[:23] + "\u2026"
        fill = (colors or {}).get(label, "#2f7fc1")
        parts.append(
            f'<g class="bar"><title>{esc(label)}: {esc(_num(v))}{esc(unit)}</title>'
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" class="label">{esc(short)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" fill="{esc(fill)}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" class="value">{esc(_num(v))}{esc(unit)}</text></g>'
        )
    if not rows:
        parts.append(f'<text x="0" y="{top + 14}" class="muted">no data</text>')
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# The page


def _stages(stats: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for s in stats.get("stages") or []:
        if isinstance(s, Mapping):
            rejected = s.get("rejected") if isinstance(s.get("rejected"), Mapping) else {}
            out.append({"name": str(s.get("name", "?")), "in": _int(s.get("in")), "out": _int(s.get("out")),
                        "rejected": {str(k): _int(v) for k, v in rejected.items()},
                        "dead_letter": _int(s.get("dead_letter"))})
    return out


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
    read, kept, rej, dead = (_int(stats.get(k)) for k in ("read", "kept", "rejected", "dead_letter"))
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
    aug = _int(stats.get("augmented"))
    if stages and stages[-1]["out"] != kept + aug:
        banner += (f'<div class="banner bad"><b>MISMATCH</b>: the last stage ({esc(stages[-1]["name"])}) passed '
                   f'{stages[-1]["out"]:,} records but kept {kept:,} + augmented {aug:,} = {kept + aug:,}.</div>')
    shards = stats.get("shards") if isinstance(stats.get("shards"), Mapping) else {}
    cards = [("read", f"{read:,}", ""), ("kept", f"{kept:,}", f"{kept / read:.1%} of read" if read else ""),
             ("rejected", f"{rej:,}", f"{rej / read:.1%} of read" if read else ""),
             ("dead letters", f"{dead:,}", _plural(_int(stats.get("dead_letter_files")), "file")),
             ("augmented", f"{_int(stats.get('augmented')):,}", "counted on their own"),
             ("shards", f"{_int(shards.get('count')):,}",
              f"{_int(shards.get('rows')):,} rows, {human_bytes(_int(shards.get('bytes')))}")]
    html_cards = "".join(f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div>'
                         f'<div class="s">{esc(s)}</div></div>' for k, v, s in cards)
    return banner, f'<div class="cards">{html_cards}</div>'


def _funnel_svg(stages: list[dict[str, Any]], colors: Mapping[str, str]) -> str:
    label_w, bar_w, row_h, width = 150, 470, 34, 800
    height = row_h * len(stages) + 8
    scale = max([max(s["in"], s["out"] + sum(s["rejected"].values()) + s["dead_letter"]) for s in stages] + [1])
    parts = [f'<svg class="chart funnel" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"><title>Funnel</title>']
    for i, s in enumerate(stages):
        y = 4 + i * row_h
        dropped = sum(s["rejected"].values())
        tip = f"{s['name']}: in {s['in']:,}, out {s['out']:,}, rejected {dropped:,}, dead letters {s['dead_letter']:,}"
        parts.append(f'<g class="funnel-stage" data-stage="{esc(s["name"])}"><title>{esc(tip)}</title>'
                     f'<text x="{label_w - 8}" y="{y + 19}" text-anchor="end" class="label">{esc(s["name"])}</text>'
                     f'<rect class="in" x="{label_w}" y="{y + 2}" width="{s["in"] / scale * bar_w:.1f}" '
                     f'height="{row_h - 8}" fill="{_IN}"/>')
        x = float(label_w)
        segs = [("kept", s["out"], _KEPT)]
        segs += [(r, n, colors.get(r, _PALETTE[-1])) for r, n in sorted(s["rejected"].items(), key=lambda kv: -kv[1])]
        segs.append(("dead_letter", s["dead_letter"], _DEAD))
        for name, n, fill in segs:
            if n <= 0:
                continue
            w = max(n / scale * bar_w, 1.5)
            parts.append(f'<rect class="seg" x="{x:.1f}" y="{y + 6}" width="{w:.1f}" height="{row_h - 16}" '
                         f'fill="{esc(fill)}"><title>{esc(s["name"])} / {esc(name)}: {n:,}</title></rect>')
            x += w
        summary = f"{s['in']:,} \u2192 {s['out']:,}" + (f"  (\u2212{dropped + s['dead_letter']:,})"
                                                         if dropped + s["dead_letter"] else "")
        parts.append(f'<text x="{label_w + bar_w + 10}" y="{y + 19}" class="value">{esc(summary)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _funnel(stages: list[dict[str, Any]], colors: Mapping[str, str]) -> str:
    if not stages:
        return '<p class="muted">The stats list no stages.</p>'
    legend = "".join(f'<span class="lg"><i style="background:{c}"></i>{esc(n)}</span>'
                     for n, c in [("entering", _IN), ("kept", _KEPT), *colors.items()])
    rows = []
    for s in stages:
        dropped = sum(s["rejected"].values())
        delta = s["in"] - s["out"] - dropped - s["dead_letter"]
        reasons = "".join(
            f'<li><i class="sw" style="background:{esc(colors.get(r, _PALETTE[-1]))}"></i>'
            f'<a href="#{esc(_example_anchor(s["name"], r))}">{esc(r)}</a> {n:,}</li>'
            for r, n in sorted(s["rejected"].items(), key=lambda kv: -kv[1]))
        check = "ok" if delta == 0 else f"{-delta:+,} records"
        rows.append(
            f'<tr><td>{esc(s["name"])}</td><td class="num">{s["in"]:,}</td><td class="num">{s["out"]:,}</td>'
            f'<td class="num">{dropped:,}</td><td class="num">{s["dead_letter"]:,}</td>'
            f'<td class="num">{(s["out"] / s["in"] if s["in"] else 0):.1%}</td>'
            f'<td><ul class="reasons">{reasons}</ul></td>'
            f'<td class="{"" if delta == 0 else "warn"}">{esc(check)}</td></tr>')
    table = ("<table><thead><tr><th>stage</th><th class=num>in</th><th class=num>out</th>"
             "<th class=num>rejected</th><th class=num>dead letters</th><th class=num>passed</th>"
             f"<th>drop reasons</th><th>in = out + dropped</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return f'{_funnel_svg(stages, colors)}<div class="legend">{legend}</div>{table}'


def _example_anchor(stage: str, reason: str) -> str:
    return f"ex-{_slug(stage)}--{_slug(reason)}"


def _example_card(e: Mapping[str, Any], chars: int) -> str:
    fields = [("id", e.get("id")), ("source", e.get("source")), ("modality", e.get("modality")),
              ("size", human_bytes(_int(e.get("bytes"))) if e.get("bytes") is not None else None),
              ("duplicate of", e.get("duplicate_of"))]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in fields if v not in (None, ""))
    body = ""
    uri = _thumb_data_uri(e.get("thumb_png"))
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
              colors: Mapping[str, str], config: Mapping[str, Any]) -> str:
    rep = config.get("report") if isinstance(config.get("report"), Mapping) else {}
    per_reason = _int(rep.get("examples_per_reason")) if "examples_per_reason" in rep else 50
    chars = max(_int(rep.get("example_chars")), 20) if "example_chars" in rep else 400
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
        out.append(f'<div class="group" id="{esc(_example_anchor(stage, reason))}">'
                   f'<h3><i class="sw" style="background:{esc(colors.get(reason, _PALETTE[-1]))}"></i>'
                   f'{esc(stage)} / <span class="reason">{esc(reason)}</span> <small>{esc(what)}</small></h3>'
                   f"{cards}{more}</div>")
    return "".join(out)


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
                  config: Mapping[str, Any]) -> list[ReportSection]:
    out = []
    for name, fn in list(_SECTIONS.items()):
        try:
            sec = fn(stats, examples, config)
            if sec is not None and not isinstance(sec, ReportSection):
                raise TypeError(f"returned {type(sec).__name__}, expected ReportSection or None")
        except Exception as exc:  # noqa: BLE001 - one broken section must not cost the report
            sec = ReportSection(f"{name} (failed)", f'<p class="warn">This section could not be built: '
                                f"{esc(type(exc).__name__)}: {esc(exc)}</p>", anchor=f"sec-{_slug(name)}")
        if sec is not None:
            out.append(sec if sec.anchor else dataclasses.replace(sec, anchor=f"sec-{_slug(name)}"))
    return out


def render_report(stats: Mapping[str, Any], examples: Sequence[Mapping[str, Any]], config: Mapping[str, Any],
                  *, sections: Sequence[ReportSection] = ()) -> str:
    """The whole report.html page.

    Args:
        stats: the run's stats.json content (missing keys show as zero).
        examples: reject and dead-letter examples, each with ``stage``, ``reason``, ``id``,
            ``source``, ``modality``, ``text``, ``duplicate_of``, ``error``, ``bytes`` and
            optionally ``thumb_png`` (PNG bytes or base64).
        config: the resolved config (``config_to_dict``); its ``report`` section limits how
            many examples and characters are shown.
        sections: extra sections, shown after the registered ones.
    """
    config = _plain(config) if config else {}
    stages = _stages(stats)
    colors = _reason_colors(stages, examples)
    banner, cards = _summary(stats)
    modalities = stats.get("modalities") if isinstance(stats.get("modalities"), Mapping) else {}
    blocks = [ReportSection("Funnel", _funnel(stages, colors), "funnel")]
    if modalities:
        blocks.append(ReportSection("Kept records by modality", svg_bars(
            {str(k): _int(v) for k, v in modalities.items()}), "modalities"))
    blocks += _run_sections(stats, examples, config)
    blocks += [s if s.anchor else dataclasses.replace(s, anchor=f"sec-{_slug(s.title)}") for s in sections]
    blocks.append(ReportSection("Examples of each drop reason", _examples(stages, examples, colors, config), "examples"))
    try:
        cfg_text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=False)
    except yaml.YAMLError as exc:
        cfg_text = f"(config could not be shown: {exc})"
    blocks.append(ReportSection("Resolved config", f"<pre class=config>{esc(cfg_text)}</pre>", "config"))

    used: set[str] = {"balance", "summary"}
    body = []
    for sec in blocks:
        anchor, k = _slug(sec.anchor), 2
        while anchor in used:
            anchor, k = f"{_slug(sec.anchor)}-{k}", k + 1
        used.add(anchor)
        body.append((anchor, sec.title, f'<section id="{esc(anchor)}"><h2>{esc(sec.title)}</h2>{sec.html}</section>'))
    nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in body)
    chash = str(stats.get("config_hash") or "")
    elapsed = stats.get("elapsed_s")
    sub = [f"config <code title=\"{esc(chash)}\">{esc(chash[:12]) or 'unknown'}</code>"]
    if isinstance(elapsed, (int, float)):
        sub.append(f"{elapsed:,.1f} s")
    sub.append(_plural(_int(stats.get("rejects_files")), "reject file"))
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
