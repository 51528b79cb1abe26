"""Record helpers: ids, strict meta JSON, encodable strings, byte sizes."""

import json

import pytest

from winnow.pipeline.records import clean_str, make_dead_letter, make_record, meta_json, record_bytes


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("plain", "plain"),
        ("caf\u00e9 \u65e5\u672c", "caf\u00e9 \u65e5\u672c"),
        ("bad\udcffname.jsonl", "bad\\xffname.jsonl"),  # surrogate-escaped byte from a file name
        ("lone \ud800 high", "lone \\ud800 high"),
    ],
)
def test_clean_str(raw, expected):
    assert clean_str(raw) == expected
    clean_str(raw).encode("utf-8")  # always encodable


def test_meta_is_strict_json_with_sorted_keys():
    m = meta_json({"b": float("nan"), "a": [float("inf"), 1.5], "c": {"d": -float("inf")}})
    assert m == '{"a": [null, 1.5], "b": null, "c": {"d": null}}'
    json.loads(m)  # strict parsers accept it


def test_record_ids_sources_and_modality():
    r = make_record(source="f\udcff.jsonl:3", text="t", meta={"k": 1})
    assert r["source"] == "f\\xff.jsonl:3" and r["modality"] == "text" and len(r["id"]) == 32
    assert make_record(source="s", text="t")["id"] == r["id"]  # content hash ignores the source
    assert make_record(source="s", image=b"x", text="c")["modality"] == "image_text"
    assert make_record(source="s", audio=b"x")["modality"] == "audio"
    with pytest.raises(ValueError, match="modality"):
        make_record(source="s", text="t", modality="video")


def test_dead_letter_error_and_source_are_encodable():
    d = make_dead_letter(stage="read", error="cannot open b\udce9", source="x\udce9", raw=b"\xff\xfe")
    assert d["error"] == "cannot open b\\xe9" and d["source"] == "x\\xe9" and d["reject_reason"] == "dead_letter"
    assert d["duplicate_of"] is None and d["duplicate_of_source"] is None


def test_record_bytes_counts_utf8_bytes_not_characters():
    ascii_rec = {"text": "a" * 300}
    cjk_rec = {"text": "\u65e5" * 100}  # 100 characters, 300 bytes
    assert record_bytes(ascii_rec) == record_bytes(cjk_rec)
    assert record_bytes({"text": None, "image": b"1234"}) == record_bytes({"text": "1234"})


@pytest.mark.parametrize("meta", [
    {},
    {"b": 1, "a": [1.5, "caf\u00e9", None, True], "c": {"z": -0.0, "y": 2**80}, "t": (1, "x")},
    {"nan": float("nan"), "deep": {"inf": [float("-inf"), 1e300]}},
    {"bytes": b"\x00\xff", "obj": object, "nl": "a\nb\u2028\x00"},
    {"lone": "\ud800"},
])
def test_meta_json_is_json_dumps_with_its_arguments(meta):
    """meta_json encodes through one encoder made once; the text is json.dumps's, byte for byte."""
    from winnow.pipeline.records import _finite

    def reference(m):  # what meta_json did with json.dumps
        args = dict(sort_keys=True, ensure_ascii=False, default=str, allow_nan=False)
        try:
            return json.dumps(m, **args)
        except ValueError:  # NaN and infinities: null
            return json.dumps(_finite(dict(m)), **args)

    assert meta_json(meta) == reference(meta)
    with pytest.raises(TypeError):
        meta_json({1: "int key", "b": "str key"})  # keys that cannot be sorted, as json.dumps
