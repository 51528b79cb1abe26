"""The demo corpus: deterministic, made of real text, and holding what it says it planted."""

from __future__ import annotations

import collections
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path
from typing import Any

import pytest
import zstandard
from PIL import Image

from winnow.errors import OutputError
from winnow.demo import corpus as demo
from winnow.demo.corpus import DemoCorpus, build_demo_corpus, write_text_corpus
from winnow.demo.text import man_sections

from .textroot import other_text_root


MACHINE_ROOT = "/usr/share/man"


@pytest.fixture(scope="module", params=["machine-text", "other-text-root"])
def man_root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """This machine's man pages, and a text root with other and extra pages: the tests on the
    corpus assert only what holds for any machine's text."""
    if request.param == "machine-text":
        return MACHINE_ROOT
    return other_text_root(tmp_path_factory.mktemp("man"))


@pytest.fixture(scope="module")
def corpus(man_root: str, tmp_path_factory: pytest.TempPathFactory) -> DemoCorpus:
    demo.collect_real_text.cache_clear()
    return build_demo_corpus(str(tmp_path_factory.mktemp("demo") / "corpus"), man_root=man_root)


def _jsonl_bytes(path: str) -> bytes:
    raw = Path(path).read_bytes()
    if path.endswith(".gz"):
        d = zlib.decompressobj(31)
        return d.decompress(raw)
    if path.endswith(".zst"):
        return zstandard.ZstdDecompressor().decompress(raw)
    return raw


def _classify(line: bytes) -> tuple[str, Any]:
    """What a strict reader makes of one JSONL line."""
    try:
        s = line.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8", None
    try:
        obj = json.loads(s)
    except ValueError:
        return "malformed_json", None
    if not isinstance(obj, dict):
        return "not_an_object", None
    if not isinstance(obj.get("text"), str):
        return "wrong_type", None
    return "record", obj


def _complete_lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]  # whatever follows the last newline is not a complete line


@pytest.fixture(scope="module")
def parsed(corpus: DemoCorpus) -> dict[str, Any]:
    kinds: collections.Counter[str] = collections.Counter()
    records: list[dict[str, Any]] = []
    per_file: dict[str, tuple[int, int]] = {}
    for f in corpus.files:
        if not f.kind.startswith("jsonl"):
            continue
        lines = _complete_lines(_jsonl_bytes(f.path))
        good = 0
        for line in lines:
            kind, obj = _classify(line)
            kinds[kind] += 1
            if obj is not None:
                records.append(obj)
                good += 1
        per_file[f.path] = (len(lines), good)
    return {"kinds": kinds, "records": records, "per_file": per_file}


def test_default_scale_reaches_the_text_volume(corpus: DemoCorpus) -> None:
    assert corpus.text_bytes >= demo.BASE_TEXT_BYTES
    text_files = [f for f in corpus.files if f.kind.startswith("jsonl")]
    assert corpus.records_written == sum(f.records for f in corpus.files) > 0
    assert corpus.malformed_written == sum(f.malformed for f in corpus.files)
    assert len(text_files) >= 3 and all(f.records > 0 for f in text_files)


def test_same_seed_is_byte_identical_across_processes(corpus: DemoCorpus, man_root: str, tmp_path: Path) -> None:
    other = tmp_path / "again"
    env = dict(os.environ, PYTHONHASHSEED="4242")
    code = "import sys; from winnow.demo.corpus import build_demo_corpus as b; b(sys.argv[1], man_root=sys.argv[2])"
    subprocess.run([sys.executable, "-c", code, str(other), man_root], check=True, env=env, timeout=120)
    a_root, b_root = Path(corpus.root), other
    a_files = sorted(p.relative_to(a_root) for p in a_root.rglob("*") if p.is_file())
    b_files = sorted(p.relative_to(b_root) for p in b_root.rglob("*") if p.is_file())
    assert a_files == b_files
    for rel in a_files:
        if rel.name == "demo-manifest.json":
            continue  # names its own root directory
        assert (a_root / rel).read_bytes() == (b_root / rel).read_bytes(), rel


def test_seed_changes_the_corpus(tmp_path: Path) -> None:
    a = build_demo_corpus(str(tmp_path / "a"), scale=0.02, seed=1)
    b = build_demo_corpus(str(tmp_path / "b"), scale=0.02, seed=2)
    pa, pb = Path(a.inputs[0]), Path(b.inputs[0])
    assert pa.name == pb.name and pa.read_bytes() != pb.read_bytes()


def test_jsonl_lines_balance_per_file(corpus: DemoCorpus, parsed: dict[str, Any]) -> None:
    for f in corpus.files:
        if f.kind.startswith("jsonl"):
            lines, good = parsed["per_file"][f.path]
            assert (lines, good) == (f.units, f.records), f.path
            truncated = 1 if "truncated" in f.path else 0
            assert f.malformed == f.units - f.records + truncated, f.path
    assert corpus.expected_read == corpus.records_written + corpus.malformed_written
    assert corpus.lines_written == {f.path: f.units for f in corpus.files}


def test_planted_parse_failures_are_there(corpus: DemoCorpus, parsed: dict[str, Any]) -> None:
    kinds = parsed["kinds"]
    for name in ("malformed_json", "invalid_utf8", "wrong_type", "not_an_object"):
        assert corpus.planted[name] >= 1
        assert kinds[name] == corpus.planted[name], name
    bad = sum(kinds.values()) - kinds["record"]
    assert 0.005 <= bad / sum(kinds.values()) <= 0.02  # about 1% of lines


def test_planted_duplicates_and_empties(corpus: DemoCorpus, parsed: dict[str, Any]) -> None:
    texts = [r["text"] for r in parsed["records"]]
    empties = [t for t in texts if not t.strip()]
    assert len(empties) == corpus.planted["empty_text"] >= 4
    real = [t for t in texts if t.strip()]
    exact_extra = len(real) - len(set(real))
    ws_extra = len(real) - len({" ".join(t.split()) for t in real})
    assert exact_extra == corpus.planted["exact_duplicates"] > 0
    assert ws_extra - exact_extra == corpus.planted["whitespace_duplicates"] > 0
    ids = [r["id"] for r in parsed["records"] if "id" in r]
    assert len(ids) == len(set(ids)), "duplicates must carry different ids"


def test_noid_file_has_no_ids_and_is_zstd(corpus: DemoCorpus) -> None:
    (path,) = [p for p in corpus.inputs if p.endswith(".zst")]
    lines = _complete_lines(_jsonl_bytes(path))
    assert lines and all("id" not in json.loads(line) for line in lines)


def test_truncated_gzip_tail(corpus: DemoCorpus) -> None:
    (f,) = [f for f in corpus.files if "truncated" in f.path]
    raw = Path(f.path).read_bytes()
    with pytest.raises(EOFError):
        gzip.decompress(raw)
    d = zlib.decompressobj(31)
    data = d.decompress(raw)
    assert not d.eof, "the stream must end before its end-of-stream marker"
    assert corpus.planted["truncated_gzip_tail"] == f.malformed == 1
    assert len(_complete_lines(data)) == f.units > 0
    assert data.rsplit(b"\n", 1)[1].startswith(b'{"id": "truncated-tail"')


def _samples(path: str) -> tuple[dict[str, dict[str, bytes]], list[str]]:
    groups: dict[str, dict[str, bytes]] = collections.defaultdict(dict)
    with tarfile.open(path) as tf:
        names = tf.getnames()
        for m in tf.getmembers():
            key, ext = m.name.rsplit(".", 1)
            groups[key][ext] = tf.extractfile(m).read()  # type: ignore[union-attr]
    return groups, names


def _decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001
        return False


def test_tar_pairs(corpus: DemoCorpus) -> None:
    (f,) = [f for f in corpus.files if f.kind == "tar"]
    groups, names = _samples(f.path)
    assert names == sorted(names)
    escaping = [n for n in names if n.startswith("/") or ".." in n.split("/")]
    assert len(escaping) == corpus.planted["escaping_tar_member"] == 1
    pairs = {k: g for k, g in groups.items() if ".." not in k}
    assert len(groups) == f.units and len(pairs) == f.units - 1
    images = {k: g.get("png", g.get("jpg")) for k, g in pairs.items()}
    assert all(img is not None and "txt" in pairs[k] for k, img in images.items())
    corrupt = [k for k, img in images.items() if not _decodes(img)]  # type: ignore[arg-type]
    assert len(corrupt) == corpus.planted["corrupt_image"] == f.malformed - 1
    seen = collections.Counter((images[k], pairs[k]["txt"]) for k in pairs)
    assert sum(n - 1 for n in seen.values()) == corpus.planted["duplicate_images"] > 0
    with Image.open(io.BytesIO(next(iter(images.values())))) as im:  # type: ignore[arg-type]
        assert 64 <= min(im.size) and max(im.size) <= 256


def test_tar_members_have_fixed_metadata(corpus: DemoCorpus) -> None:
    (path,) = [p for p in corpus.inputs if p.endswith(".tar")]
    with tarfile.open(path) as tf:
        assert {(m.mtime, m.uid, m.mode) for m in tf.getmembers()} == {(1_700_000_000, 0, 0o644)}


def test_image_dir_has_sidecars(corpus: DemoCorpus) -> None:
    (f,) = [f for f in corpus.files if f.kind == "imagedir"]
    images = sorted(p for p in Path(f.path).iterdir() if p.suffix in (".png", ".jpg"))
    assert len(images) == f.units >= 4
    for p in images:
        assert _decodes(p.read_bytes())
        caption = p.with_suffix(".txt").read_text()
        assert caption.startswith("A ") and " on " in caption


def test_uses_real_text(corpus: DemoCorpus, man_root: str, parsed: dict[str, Any]) -> None:
    from pydoc_data.topics import topics

    texts = {r["text"] for r in parsed["records"]}
    assert sum(1 for t in topics.values() if t.strip() in texts) >= 10
    origins = collections.Counter(r.get("origin") for r in parsed["records"])
    assert origins["pydoc"] and origins["docstring"]
    root = Path(man_root)
    if list(root.glob("man[1-9]/*.gz")):
        # Man pages in the languages the root has, English always among them.
        langs = {r["lang"] for r in parsed["records"] if r.get("origin") == "man"}
        have = {"en"} | {d.name.split("_")[0] for d in root.iterdir() if d.is_dir() and not d.name.startswith("man")}
        assert "en" in langs and langs <= have


@pytest.mark.parametrize(
    "roff, expected",
    [
        (".TH LS 1\n.SH NAME\nls \\- list\n.SH DESCRIPTION\nList \\fBfiles\\fP.\n.PP\nMore.\n",
         ("ls(1)", [("NAME", "ls - list"), ("DESCRIPTION", "List files.\n\nMore.")])),
        ('.TH X 8\n.SH \\(:UBERSICHT\n.BR a ", " b\n.\\" a comment\ncaf\\(\'e\n',
         ("x(8)", [("ÜBERSICHT", "a, b café")])),
        (".so man1/other.1\n", ("", [])),
        ('.TH Z 1\n.SH ENV\n.IP "DPKG_ROOT" 4\nSets the\nroot.\n.TP\n.B \\-v\nVerbose.\n',
         ("z(1)", [("ENV", "DPKG_ROOT\n\nSets the root.\n\n-v\n\nVerbose.")])),
        (".TH Y 1\n.SH EXAMPLE\n.nf\nline one\nline two\n.fi\n", ("y(1)", [("EXAMPLE", "line one\nline two")])),
    ],
)
def test_roff_to_text(roff: str, expected: tuple[str, list[tuple[str, str]]]) -> None:
    assert man_sections(roff) == expected


def test_write_text_corpus_grows_past_the_real_text(tmp_path: Path) -> None:
    demo.collect_real_text.cache_clear()
    pool = demo.collect_real_text(str(tmp_path / "no-man-pages"))  # pydoc + docstrings only
    pool_bytes = sum(len(d.text.encode()) for d in pool)
    target = int(pool_bytes * 1.5)
    c = write_text_corpus(str(tmp_path / "bench"), target, seed=3, man_root=str(tmp_path / "no-man-pages"))
    assert c.planted == {} and c.malformed_written == 0
    recs = [json.loads(line) for p in c.inputs for line in gzip.decompress(Path(p).read_bytes()).splitlines()]
    assert len(recs) == c.records_written
    assert target <= c.text_bytes == sum(len(r["text"].encode()) for r in recs)
    assert any("-v1" in r["id"] for r in recs), "mutated copies fill the volume past the real text"
    assert len({" ".join(r["text"].split()) for r in recs}) == len(recs), "no exact duplicates"
    demo.collect_real_text.cache_clear()


def test_rebuild_replaces_a_previous_demo_but_refuses_other_dirs(tmp_path: Path) -> None:
    first = build_demo_corpus(str(tmp_path / "d"), scale=0.01)
    second = build_demo_corpus(str(tmp_path / "d"), scale=0.01)
    assert first == second
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    with pytest.raises(OutputError, match="not empty"):
        build_demo_corpus(str(other), scale=0.01)
    assert (other / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("scale", [0, -1.0, float("nan"), float("inf")])
def test_bad_scale(tmp_path: Path, scale: float) -> None:
    with pytest.raises(ValueError, match="scale"):
        build_demo_corpus(str(tmp_path), scale=scale)


def test_the_other_text_root_has_other_and_extra_pages(tmp_path: Path) -> None:
    from .textroot import NEW_LANGUAGE

    demo.collect_real_text.cache_clear()
    other = demo.collect_real_text(other_text_root(tmp_path / "man"))
    here = demo.collect_real_text(MACHINE_ROOT)
    demo.collect_real_text.cache_clear()
    other_man = {(d.lang, d.text) for d in other if d.origin == "man"}
    here_man = {(d.lang, d.text) for d in here if d.origin == "man"}
    assert other_man - here_man, "pages this machine does not have"
    assert NEW_LANGUAGE in {lang for lang, _ in other_man} - {lang for lang, _ in here_man}
    assert any(t.startswith(("calendar", "difflib", "statistics")) for d in other for t in [d.title])


# --- `winnow demo` with augment (issue 12) -----------------------------------------------


def test_demo_augment_uses_what_is_installed_and_says_what_is_missing(tmp_path: Path, monkeypatch) -> None:
    from winnow.pipeline.cli import demo_augment

    overrides, note = demo_augment()
    methods = next(o for o in overrides if o.startswith("augment.methods=")).split("=", 1)[1].split(",")
    assert {"entity", "image"} <= set(methods)
    if shutil.which("apertium"):
        assert "backtranslate" in methods and any(o.startswith("augment.pivots=") for o in overrides)
    # Without Apertium on PATH the demo still augments, without back-translation, and says so in one line.
    monkeypatch.setenv("PATH", str(tmp_path))
    overrides, note = demo_augment()
    methods = next(o for o in overrides if o.startswith("augment.methods=")).split("=", 1)[1].split(",")
    assert "backtranslate" not in methods and {"entity", "image"} <= set(methods)
    assert note is not None and "\n" not in note and note.startswith("winnow: demo: augment runs without back-translation")
    assert "apt-get install apertium" in note


@pytest.mark.slow
def test_demo_run_augments_and_counts_augmented_rows_on_their_own(tmp_path: Path, capsys) -> None:
    import pyarrow as pa
    import yaml

    from winnow.pipeline.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--scale", "0.1"]) == 0
    printed = capsys.readouterr().out
    stats = json.loads((out / "stats.json").read_text())
    stages = yaml.safe_load((out / "config.yaml").read_text())["stages"]
    assert "augment" in stages and stages.index("tokenizer") < stages.index("augment") < stages.index("encode")
    rows = [r for p in sorted((out / "shards").glob("*.arrow")) for r in pa.ipc.open_file(p).read_all().select(
        ["id", "aug_from", "aug_method"]).to_pylist()]
    originals = {r["id"] for r in rows if r["aug_from"] is None}
    augmented = [r for r in rows if r["aug_from"] is not None]
    # read = kept_originals + rejected + dead_letter; rows = kept_originals + augmented
    assert stats["balanced"] and stats["read"] == stats["kept"] + stats["rejected"] + stats["dead_letter"]
    assert stats["shards"]["rows"] == len(rows) == stats["kept"] + stats["augmented"]
    assert len(originals) == stats["kept"] and len(augmented) == stats["augmented"] > 0
    assert sum(stats["augmented_by_method"].values()) == stats["augmented"]
    assert all(r["aug_from"] in originals for r in augmented)
    assert {r["aug_method"] for r in augmented} <= set(stats["stage_stats"]["augment"]["config"]["methods"])
    assert (f"rows {stats['shards']['rows']:,} = kept {stats['kept']:,} + augmented {stats['augmented']:,}"
            in printed)
    # the funnel follows the records read; the report says so and sees no mismatch
    funnel = next(s for s in stats["stages"] if s["name"] == "augment")
    assert funnel["out"] == funnel["in"] - funnel["dead_letter"] and stats["stages"][-1]["out"] == stats["kept"]
    html = (out / "report.html").read_text()
    assert "MISMATCH" not in html and f"(+{stats['augmented']:,} augmented)" in html
