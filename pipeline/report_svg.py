"""The building blocks of report.html: escaping, formatting, tables, thumbnails, SVG charts.

Everything here returns a string of trusted HTML or SVG in which every value taken from the
corpus or the config has been escaped with :func:`esc`; charts are inline SVG that needs no
script, font or external asset. Stages that register a report section build it from these
(:func:`html_table`, :func:`svg_histogram`, :func:`svg_bars`); :func:`make_thumbnail` and
:func:`thumb_data_uri` turn example images into small inline PNGs.
"""

from __future__ import annotations

import base64
import binascii
import html
import io
import math
import re
from typing import Any, Iterable, Mapping, Sequence

__all__ = [
    "esc",
    "human_bytes",
    "to_int",
    "plural",
    "slug",
    "html_table",
    "make_thumbnail",
    "thumb_data_uri",
    "svg_histogram",
    "svg_bars",
]

_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


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


def to_int(value: Any) -> int:
    """``int(value)``, or 0 for what does not convert (a missing or malformed stats value)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _num(x: float) -> str:
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e15):
        return f"{int(x):,}"
    return f"{x:.4g}"


def plural(n: int, word: str) -> str:
    """``3, "file"`` -> ``3 files``; ``1, "file"`` -> ``1 file``."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def slug(text: str) -> str:
    """A lowercase ``[a-z0-9-]`` element id for ``text`` (``section`` when nothing is left)."""
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


#: Images with more pixels get no thumbnail (their header is read, never their pixels): the
#: examples' images are at most 64 KB, so this many pixels there is a decompression bomb.
THUMB_MAX_PIXELS = 16_000_000


def make_thumbnail(data: bytes, size: int = 96) -> bytes | None:
    """A small PNG of encoded image bytes for an example's ``thumb_png``; ``None`` if undecodable
    or over ``THUMB_MAX_PIXELS``."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > THUMB_MAX_PIXELS:
                return None
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            return buf.getvalue()
    except Exception:  # noqa: BLE001 - a corrupt image simply gets no thumbnail
        return None


def thumb_data_uri(thumb: Any) -> str | None:
    """A ``data:`` URI for PNG bytes (raw or base64); ``None`` for anything that is not a PNG."""
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
        counts = [to_int(c) for c in values_or_bins.get("counts", [])]
        if len(edges) != len(counts) + 1:
            raise ValueError(f"histogram bins need len(edges) == len(counts) + 1, got {len(edges)} and {len(counts)}")
        return [(edges[i], edges[i + 1], counts[i]) for i in range(len(counts))], None
    seq = list(values_or_bins)
    if seq and all(isinstance(b, (tuple, list)) and len(b) == 3 for b in seq):
        return [(float(lo), float(hi), to_int(c)) for lo, hi, c in seq], None
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
