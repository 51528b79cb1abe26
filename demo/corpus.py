"""The demo corpus: real text and generated images, with known problems planted in it.

Nothing here is shipped data. The text is assembled at run time from what every Python
machine has: the ``pydoc`` topics, docstrings of a fixed list of standard-library modules and,
where installed, man pages under ``/usr/share/man`` in several languages (roff stripped to
plain text). Images are drawn with Pillow from a seeded RNG and captioned from what was drawn.

Into that clean material go planted problems whose counts :attr:`DemoCorpus.planted` reports:
exact, whitespace-only and near duplicates (text and images), empty texts, malformed JSON lines, invalid UTF-8, wrongly
typed ``text`` fields, a ``.jsonl.gz`` cut off mid-stream, duplicate and corrupt images, images
captioned with another picture's caption, one blank, blurred, tiny and extreme-aspect image each
(for ``image_quality``), and a tar member whose path escapes the archive. The same ``seed`` and ``scale`` give byte-identical
files on the same machine (fixed gzip and tar timestamps, sorted members, no hash ordering).

Layout under ``dest``::

    text/docs-0000.jsonl.gz ...   records {"id", "text", "origin", "lang", "title", ...}
    text/docs-extra.jsonl         plain JSONL (shares the planted problems)
    text/docs-noid.jsonl.zst      records without "id" (the reader hashes their content)
    text/truncated-0000.jsonl.gz  complete lines, then a deflate stream cut mid-line
    images/pairs-0000.tar         WebDataset samples <key>.png|jpg + <key>.txt (+ <key>.json);
                                  zz-defect-<name>.* are the planted image_quality defects
    images/dir/                   images with sidecar <stem>.txt captions
    demo-manifest.json            this description (not an input)

The text is collected by :mod:`winnow.demo.text` and the images are drawn by
:mod:`winnow.demo.images`; this module assembles them, plants the problems and
writes the files.
"""

from __future__ import annotations

import gzip
import json
import math
import random
import shutil
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import xxhash

from winnow.errors import OutputError
from winnow.demo.images import draw_image, tar_bytes
from winnow.demo.text import STDLIB_MODULES, clean_records, collect_real_text, dedup_key

__all__ = [
    "BASE_TEXT_BYTES",
    "BASE_IMAGES",
    "STDLIB_MODULES",
    "DemoFile",
    "DemoCorpus",
    "collect_real_text",
    "build_demo_corpus",
    "write_text_corpus",
]

#: UTF-8 bytes of clean text at ``scale=1.0``.
BASE_TEXT_BYTES = 8_000_000
#: Generated images at ``scale>=1.0`` (tar samples plus the image directory).
BASE_IMAGES = 300
_FILE_TEXT_BYTES = 2_500_000
_MANIFEST = "demo-manifest.json"


@dataclass(frozen=True)
class DemoFile:
    """One written input.

    Attributes:
        path: absolute path of the file (or directory, for ``imagedir``).
        kind: ``jsonl``, ``jsonl.gz``, ``jsonl.zst``, ``tar`` or ``imagedir``.
        units: JSONL lines (for a truncated file: its complete lines), tar samples (member
            groups by key, the escaping member counting as one) or images in the directory.
        records: units that are well-formed records (empty texts and duplicates included).
        malformed: planted units no reader can turn into a record (expected dead letters);
            a truncated file counts its cut-off tail as one.
    """

    path: str
    kind: str
    units: int
    records: int
    malformed: int


@dataclass(frozen=True)
class DemoCorpus:
    """What :func:`build_demo_corpus` wrote.

    Attributes:
        root: the destination directory.
        inputs: paths to pass to the pipeline as input, in a fixed order.
        files: every input with its counts.
        planted: count of each planted problem by name.
        records_written: well-formed records over all inputs.
        malformed_written: expected dead letters over all inputs.
        text_bytes: UTF-8 bytes of the clean (non-planted) texts.
    """

    root: str
    inputs: tuple[str, ...]
    files: tuple[DemoFile, ...]
    planted: dict[str, int]
    records_written: int
    malformed_written: int
    text_bytes: int

    @property
    def lines_written(self) -> dict[str, int]:
        """Units (lines, samples, images) per input path."""
        return {f.path: f.units for f in self.files}

    @property
    def expected_read(self) -> int:
        """What ``read`` should count: records plus dead letters."""
        return self.records_written + self.malformed_written

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["expected_read"] = self.expected_read
        return d


# ---------------------------------------------------------------------------------------------
# Writers


def _line(rec: Any) -> bytes:
    return json.dumps(rec, ensure_ascii=False).encode("utf-8") + b"\n"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)


def _truncated_gzip(complete: bytes, tail: bytes) -> bytes:
    """A gzip stream whose ``complete`` bytes decode fully and whose ``tail`` is cut mid-way."""
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    head = comp.compress(complete) + comp.flush(zlib.Z_SYNC_FLUSH)
    rest = comp.compress(tail) + comp.flush(zlib.Z_SYNC_FLUSH)
    return head + rest[: len(rest) // 2]


def _prepare_dest(dest: str) -> Path:
    root = Path(dest).resolve()
    if root.exists() and any(root.iterdir()):
        if not (root / _MANIFEST).is_file():
            raise OutputError(
                f"demo destination {root} is not empty and holds no {_MANIFEST}; "
                "pass an empty or new directory"
            )
        for sub in ("text", "images"):
            shutil.rmtree(root / sub, ignore_errors=True)
        (root / _MANIFEST).unlink()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _split(lines: list[bytes], parts: int) -> list[list[bytes]]:
    n = len(lines)
    return [lines[k * n // parts:(k + 1) * n // parts] for k in range(parts)]


def write_text_corpus(dest: str, target_bytes: int, seed: int = 0, *,
                      man_root: str = "/usr/share/man") -> DemoCorpus:
    """Clean JSONL.gz files totalling about ``target_bytes`` of text, for benchmarks.

    No problems are planted; every line is a distinct record with an ``id``.

    Args:
        dest: local directory (new, empty, or a previous demo output).
        target_bytes: UTF-8 bytes of text to write.
        seed: picks the sample and the mutations.
        man_root: where man pages are looked for.
    """
    root = _prepare_dest(dest)
    recs = list(clean_records(target_bytes, seed, man_root))
    text_bytes = sum(len(r["text"].encode("utf-8")) for r in recs)
    parts = max(1, math.ceil(text_bytes / (4 * _FILE_TEXT_BYTES)))
    files = []
    for k, chunk in enumerate(_split([_line(r) for r in recs], parts)):
        path = root / "text" / f"docs-{k:04d}.jsonl.gz"
        _write(path, _gzip(b"".join(chunk)))
        files.append(DemoFile(str(path), "jsonl.gz", len(chunk), len(chunk), 0))
    corpus = DemoCorpus(str(root), tuple(f.path for f in files), tuple(files), {},
                        len(recs), 0, text_bytes)
    _write(root / _MANIFEST, json.dumps(corpus.to_json(), indent=2).encode() + b"\n")
    return corpus


# ---------------------------------------------------------------------------------------------
# Planted problems


def _whitespace_variant(text: str, j: int) -> str:
    """``text`` changed only in whitespace (never equal to it)."""
    kind = j % 4
    if kind == 0:
        return text + "  \n"
    if kind == 1:
        return "\n" + text
    if kind == 2:
        return text.replace(" ", "  ", 1) if " " in text else text + " "
    return text.replace("\n", "\r\n") if "\n" in text else " " + text


def _malformed_json(j: int, rec: dict[str, Any]) -> bytes:
    """A line no JSON parser accepts, of one of six kinds."""
    snippet = " ".join(rec["text"].split())[:120]
    kind = j % 6
    if kind == 0:  # cut mid-record, on a character boundary
        s = json.dumps(rec, ensure_ascii=False)
        out = s[: max(2, len(s) // 2)]
    elif kind == 1:
        out = f"{{'id': 'single-quotes-{j}', 'text': {snippet!r}}}"
    elif kind == 2:
        out = f'{{"id": "trailing-comma-{j}", "text": {json.dumps(snippet, ensure_ascii=False)},}}'
    elif kind == 3:
        out = f"note {j}: {snippet}"
    elif kind == 4:
        out = f'{{"id": "two-objects-{j}", "text": "a"}} {{"id": "b", "text": "c"}}'
    else:
        out = f'{{"id": "control-char-{j}", "text": "raw\ttab and\u0001bell"}}'
    return out.encode("utf-8") + b"\n"


def _planted_lines(main: list[dict[str, Any]], rng: random.Random,
                   planted: dict[str, int]) -> list[tuple[bytes, bool]]:
    """Duplicates, empty texts and malformed lines to mix into ``main``: (line, malformed)."""
    out: list[tuple[bytes, bool]] = []
    candidates = [r for r in main if len(r["text"]) >= 20]
    k_dup, k_ws = max(3, round(0.02 * len(main))), max(2, round(0.01 * len(main)))
    picks = rng.sample(candidates, min(len(candidates), k_dup + k_ws))
    for j, r in enumerate(picks[:k_dup]):
        out.append((_line({**r, "id": f"dup-{j:05d}"}), False))
    for j, r in enumerate(picks[k_dup:]):
        out.append((_line({**r, "id": f"wsdup-{j:05d}", "text": _whitespace_variant(r["text"], j)}), False))
    planted["exact_duplicates"] = len(picks[:k_dup])
    planted["whitespace_duplicates"] = len(picks[k_dup:])
    # Near-duplicates (for minhash_dedup): light word edits of long texts; the ids sort after
    # every original, so the original is the one kept.
    from winnow.demo.dedup_evalset import mutate_text

    long_docs = [r for r in main if len(r["text"].split()) >= 200]
    k_near = min(len(long_docs), max(3, round(0.01 * len(main))))
    near_bases = rng.sample(long_docs, k_near)
    for j, r in enumerate(near_bases):
        # A light edit can touch only whitespace; such a copy is an exact duplicate, not a near one.
        for _ in range(8):
            text = mutate_text(r["text"], 0.004, rng, boiler=j % 3 == 0)
            if dedup_key(text) != dedup_key(r["text"]):
                break
        out.append((_line({**r, "id": f"zz-near-{j:05d}", "text": text, "near_of": r["id"]}), False))
    planted["near_duplicates"] = k_near
    blanks = ("", " ", "\n\n", "\t \r\n")
    k_empty = max(4, round(0.003 * len(main)))
    for j in range(k_empty):
        out.append((_line({"id": f"empty-{j:04d}", "text": blanks[j % 4], "origin": "planted"}), False))
    planted["empty_text"] = k_empty
    used = {id(r) for r in (*picks, *near_bases)}
    out += [(_line(r), False) for r in _filter_plants(main, rng, planted, used)]

    m = max(12, round(0.01 * (len(main) + len(out)) / 0.99))  # ~1% of all lines
    k_utf8, k_type, k_obj = max(1, m // 20), max(2, m // 10), max(1, m // 20)
    k_json = m - k_utf8 - k_type - k_obj
    for j in range(k_json):
        out.append((_malformed_json(j, rng.choice(main)), True))
    for j in range(k_utf8):
        snippet = " ".join(rng.choice(main)["text"].split())[:80].encode("utf-8")
        out.append((b'{"id": "bad-utf8-%d", "text": "' % j + snippet.replace(b'"', b"'")
                    + b' caf\xe9 \xff\xfe latin-1 bytes"}\n', True))
    wrong: tuple[Any, ...] = (12345, ["a", "list", "of", "words"], {"nested": "object"}, True)
    for j in range(k_type):
        out.append((_line({"id": f"wrong-type-{j}", "text": wrong[j % 4], "origin": "planted"}), True))
    not_obj = ('["a", "json", "array"]', "42", '"just a string"', "null")
    for j in range(k_obj):
        out.append((not_obj[j % 4].encode() + b"\n", True))
    planted.update(malformed_json=k_json, invalid_utf8=k_utf8, wrong_type=k_type, not_an_object=k_obj)
    return out


def _near_duplicate_images(picks: list, rng: random.Random) -> list:
    """Resized or re-encoded copies of ``picks`` (for image_dedup), with the same caption."""
    import io

    from PIL import Image

    out = []
    for data, _ext, caption, meta in picks:
        with Image.open(io.BytesIO(data)) as im:
            img = im.convert("RGB")
        w, h = img.size
        buf = io.BytesIO()
        if rng.random() < 0.5:
            img.resize((w * 3 // 4, h * 3 // 4), Image.Resampling.BILINEAR).save(buf, format="PNG")
            out.append((buf.getvalue(), "png", caption, meta))
        else:
            img.save(buf, format="JPEG", quality=90)
            out.append((buf.getvalue(), "jpg", caption, meta))
    return out


_ABUSE = ("You are a fucking idiot and nobody wants your stupid shit here. Shut up, you pathetic "
          "asshole. Everybody hates you, so fuck off and stay away from this page.")


def _filter_plants(main: list[dict[str, Any]], rng: random.Random,
                   planted: dict[str, int], used: set[int]) -> list[dict[str, Any]]:
    """Records for the text filters: personal data, a leaked key, an abusive paragraph.

    Each is an English pydoc topic or docstring that passes the default quality rules, with
    the planted sentence added, so it usually reaches the toxicity and PII stages of a default
    run (model_quality may still drop some of them). The base records are taken out of
    ``main`` (so a plant is no near-duplicate of a record left in the corpus); records in
    ``used`` (originals of other plants) are never bases.
    """
    from winnow.demo.pii_evalset import sample_value
    from winnow.filters.quality import QualityFilter

    q = QualityFilter()
    bases = [r for r in main if id(r) not in used and r.get("lang") == "en" and r.get("origin") in ("pydoc", "docstring")
             and len(r["text"]) > 600 and q.process({"text": r["text"], "modality": "text", "lang": "en"})[1].keep]
    if len(bases) < 8:
        planted.update(pii_records=0, secret_records=0, toxic_records=0)
        return []
    k = min(max(2, round(0.001 * len(main))), len(bases) // 4)
    chosen = rng.sample(bases, 4 * k)  # distinct bases: no plant duplicates another
    taken = {id(r) for r in chosen}
    main[:] = [r for r in main if id(r) not in taken]
    picks = iter(r["text"] for r in chosen)
    out = []
    for j in range(2 * k):
        value = ", ".join(f"{t}: {sample_value(t, rng)}" for t in rng.sample(["email", "phone", "iban", "credit_card"], 2))
        text = f"Questions about this page go to the maintainer ({value}).\n\n{next(picks)}"
        out.append({"id": f"pii-{j:04d}", "text": text, "origin": "planted", "lang": "en"})
    for j in range(k):
        key = "AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
        text = f"{next(picks)}\n\nThe deploy job signs in with the access key {key} for now."
        out.append({"id": f"secret-{j:04d}", "text": text, "origin": "planted", "lang": "en"})
    for j in range(k):
        out.append({"id": f"toxic-{j:04d}", "text": f"{next(picks)}\n\n{_ABUSE}", "origin": "planted", "lang": "en"})
    planted.update(pii_records=2 * k, secret_records=k, toxic_records=k)
    return out


def _mismatched_pairs(n: int, rng: random.Random, seen: set[bytes]) -> list:
    """New pictures captioned with another new picture's caption (for ``image_text_score``)."""
    out = []
    while len(out) < n:
        (data, ext, _, meta), (_, _, other, _) = draw_image(rng), draw_image(rng)
        if xxhash.xxh3_128_digest(data) in seen:
            continue
        seen.add(xxhash.xxh3_128_digest(data))
        out.append((data, ext, other, {**meta, "caption_of": "another picture"}))
    return out


def _image_defects(rng: random.Random) -> dict[str, tuple[bytes, str, str]]:
    """One picture per content defect ``image_quality`` rejects (each decodes: the reader keeps
    it, the stage judges it): a blank, a heavily blurred, a tiny and an extreme-aspect image."""
    import io

    from PIL import Image, ImageFilter

    def enc(img: Image.Image, fmt: str = "PNG") -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        return buf.getvalue()

    def picture(w: int, h: int) -> Image.Image:
        with Image.open(io.BytesIO(draw_image(rng)[0])) as im:
            return im.convert("RGB").resize((w, h), Image.Resampling.BILINEAR)

    return {
        "blank": (enc(Image.new("RGB", (160, 120), (236, 236, 232)), "JPEG"), "jpg", "A plain light grey picture."),
        "blurred": (enc(picture(192, 192).filter(ImageFilter.GaussianBlur(10))), "png", "A picture under a heavy blur."),
        "tiny": (enc(picture(20, 20)), "png", "A picture of 20 by 20 pixels."),
        "extreme_aspect": (enc(picture(640, 32)), "png", "A strip twenty times wider than high."),
    }


def _images(root: Path, scale: float, rng: random.Random,
            planted: dict[str, int]) -> list[DemoFile]:
    n_img = max(20, round(BASE_IMAGES * min(scale, 1.0)))
    n_dir = max(4, n_img // 20)
    seen: set[bytes] = set()
    made: list[tuple[bytes, str, str, dict[str, Any]]] = []
    while len(made) < n_img:
        item = draw_image(rng)
        if xxhash.xxh3_128_digest(item[0]) not in seen:
            seen.add(xxhash.xxh3_128_digest(item[0]))
            made.append(item)
    pairs, in_dir = made[:-n_dir], made[-n_dir:]

    samples: list[tuple[bytes, str, str, dict[str, Any] | None]] = list(pairs)
    dups = rng.sample(pairs, max(2, round(0.02 * len(pairs))))
    samples += dups
    near = _near_duplicate_images(rng.sample([p for p in pairs if p not in dups], max(2, round(0.02 * len(pairs)))), rng)
    samples += near
    planted["near_duplicate_images"] = len(near)
    png = next(p for p in pairs if p[1] == "png")[0]
    corrupt = [(png[: len(png) // 3], "png", "A picture whose file was cut short.", None),
               (b"\xff\xd8\xff\xe0" + rng.randbytes(300), "jpg", "Random bytes posing as a JPEG.", None)]
    samples += corrupt
    mismatched = _mismatched_pairs(max(2, round(0.05 * len(pairs))), rng, seen)
    samples += mismatched
    planted["mismatched_captions"] = len(mismatched)
    rng.shuffle(samples)
    members = [("../evil.txt", b"This member tries to write outside the extraction directory.\n")]
    for i, (data, ext, caption, meta) in enumerate(samples):
        key = f"pair-{i:06d}"
        members += [(f"{key}.{ext}", data), (f"{key}.txt", caption.encode())]
        if meta is not None and (rng.random() < 0.5 or "caption_of" in meta):
            members.append((f"{key}.json", json.dumps(meta, sort_keys=True).encode()))
    defects = _image_defects(rng)
    for name, (data, ext, caption) in defects.items():  # keys sort after every pair
        members += [(f"zz-defect-{name}.{ext}", data), (f"zz-defect-{name}.txt", caption.encode())]
        planted[f"{name}_image"] = 1
    tar_path = root / "images" / "pairs-0000.tar"
    _write(tar_path, tar_bytes(members))
    planted.update(duplicate_images=len(dups), corrupt_image=len(corrupt), escaping_tar_member=1)

    img_dir = root / "images" / "dir"
    img_dir.mkdir(parents=True, exist_ok=True)
    for i, (data, ext, caption, _) in enumerate(in_dir):
        _write(img_dir / f"img-{i:04d}.{ext}", data)
        _write(img_dir / f"img-{i:04d}.txt", caption.encode() + b"\n")
    n = len(samples) + len(defects)  # tar samples (the escaping member is one more unit)
    return [DemoFile(str(tar_path), "tar", n + 1, n - len(corrupt), len(corrupt) + 1),
            DemoFile(str(img_dir), "imagedir", len(in_dir), len(in_dir), 0)]


def _audio(root: Path, planted: dict[str, int]) -> DemoFile:
    from winnow.demo.hostile_audio import build_hostile_audio

    h = build_hostile_audio(str(root / "audio"), "speech-0000.tar.gz")
    dead = 0
    for fate in h.expected.values():
        if isinstance(fate, tuple) and fate[0] == "dead":  # unreadable audio: a read dead letter
            dead += 1
            planted["audio_planted_unreadable"] = planted.get("audio_planted_unreadable", 0) + 1
        elif fate != "kept":
            key = "audio_planted_" + fate[1].removeprefix("audio_")
            planted[key] = planted.get(key, 0) + 1
    planted["audio_synthetic_speech"] = int(not h.real_speech)
    return DemoFile(h.path, "tar.gz", len(h.expected), len(h.expected) - dead, dead)


def build_demo_corpus(dest: str, *, scale: float = 1.0, seed: int = 0,
                      man_root: str = "/usr/share/man", audio: bool = False) -> DemoCorpus:
    """Write the demo corpus under ``dest`` and say what was planted in it.

    Args:
        dest: local directory: new, empty, or a previous demo output (which is replaced).
        scale: multiplies the text volume (``BASE_TEXT_BYTES`` at 1.0); past the real text
            available, mutated copies fill up. Images scale down below 1.0, never up.
        seed: the same seed and scale give byte-identical files on the same machine.
        man_root: where man pages are looked for (absent is fine).

    Raises:
        ValueError: ``scale`` is not a positive finite number.
        OutputError: ``dest`` holds something other than a previous demo.
    """
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale={scale!r}: expected a positive number such as 0.1 or 10")
    root = _prepare_dest(dest)
    rng = random.Random(f"winnow-demo-{seed}")
    recs = list(clean_records(int(BASE_TEXT_BYTES * scale), seed, man_root))
    text_bytes = sum(len(r["text"].encode("utf-8")) for r in recs)
    n_noid, n_trunc = max(1, len(recs) // 20), max(5, len(recs) // 100)
    noid, trunc, main = recs[:n_noid], recs[n_noid:n_noid + n_trunc], recs[n_noid + n_trunc:]
    planted: dict[str, int] = {}
    plants = _planted_lines(main, rng, planted)  # takes the filter plants' bases out of main
    lines = [(_line(r), False) for r in main] + plants
    rng.shuffle(lines)
    files: list[DemoFile] = []

    def jsonl(name: str, chunk: list[tuple[bytes, bool]], pack: Any, kind: str) -> None:
        path = root / "text" / name
        _write(path, pack(b"".join(b for b, _ in chunk)))
        bad = sum(1 for _, m in chunk if m)
        files.append(DemoFile(str(path), kind, len(chunk), len(chunk) - bad, bad))

    n_plain = max(10, len(lines) // 25)
    jsonl("docs-extra.jsonl", lines[:n_plain], bytes, "jsonl")
    rest = lines[n_plain:]
    for k, chunk in enumerate(_split(rest, max(2, math.ceil(text_bytes / _FILE_TEXT_BYTES)))):
        jsonl(f"docs-{k:04d}.jsonl.gz", chunk, _gzip, "jsonl.gz")
    jsonl("docs-noid.jsonl.zst", [(_line({k: v for k, v in r.items() if k != "id"}), False)
                                  for r in noid], _zstd, "jsonl.zst")

    tail_text = " ".join(r["text"] for r in main[:50])[:6000]
    tail = json.dumps({"id": "truncated-tail", "text": tail_text}, ensure_ascii=False).encode()
    tpath = root / "text" / "truncated-0000.jsonl.gz"
    _write(tpath, _truncated_gzip(b"".join(_line(r) for r in trunc), tail))
    files.append(DemoFile(str(tpath), "jsonl.gz", len(trunc), len(trunc), 1))
    planted["truncated_gzip_tail"] = 1

    files += _images(root, scale, rng, planted)
    if audio:
        files.append(_audio(root, planted))
    files.sort(key=lambda f: (f.kind in ("tar", "imagedir"), f.path))
    corpus = DemoCorpus(
        root=str(root), inputs=tuple(f.path for f in files), files=tuple(files),
        planted=dict(sorted(planted.items())),
        records_written=sum(f.records for f in files),
        malformed_written=sum(f.malformed for f in files), text_bytes=text_bytes,
    )
    _write(root / _MANIFEST, json.dumps(corpus.to_json(), indent=2).encode() + b"\n")
    return corpus
