"""report.html: well-formed, self-contained, escaped, and showing what the stats say."""

from __future__ import annotations

import base64
import copy
import io
import re
from html.parser import HTMLParser
from typing import Any, Iterator

import pytest
from PIL import Image

from winnow.pipeline import report
from winnow.pipeline.report import (
    ReportSection,
    html_table,
    make_thumbnail,
    register_section,
    registered_sections,
    render_report,
    svg_bars,
    svg_histogram,
    unregister_section,
)

STATS: dict[str, Any] = {
    "read": 1000, "kept": 900, "rejected": 80, "dead_letter": 20, "augmented": 0, "balanced": True,
    "stages": [
        {"name": "read", "in": 1000, "out": 990, "rejected": {}, "dead_letter": 10},
        {"name": "normalize", "in": 990, "out": 985, "rejected": {"normalize_empty_text": 5}, "dead_letter": 0},
        {"name": "exact_dedup", "in": 985, "out": 900, "rejected": {"exact_dedup_duplicate": 75},
         "dead_letter": 10},
    ],
    "modalities": {"text": 850, "image_text": 50},
    "shards": {"count": 4, "rows": 900, "bytes": 123456},
    "rejects_files": 2, "dead_letter_files": 1, "config_hash": "ab12cd34ef56" * 5, "elapsed_s": 12.3,
}


def _png(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, format="PNG")
    return buf.getvalue()


def _ex(stage: str, reason: str, id: str, **kw: Any) -> dict[str, Any]:
    e = {"stage": stage, "reason": reason, "id": id, "source": f"in.jsonl:{id}", "modality": "text",
         "text": f"text of {id}", "duplicate_of": None, "error": None, "bytes": 12}
    e.update(kw)
    return e


EXAMPLES = [
    _ex("read", "dead_letter", "dl-1", text="{'bad json", error="RecordError: line 3 is not JSON"),
    _ex("normalize", "normalize_empty_text", "empty-1", text=""),
    _ex("exact_dedup", "exact_dedup_duplicate", "dup-1", duplicate_of="orig-1",
        text="<script>alert('owned')</script> hello"),
    _ex("exact_dedup", "exact_dedup_duplicate", "pair-7", modality="image_text", bytes=4567,
        text="A red square.", duplicate_of="pair-3", thumb_png=_png()),
]
CONFIG = {"input": ["a/*.jsonl.gz"], "output": "out/x", "stages": ["normalize", "exact_dedup"],
          "report": {"examples_per_reason": 5, "example_chars": 400}}

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Checker(HTMLParser):
    """Records every element and fails on end tags that do not close the innermost open one."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.elements: list[tuple[str, dict[str, str | None], tuple[str, ...]]] = []
        self.text: list[tuple[tuple[str, ...], str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs), tuple(self.stack)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs), tuple(self.stack)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append((tuple(self.stack), data))


def _parse(page: str) -> _Checker:
    c = _Checker()
    c.feed(page)
    c.close()
    assert c.errors == [], c.errors[:5]
    assert c.stack == [], f"unclosed: {c.stack}"
    return c


def _by_class(c: _Checker, cls: str) -> Iterator[dict[str, str | None]]:
    for _, attrs, _ in c.elements:
        if cls in (attrs.get("class") or "").split():
            yield attrs


@pytest.fixture
def page() -> str:
    return render_report(STATS, EXAMPLES, CONFIG)


def test_page_is_well_formed_and_self_contained(page: str) -> None:
    c = _parse(page)
    assert page.startswith("<!DOCTYPE html>")
    tags = {t for t, _, _ in c.elements}
    assert {"html", "head", "body", "style", "svg"} <= tags
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    for _, attrs, _ in c.elements:
        for name in ("src", "href"):
            v = attrs.get(name)
            assert v is None or v.startswith(("#", "data:image/png;base64,")), (name, v)


def test_funnel_has_one_bar_per_stage_in_order(page: str) -> None:
    c = _parse(page)
    stages = [a["data-stage"] for a in _by_class(c, "funnel-stage")]
    assert stages == ["read", "normalize", "exact_dedup"]
    widths = [float(a["width"] or 0) for a in _by_class(c, "in")]
    assert len(widths) == 3 and widths[0] > widths[2] > 0  # 1000 entering vs 985
    rows = [data for stack, data in c.text if "td" in stack and data in ("read", "normalize", "exact_dedup")]
    assert rows == ["read", "normalize", "exact_dedup"]


def test_every_reason_gets_an_example_group(page: str) -> None:
    c = _parse(page)
    groups = [a["id"] for a in _by_class(c, "group")]
    assert groups == ["ex-read--dead-letter", "ex-normalize--normalize-empty-text",
                      "ex-exact-dedup--exact-dedup-duplicate", "ex-exact-dedup--dead-letter"]
    links = {a.get("href") for t, a, _ in c.elements if t == "a"}
    assert "#ex-exact-dedup--exact-dedup-duplicate" in links  # the funnel table links to examples
    for e in EXAMPLES:
        assert e["id"] in page
    assert "orig-1" in page and "RecordError: line 3 is not JSON" in page
    assert "No examples were captured" in page  # exact_dedup dead letters had none
    assert "4.5 KiB" in page and "image_text" in page


def test_thumbnail_is_inlined_only_for_png(page: str) -> None:
    c = _parse(page)
    imgs = [a for t, a, _ in c.elements if t == "img"]
    assert len(imgs) == 1 and (imgs[0]["src"] or "").startswith("data:image/png;base64,")
    as_b64 = _ex("s", "r", "b64", thumb_png=base64.b64encode(_png()).decode())
    not_png = _ex("s", "r", "gif", thumb_png=b"GIF89a...")
    junk = _ex("s", "r", "junk", thumb_png="not base64 at all!")
    c2 = _parse(render_report({}, [as_b64, not_png, junk], {}))
    assert len([a for t, a, _ in c2.elements if t == "img"]) == 1


HOSTILE = "<script>alert(1)</script>"


def test_everything_from_the_corpus_is_escaped() -> None:
    stats = copy.deepcopy(STATS)
    stats["stages"][1]["rejected"] = {'x" onmouseover="alert(1)': 5}
    stats["modalities"] = {HOSTILE: 3}
    stats["config_hash"] = HOSTILE
    ex = [_ex(HOSTILE, 'x" onmouseover="alert(1)', HOSTILE, source=HOSTILE, error=HOSTILE,
              duplicate_of=HOSTILE, text=HOSTILE + "\x00\udcff")]
    cfg = {"input": [HOSTILE], "note": "</pre><script>x()</script>"}
    page = render_report(stats, ex, cfg, sections=[ReportSection(HOSTILE, "<p>trusted body</p>")])
    assert "<script" not in page.lower()
    assert page.count("&lt;script&gt;") >= 8
    c = _parse(page)
    assert not [n for _, a, _ in c.elements for n in a if n.startswith("on")], "attribute injection"
    page.encode("utf-8")  # lone surrogates must not survive into the page
    assert "\\x00" in page


def test_balance_ok_and_mismatch_banner(page: str) -> None:
    assert "Balance OK" in page and "MISMATCH" not in page
    lost = dict(STATS, kept=890)
    bad = render_report(lost, EXAMPLES, CONFIG)
    _parse(bad)
    assert "MISMATCH" in bad and "Balance OK" not in bad
    assert "10 records unaccounted for" in bad and 'class="banner bad"' in bad
    assert "the last stage (exact_dedup) passed 900 records but kept 890" in bad
    flagged = render_report(dict(STATS, balanced=False), [], {})
    assert "MISMATCH" in flagged and "balanced = false" in flagged


def test_stage_imbalance_is_flagged_in_the_table() -> None:
    stats = copy.deepcopy(STATS)
    stats["stages"][1]["out"] = 980  # 5 records vanish inside normalize
    c = _parse(render_report(stats, [], {}))
    warn = [data for stack, data in c.text if data.endswith("records")]
    assert "-5 records" in warn


def test_registered_sections_render_in_order_and_failures_are_contained() -> None:
    calls: list[int] = []

    def good(stats: Any, examples: Any, config: Any) -> ReportSection:
        calls.append(len(examples))
        return ReportSection("Quality scores", svg_histogram([0.1, 0.5, 0.9], title="quality", x_label="score",
                                                             threshold=0.5))

    def broken(stats: Any, examples: Any, config: Any) -> ReportSection:
        raise RuntimeError("model <missing>")

    register_section("t_quality", good)
    register_section("t_broken", broken)
    register_section("t_nothing", lambda s, e, c: None)
    try:
        assert registered_sections()[-3:] == ("t_quality", "t_broken", "t_nothing")
        page = render_report(STATS, EXAMPLES, CONFIG, sections=[ReportSection("Passed in", "<p>extra</p>")])
        c = _parse(page)
        ids = [a.get("id") for t, a, _ in c.elements if t == "section"]
        assert ids.index("sec-t-quality") < ids.index("sec-t-broken") < ids.index("sec-passed-in") \
            < ids.index("examples") < ids.index("config")
        assert "sec-t-nothing" not in ids
        assert calls == [len(EXAMPLES)]
        assert "RuntimeError: model &lt;missing&gt;" in page
        assert 'class="threshold"' in page
    finally:
        for name in ("t_quality", "t_broken", "t_nothing"):
            unregister_section(name)
    assert "sec-t-quality" not in render_report(STATS, [], {})


def test_examples_are_capped_and_truncated_by_the_report_config() -> None:
    ex = [_ex("normalize", "normalize_empty_text", f"e{i}", text="word " * 100) for i in range(3)]
    page = render_report(STATS, ex, {"report": {"examples_per_reason": 1, "example_chars": 30}})
    c = _parse(page)
    assert len(list(_by_class(c, "example"))) == 1
    assert "2 more examples not shown" in page
    snippets = [d for stack, d in c.text if stack and stack[-1] == "pre" and d.startswith("word")]
    assert snippets == ["word " * 6 + "\u2026"]


def test_empty_and_whitespace_texts_are_visible() -> None:
    ex = [_ex("normalize", "normalize_empty_text", "e1", text=""),
          _ex("normalize", "normalize_empty_text", "e2", text="\n\t ")]
    page = render_report(STATS, ex, {})
    _parse(page)
    assert "(empty text)" in page and "whitespace only, &#x27;\\n\\t &#x27;" in page


def test_config_is_shown_as_yaml(page: str) -> None:
    assert "- a/*.jsonl.gz" in page and "examples_per_reason: 5" in page
    tupled = render_report({}, [], {"stages": ("a", "b"), "sink": {"shard_bytes": 1024}})
    assert "- a\n- b" in tupled


def test_empty_inputs_still_render() -> None:
    page = render_report({}, [], {})
    _parse(page)
    assert "Balance OK" in page and "Nothing was rejected" in page


def test_svg_histogram_from_values_bins_and_triples() -> None:
    svg = svg_histogram([0, 0, 1, 1, 1, 2, float("nan")], title="t", x_label="x", threshold=1.0, bins=3)
    c = _parse(svg)
    heights = [float(a["height"] or 0) for a in _by_class(c, "bin")]
    assert len(heights) == 3 and heights[1] > heights[0] > heights[2] > 0
    assert "2 below, 4 at or above" in svg
    from_edges = svg_histogram({"edges": [0, 1, 2], "counts": [5, 10]}, title="t", x_label="x", threshold=1)
    assert len(list(_by_class(_parse(from_edges), "bin"))) == 2 and "5 below, 10 at or above" in from_edges
    triples = svg_histogram([(0, 1, 3), (1, 2, 0)], title="t", x_label="x")
    assert len(list(_by_class(_parse(triples), "bin"))) == 2
    assert "no data" in svg_histogram([], title="t", x_label="x")
    with pytest.raises(ValueError, match="edges"):
        svg_histogram({"edges": [0, 1], "counts": [1, 2]}, title="t", x_label="x")


def test_svg_bars_and_table_helpers() -> None:
    svg = svg_bars({"a": 10, "<b>": 5}, title="T")
    c = _parse(svg)
    assert len(list(_by_class(c, "bar"))) == 2 and "&lt;b&gt;" in svg
    widths = [float(a["width"] or 0) for t, a, _ in c.elements if t == "rect"]
    assert widths[0] == pytest.approx(2 * widths[1])
    table = html_table(["k", "n"], [["<i>", 1234]], numeric=[1])
    _parse(table)
    assert "&lt;i&gt;" in table and "1,234" in table and "<td class=num>" in table


def test_make_thumbnail() -> None:
    big = io.BytesIO()
    Image.new("RGB", (400, 200), (0, 90, 200)).save(big, format="JPEG")
    thumb = make_thumbnail(big.getvalue(), size=64)
    assert thumb is not None and thumb.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(thumb)) as im:
        assert im.size == (64, 32)
    assert make_thumbnail(b"not an image") is None


def test_register_section_rejects_non_callables() -> None:
    with pytest.raises(TypeError, match="callable"):
        register_section("x", "not a function")  # type: ignore[arg-type]
    assert "x" not in registered_sections()
    assert re.fullmatch(r"[a-z0-9-]+", report._example_anchor("Exact Dedup", "a/b c"))


def test_stage_sections_follow_the_runs_stage_order():
    from winnow.pipeline.report import ReportSection, register_section, render_report, unregister_section

    register_section("zz_b", lambda st, ex, cfg: ReportSection("Section B", "<p>b</p>"))
    register_section("zz_a", lambda st, ex, cfg: ReportSection("Section A", "<p>a</p>"))
    try:
        html = render_report({"read": 0}, [], {"stages": ["zz_a", "zz_b"]})
        assert html.index("Section A") < html.index("Section B")
        html = render_report({"read": 0}, [], {"stages": ["zz_b", "zz_a"]})
        assert html.index("Section B") < html.index("Section A")
    finally:
        unregister_section("zz_a")
        unregister_section("zz_b")


def test_the_packing_line_escapes_the_end_of_document_token():
    from winnow.pipeline.stages.domain_report import tokenizer_section

    stats = {"stage_stats": {"tokenizer": {"training": {"trained": False, "reason": "none"}},
                             "encode": {"packing": {"rows": 3, "length": 2048, "documents": 5, "tokens": 6000,
                                                    "eos_id": 2, "padding_share": 0.02, "path": "packed/shards"}}}}
    html = tokenizer_section(stats, [], {}).html
    assert "<code>&lt;/s&gt;</code> = 2 between documents" in html and "</s>" not in html


def _funnel_rows(page: str) -> dict[str, tuple[float, float, float]]:
    """Per funnel stage: (entering bar's x, its right end, the right end of its last segment)."""
    out: dict[str, tuple[float, float, float]] = {}
    stage = None
    for tag, attrs, stack in _parse(page).elements:
        if tag == "g" and "funnel-stage" in (attrs.get("class") or ""):
            stage = attrs["data-stage"]
        elif tag == "rect" and stage is not None and "g" in stack:
            x, w = float(attrs["x"] or 0), float(attrs["width"] or 0)
            if attrs.get("class") == "in":
                out[stage] = (x, x + w, x)
            elif attrs.get("class") == "seg":
                x0, right, end = out[stage]
                assert x >= end - 1e-9, (stage, "segments overlap")
                out[stage] = (x0, right, x + w)
    return out


def test_no_funnel_bar_is_wider_than_its_entering_bar() -> None:
    # Many small reasons (each drawn at least 1.5 px wide) once pushed the segments past the
    # entering bar, and the augment stage passes on more records than entered it.
    reasons = {f"quality_rule_{i:02d}": 2 for i in range(24)} | {"quality_word_count": 5835}
    kept_q = 9520 - sum(reasons.values())
    stats = {
        "read": 9612, "kept": kept_q - 8, "rejected": sum(reasons.values()) + 8, "dead_letter": 92, "augmented": 300, "balanced": True,
        "stages": [
            {"name": "read", "in": 9612, "out": 9520, "rejected": {}, "dead_letter": 92},
            {"name": "quality", "in": 9520, "out": kept_q, "rejected": reasons, "dead_letter": 0},
            {"name": "toxicity", "in": kept_q, "out": kept_q - 8, "rejected": {"toxicity_toxic": 8}, "dead_letter": 0},
            {"name": "augment", "in": kept_q - 8, "out": kept_q - 8 + 300, "rejected": {}, "dead_letter": 0},
            {"name": "encode", "in": kept_q + 292, "out": kept_q + 292, "rejected": {}, "dead_letter": 0},
        ],
    }
    page = render_report(stats, [], {})
    rows = _funnel_rows(page)
    assert list(rows) == ["read", "quality", "toxicity", "augment", "encode"]
    for stage, (x0, right, end) in rows.items():
        assert end > x0 and end <= right + 1e-9, (stage, right, end)
    # Every segment of a balanced stage is drawn: the segments fill the entering bar.
    assert rows["quality"][2] == pytest.approx(rows["quality"][1], abs=0.15)
    # The augment stage's added records are said, not drawn past its bar, and not flagged.
    assert "(+300 augmented)" in page and "+300 records" not in page
    assert "-300 records" not in page


def test_funnel_flags_records_a_stage_added_without_augmenting() -> None:
    stats = copy.deepcopy(STATS)
    stats["stages"][1]["out"] = 995  # 10 records appear inside normalize, none augmented
    page = render_report(stats, [], {})
    for stage, (_x0, right, end) in _funnel_rows(page).items():
        assert end <= right + 1e-9, stage
    c = _parse(page)
    assert "+10 records" in [data for stack, data in c.text if data.endswith("records")]


def test_augmented_records_counted_on_their_own_are_no_mismatch() -> None:
    # The pipeline's funnel follows the records read: the augment stage's out is its in, and the
    # 69 augmented rows are counted on their own (rows = kept + augmented).
    stats = copy.deepcopy(STATS)
    stats["stages"].append({"name": "augment", "in": 900, "out": 900, "rejected": {}, "dead_letter": 0})
    stats.update(augmented=69, shards={"count": 1, "rows": 969, "bytes": 1})
    page = render_report(stats, [], {})
    assert "Balance OK" in page and "MISMATCH" not in page
    assert "(+69 augmented)" in page  # in the funnel's summary and the table
    for stage, (_x0, right, end) in _funnel_rows(page).items():
        assert end <= right + 1e-9, stage
    # a last stage that lost records is still a mismatch
    stats["stages"][-1]["out"] = 890
    assert "the last stage (augment) passed 890 records but kept 900." in render_report(stats, [], {})
