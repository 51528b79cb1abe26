"""The demo corpus: real text and generated images, with known problems planted in it.

Nothing here is shipped data. The text is assembled at run time from what every Python
machine has: the ``pydoc`` topics, docstrings of a fixed list of standard-library modules and,
where installed, man pages under ``/usr/share/man`` in several languages (roff stripped to
plain text). Images are drawn with Pillow from a seeded RNG and captioned from what was drawn.

Into that clean material go planted problems whose counts :attr:`DemoCorpus.planted` reports:
exact and whitespace-only duplicates, empty texts, malformed JSON lines, invalid UTF-8, wrongly
typed ``text`` fields, a ``.jsonl.gz`` cut off mid-stream, duplicate and corrupt images, and a
tar member whose path escapes the archive. The same ``seed`` and ``scale`` give byte-identical
files on the same machine (fixed gzip and tar timestamps, sorted members, no hash ordering).

Layout under ``dest``::

    text/docs-0000.jsonl.gz ...   records {"id", "text", "origin", "lang", "title", ...}
    text/docs-extra.jsonl         plain JSONL (shares the planted problems)
    text/docs-noid.jsonl.zst      records without "id" (the reader hashes their content)
    text/truncated-0000.jsonl.gz  complete lines, then a deflate stream cut mid-line
    images/pairs-0000.tar         WebDataset samples <key>.png|jpg + <key>.txt (+ <key>.json)
    images/dir/                   images with sidecar <stem>.txt captions
    demo-manifest.json            this description (not an input)
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import io
import json
import math
import random
import re
import shutil
import tarfile
import unicodedata
import warnings
import zlib
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import xxhash

from winnow.errors import OutputError

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

#: Standard-library modules whose docstrings feed the corpus (missing ones are skipped).
STDLIB_MODULES: tuple[str, ...] = tuple(sorted("""
    abc argparse array ast asyncio base64 binascii bisect calendar cmath codecs collections
    contextlib copy csv dataclasses datetime decimal difflib dis email enum fractions functools
    gettext graphlib gzip hashlib heapq hmac http.client inspect io itertools json locale
    logging math multiprocessing operator os.path pathlib pickle platform pprint queue random re
    sched secrets select selectors shutil signal socket sqlite3 ssl statistics string struct
    subprocess sysconfig tarfile tempfile textwrap threading time tokenize typing unittest
    urllib.parse xml.etree.ElementTree zipfile zoneinfo
""".split()))


class _Doc(NamedTuple):
    origin: str  # "pydoc", "docstring" or "man"
    lang: str
    title: str
    text: str


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
# Real text


def _pydoc_docs() -> list[_Doc]:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return []
    return [_Doc("pydoc", "en", name, text.strip()) for name, text in sorted(topics.items())]


def _docstring_docs() -> list[_Doc]:
    out: list[_Doc] = []

    def add(title: str, obj: Any) -> None:
        doc = getattr(obj, "__doc__", None)
        if isinstance(doc, str) and doc.strip():
            out.append(_Doc("docstring", "en", title, inspect.cleandoc(doc)))

    with warnings.catch_warnings():  # deprecated aliases (typing.io ...) warn when touched
        warnings.simplefilter("ignore")
        for modname in STDLIB_MODULES:
            _module_docs(modname, add)
    return out


def _module_docs(modname: str, add: Any) -> None:
    try:
        mod = importlib.import_module(modname)
    except Exception:  # noqa: BLE001 - a module missing on this build is simply skipped
        return
    add(modname, mod)
    members = vars(mod)
    for name in sorted(members):
        obj = members[name]
        if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
            continue
        add(f"{modname}.{name}", obj)
        if inspect.isclass(obj):
            attrs = vars(obj)
            for attr in sorted(attrs):
                if not attr.startswith("_"):
                    add(f"{modname}.{name}.{attr}", attrs[attr])


_ROFF_CHARS = {
    "em": "\u2014", "en": "\u2013", "bu": "\u2022", "aq": "'", "dq": '"', "lq": "\u201c",
    "rq": "\u201d", "oq": "\u2018", "cq": "\u2019", "co": "\u00a9", "rg": "\u00ae", "hy": "-",
    "mi": "-", "ti": "~", "ha": "^", "de": "\u00b0", ">=": "\u2265", "<=": "\u2264",
    "->": "\u2192", "<-": "\u2190", "mu": "\u00d7", "pl": "+", "eq": "=", "sl": "/",
    "rs": "\\", "ga": "`", "ul": "_", "tm": "\u2122", "R": "\u00ae", "Tm": "\u2122",
}
_ROFF_CHARS.update({"/l": "\u0142", "/L": "\u0141", "/o": "\u00f8", "/O": "\u00d8", "ss": "\u00df",
                    "Fo": "\u00ab", "Fc": "\u00bb", "Bq": "\u201e", "Aq": "'", "C`": '"', "C'": '"',
                    'L"': "\u201c", 'R"': "\u201d", "Em": "\u2014", "Gt": ">", "Lt": "<"})
_ROFF_ACCENTS = {"'": "\u0301", "`": "\u0300", ":": "\u0308", "^": "\u0302", "~": "\u0303",
                 ",": "\u0327", "o": "\u030a", "v": "\u030c"}
_ROFF_SINGLE = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "0": " ", "~": " ", "'": "'",
                "`": "`", "t": "\t", ".": "."}
_ROFF_ESC = re.compile(
    r"\\(f\[[^\]]*\]|f\(..|f.|s[-+]?\d|\*\[[^\]]*\]|\*\(..|\*.|\(..|\[[^\]]*\]"
    r"|[hvwNlLDXbozkHSx]'[^']*'|n\(..|n.|.)", re.S)
_ROFF_ARGS = re.compile(r'"((?:[^"]|"")*)"?|(\S+)')
_JOINED = {"BR", "BI", "IB", "IR", "RB", "RI"}
_BREAKS = {"PP", "LP", "P", "Pp", "sp", "br", "TP", "TQ", "HP", "RS", "RE", "Bl", "El", "Bd",
           "Ed", "Dl", "Sy"}
_MDOC_CALLS = {"Fl", "Ar", "Op", "Oo", "Oc", "Nm", "Xr", "Pa", "Ev", "Cm", "Dv", "Ic", "Li",
               "Em", "Sy", "Ql", "Dq", "Sq", "Pq", "Ns", "Va", "Fn", "Fa", "Ft", "Er", "Aq"}


def _roff_inline(s: str) -> str:
    def sub(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0] == "(" or e[0] == "[":
            name = e[1:-1] if e[0] == "[" else e[1:]
            if name.startswith("u") and len(name) in (5, 6):
                try:
                    return chr(int(name[1:], 16))
                except ValueError:
                    return ""
            if len(name) == 2 and name[0] in _ROFF_ACCENTS and name[1].isalpha():
                return unicodedata.normalize("NFC", name[1] + _ROFF_ACCENTS[name[0]])
            return _ROFF_CHARS.get(name, "")
        if e[0] == "*" and len(e) > 1:
            name = e[2:].strip("[]()") if e[1] in "[(" else e[1:]
            return _ROFF_CHARS.get(name, "")
        if len(e) > 1 or e in "fsn":
            return ""
        return _ROFF_SINGLE.get(e, "" if e in "&|^%:c),/!{}" else e)

    return _ROFF_ESC.sub(sub, s)


def _man_sections(raw: str) -> tuple[str, list[tuple[str, str]]]:
    """Crudely turn one roff page into (page name, [(section heading, plain text)])."""
    page, heading = "", ""
    sections: list[tuple[str, str]] = []
    paras: list[str] = []
    cur: list[str] = []
    nofill = skip_def = tag_next = False

    def brk() -> None:
        if cur:
            paras.append(("\n" if nofill else " ").join(cur).strip())
            cur.clear()

    def end_section() -> None:
        brk()
        text = "\n\n".join(p for p in paras if p)
        if heading and text:
            sections.append((heading, text))
        paras.clear()

    def text(s: str) -> None:
        nonlocal tag_next
        s = _roff_inline(s)
        if s.strip() or nofill:
            cur.append(s.rstrip() if nofill else s.strip())
            if tag_next:  # the line after .TP is the tag: a paragraph of its own
                brk()
                tag_next = False

    for line in raw.splitlines():
        if skip_def:
            skip_def = not line.startswith("..")
            continue
        line = re.sub(r'(?<!\\)\\".*$', "", line)
        if line.startswith("\\#") or line.startswith('.\\"'):
            continue
        while line[:1] in (".", "'") and re.match(r"^[.'](ie|if|el)\b", line):
            m = re.match(r"^[.'](?:i[ef]\s+\S+|el)\s*(.*)$", line)
            line = m.group(1).lstrip("\\{") if m else ""
        if line[:1] not in (".", "'"):
            if not line.strip() and not nofill:
                brk()
            else:
                text(line)
            continue
        parts = line[1:].strip().split(None, 1)
        if not parts:
            continue
        macro, rest = parts[0], parts[1] if len(parts) > 1 else ""
        args = [m.group(2) if m.group(1) is None else m.group(1).replace('""', '"')
                for m in _ROFF_ARGS.finditer(rest)]
        if macro == "so":
            return page, []
        if macro in ("TH", "Dt") and args:
            name = _roff_inline(args[0]).lower()
            page = f"{name}({_roff_inline(args[1])})" if len(args) > 1 else name
        elif macro in ("SH", "Sh"):
            end_section()
            heading = _roff_inline(" ".join(args)).strip()
        elif macro in ("SS", "Ss"):
            brk()
            text(" ".join(args))
            brk()
        elif macro in ("nf", "EX"):
            brk()
            nofill = True
        elif macro in ("fi", "EE"):
            brk()
            nofill = False
        elif macro in ("de", "am", "ig"):
            skip_def = True
        elif macro == "IP":  # .IP tag indent
            brk()
            text(args[0] if args else "")
            brk()
        elif macro == "TP":
            brk()
            tag_next = True
        elif macro == "It":
            brk()
            text(" ".join(a for a in args if a not in _MDOC_CALLS))
        elif macro in _BREAKS:
            brk()
        elif macro in ("B", "I", "SM", "SB"):
            text(" ".join(args))
        elif macro in _JOINED:
            text("".join(args))
        elif macro[:1].isupper() and macro in _MDOC_CALLS | {"Nd"}:
            words = ["-" + a if p == "Fl" else a for p, a in zip([macro] + args, args)]
            text(" ".join(w for w in words if w not in _MDOC_CALLS))
    end_section()
    return page, sections


def _man_docs(root: Path, pages_per_lang: int = 80, english_pages: int = 500) -> list[_Doc]:
    if not root.is_dir():
        return []
    langs = sorted(d.name for d in root.iterdir()
                   if d.is_dir() and not d.name.startswith("man") and "." not in d.name)
    out: list[_Doc] = []
    for locale in ["en", *langs]:
        base = root if locale == "en" else root / locale
        files = sorted(p for sec in sorted(base.glob("man[1-9]"))
                       for p in sec.glob("*.gz") if p.is_file() and not p.is_symlink())
        families: dict[str, int] = {}
        for p in files:  # at most 3 pages of one family (gcloud alone has thousands)
            families[re.split(r"[._-]", p.name, maxsplit=1)[0]] = 0
        kept = []
        for p in files:
            fam = re.split(r"[._-]", p.name, maxsplit=1)[0]
            families[fam] += 1
            if families[fam] <= 3:
                kept.append(p)
        files = kept
        cap = english_pages if locale == "en" else pages_per_lang
        if len(files) > cap:  # evenly spaced, so every letter of the alphabet shows up
            files = [files[i * len(files) // cap] for i in range(cap)]
        for path in files:
            try:
                raw = gzip.decompress(path.read_bytes()).decode("utf-8")
            except (OSError, EOFError, UnicodeDecodeError, zlib.error):
                continue
            page, sections = _man_sections(raw)
            for heading, text in sections:
                title = f"{page or path.name} {heading}"
                out.append(_Doc("man", locale.split("_")[0], title, text))
    return out


def _dedup_key(text: str) -> bytes:
    """Equal for texts the exact-dedup stage (default options) would call duplicates."""
    return xxhash.xxh3_128_digest(unicodedata.normalize("NFC", " ".join(text.split())).encode())


@lru_cache(maxsize=2)
def collect_real_text(man_root: str = "/usr/share/man") -> tuple[_Doc, ...]:
    """Every usable real document on this machine, deduplicated, in a fixed order.

    Returns:
        ``(origin, lang, title, text)`` tuples: pydoc topics, then docstrings, then man-page
        sections; texts that are empty or duplicate an earlier one are left out.
    """
    seen: set[bytes] = set()
    out: list[_Doc] = []
    for doc in [*_pydoc_docs(), *_docstring_docs(), *_man_docs(Path(man_root))]:
        key = _dedup_key(doc.text)
        if doc.text.strip() and key not in seen:
            seen.add(key)
            out.append(doc)
    return tuple(out)


def _mutate(text: str, rng: random.Random) -> str:
    """A light, deterministic edit: paragraph swap/drop and ~2.5% word edits."""
    paras = text.split("\n\n")
    if len(paras) > 2 and rng.random() < 0.4:
        del paras[rng.randrange(len(paras))]
    if len(paras) > 1 and rng.random() < 0.5:
        i, j = rng.randrange(len(paras)), rng.randrange(len(paras))
        paras[i], paras[j] = paras[j], paras[i]
    words = "\n\n".join(paras).split(" ")
    for _ in range(max(1, len(words) // 40)):
        i, op = rng.randrange(len(words)), rng.random()
        if op < 0.3 and len(words) > 1:
            del words[i]
        elif op < 0.6:
            words.insert(i, words[rng.randrange(len(words))])
        elif op < 0.8:
            j = min(i + 1, len(words) - 1)
            words[i], words[j] = words[j], words[i]
        else:
            words[i] = words[i].upper() if words[i] != words[i].upper() else words[i].lower() + "s"
    return " ".join(words)


def _clean_records(target_bytes: int, seed: int, man_root: str) -> Iterator[dict[str, Any]]:
    """Distinct records totalling about ``target_bytes`` of UTF-8 text, in a seeded order.

    Real documents come first (sampled when there are more than needed); past that, mutated
    copies keep the volume growing without creating exact duplicates.
    """
    pool = collect_real_text(man_root)
    rng = random.Random(f"winnow-demo-text-{seed}")
    order = list(range(len(pool)))
    rng.shuffle(order)
    seen = {_dedup_key(d.text) for d in pool}
    total, rounds = 0, 0
    while total < target_bytes and pool:
        for i in order:
            doc = pool[i]
            text, rid = doc.text, f"{doc.origin}-{i:06d}"
            if rounds:
                for _ in range(4):
                    text = _mutate(text, rng)
                    key = _dedup_key(text)
                    if key not in seen:
                        break
                else:
                    continue
                seen.add(key)
                rid = f"{rid}-v{rounds}"
            rec = {"id": rid, "text": text, "origin": doc.origin, "lang": doc.lang, "title": doc.title}
            total += len(text.encode("utf-8"))
            yield rec
            if total >= target_bytes:
                return
        rounds += 1


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
    recs = list(_clean_records(target_bytes, seed, man_root))
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
# Images

_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40), "green": (44, 160, 44), "blue": (31, 90, 200), "yellow": (240, 210, 30),
    "purple": (128, 60, 170), "orange": (255, 127, 14), "white": (245, 245, 245),
    "black": (20, 20, 20), "gray": (127, 127, 127), "pink": (240, 140, 190),
    "teal": (23, 160, 160), "brown": (140, 86, 45),
}
_SHAPES = ("circle", "square", "triangle", "ring", "cross", "diamond")
_WORDS = ("sun", "river", "winnow", "hello", "42", "data", "seed", "north", "blue sky", "map")


def _draw_image(rng: random.Random) -> tuple[bytes, str, str, dict[str, Any]]:
    """One generated image: (encoded bytes, extension, caption, metadata)."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = rng.choice((64, 96, 128, 192, 256)), rng.choice((64, 96, 128, 192, 256))
    names = sorted(_COLORS)
    bg1, bg2 = rng.sample(names, 2)
    style = rng.choice(("plain", "vertical", "horizontal"))
    if style == "plain":
        img = Image.new("RGB", (w, h), _COLORS[bg1])
        background = f"a plain {bg1} background"
    else:
        mask = Image.linear_gradient("L").resize((w, h))
        if style == "horizontal":
            mask = mask.transpose(Image.Transpose.ROTATE_90).resize((w, h))
        img = Image.composite(Image.new("RGB", (w, h), _COLORS[bg2]),
                              Image.new("RGB", (w, h), _COLORS[bg1]), mask)
        background = f"a {bg1}-to-{bg2} {style} gradient"
    draw = ImageDraw.Draw(img)
    things = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        color = rng.choice([c for c in names if c not in (bg1, bg2)])
        shape = rng.choice(_SHAPES)
        big = rng.random() < 0.5
        r = int(min(w, h) * (0.3 if big else 0.15))
        cx, cy = rng.randint(r, w - r), rng.randint(r, h - r)
        box = (cx - r, cy - r, cx + r, cy + r)
        fill = _COLORS[color]
        if shape == "circle":
            draw.ellipse(box, fill=fill)
        elif shape == "ring":
            draw.ellipse(box, outline=fill, width=max(2, r // 4))
        elif shape == "square":
            draw.rectangle(box, fill=fill)
        elif shape == "triangle":
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
        elif shape == "diamond":
            draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
        else:
            draw.rectangle((cx - r, cy - r // 4, cx + r, cy + r // 4), fill=fill)
            draw.rectangle((cx - r // 4, cy - r, cx + r // 4, cy + r), fill=fill)
        vert = "top" if cy < h / 3 else "bottom" if cy > 2 * h / 3 else ""
        horiz = "left" if cx < w / 3 else "right" if cx > 2 * w / 3 else ""
        where = (f"in the {vert} {horiz}" if vert and horiz else f"at the {vert}" if vert
                 else f"on the {horiz}" if horiz else "in the center")
        things.append(f"a {'large' if big else 'small'} {color} {shape} {where}")
    caption = f"{', '.join(things[:-1])} and {things[-1]}" if len(things) > 1 else things[0]
    caption = f"{caption} on {background}"
    word = rng.choice(_WORDS) if rng.random() < 0.3 else None
    if word:
        ink = rng.choice([c for c in ("black", "white") if c not in (bg1, bg2)] or ["red"])
        draw.text((4, 4), word, fill=_COLORS[ink], font=ImageFont.load_default())
        caption += f', with the word "{word}" written in {ink}'
    ext = "png" if rng.random() < 0.7 else "jpg"
    buf = io.BytesIO()
    if ext == "png":
        img.save(buf, format="PNG")
    else:
        img.save(buf, format="JPEG", quality=85)
    meta = {"width": w, "height": h, "shapes": len(things), "generator": "winnow-demo"}
    return buf.getvalue(), ext, caption[0].upper() + caption[1:] + ".", meta


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
            info.uname = info.gname = "winnow"
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


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
        out = "{'id': 'single-quotes-%d', 'text': %r}" % (j, snippet)
    elif kind == 2:
        out = '{"id": "trailing-comma-%d", "text": %s,}' % (j, json.dumps(snippet, ensure_ascii=False))
    elif kind == 3:
        out = f"note {j}: {snippet}"
    elif kind == 4:
        out = '{"id": "two-objects-%d", "text": "a"} {"id": "b", "text": "c"}' % j
    else:
        out = '{"id": "control-char-%d", "text": "raw\ttab and\u0001bell"}' % j
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
    blanks = ("", " ", "\n\n", "\t \r\n")
    k_empty = max(4, round(0.003 * len(main)))
    for j in range(k_empty):
        out.append((_line({"id": f"empty-{j:04d}", "text": blanks[j % 4], "origin": "planted"}), False))
    planted["empty_text"] = k_empty

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


def _images(root: Path, scale: float, rng: random.Random,
            planted: dict[str, int]) -> list[DemoFile]:
    n_img = max(20, round(BASE_IMAGES * min(scale, 1.0)))
    n_dir = max(4, n_img // 20)
    seen: set[bytes] = set()
    made: list[tuple[bytes, str, str, dict[str, Any]]] = []
    while len(made) < n_img:
        item = _draw_image(rng)
        if xxhash.xxh3_128_digest(item[0]) not in seen:
            seen.add(xxhash.xxh3_128_digest(item[0]))
            made.append(item)
    pairs, in_dir = made[:-n_dir], made[-n_dir:]

    samples: list[tuple[bytes, str, str, dict[str, Any] | None]] = list(pairs)
    dups = rng.sample(pairs, max(2, round(0.02 * len(pairs))))
    samples += dups
    png = next(p for p in pairs if p[1] == "png")[0]
    corrupt = [(png[: len(png) // 3], "png", "A picture whose file was cut short.", None),
               (b"\xff\xd8\xff\xe0" + rng.randbytes(300), "jpg", "Random bytes posing as a JPEG.", None)]
    samples += corrupt
    rng.shuffle(samples)
    members = [("../evil.txt", b"This member tries to write outside the extraction directory.\n")]
    for i, (data, ext, caption, meta) in enumerate(samples):
        key = f"pair-{i:06d}"
        members += [(f"{key}.{ext}", data), (f"{key}.txt", caption.encode())]
        if meta is not None and rng.random() < 0.5:
            members.append((f"{key}.json", json.dumps(meta, sort_keys=True).encode()))
    tar_path = root / "images" / "pairs-0000.tar"
    _write(tar_path, _tar(members))
    planted.update(duplicate_images=len(dups), corrupt_image=len(corrupt), escaping_tar_member=1)

    img_dir = root / "images" / "dir"
    img_dir.mkdir(parents=True, exist_ok=True)
    for i, (data, ext, caption, _) in enumerate(in_dir):
        _write(img_dir / f"img-{i:04d}.{ext}", data)
        _write(img_dir / f"img-{i:04d}.txt", caption.encode() + b"\n")
    return [DemoFile(str(tar_path), "tar", len(samples) + 1, len(samples) - len(corrupt), len(corrupt) + 1),
            DemoFile(str(img_dir), "imagedir", len(in_dir), len(in_dir), 0)]


def build_demo_corpus(dest: str, *, scale: float = 1.0, seed: int = 0,
                      man_root: str = "/usr/share/man") -> DemoCorpus:
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
    recs = list(_clean_records(int(BASE_TEXT_BYTES * scale), seed, man_root))
    text_bytes = sum(len(r["text"].encode("utf-8")) for r in recs)
    n_noid, n_trunc = max(1, len(recs) // 20), max(5, len(recs) // 100)
    noid, trunc, main = recs[:n_noid], recs[n_noid:n_noid + n_trunc], recs[n_noid + n_trunc:]
    planted: dict[str, int] = {}
    lines = [(_line(r), False) for r in main] + _planted_lines(main, rng, planted)
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
    files.sort(key=lambda f: (f.kind in ("tar", "imagedir"), f.path))
    corpus = DemoCorpus(
        root=str(root), inputs=tuple(f.path for f in files), files=tuple(files),
        planted=dict(sorted(planted.items())),
        records_written=sum(f.records for f in files),
        malformed_written=sum(f.malformed for f in files), text_bytes=text_bytes,
    )
    _write(root / _MANIFEST, json.dumps(corpus.to_json(), indent=2).encode() + b"\n")
    return corpus
