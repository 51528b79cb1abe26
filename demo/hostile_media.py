"""A WebDataset corpus of hostile media: every defect a media stage must survive, planted.

:func:`image_samples` makes the image members (good pictures in awkward encodings, and one
sample per defect) and says what must become of each: kept, rejected by a stage with a
reason, or dead-lettered by a stage. :func:`write_hostile_tar` packs any list of samples
(image ones, and the audio ones of :func:`winnow.demo.hostile_audio.audio_samples`) into one
reproducible tar; :mod:`winnow.demo.hostile_corpus` puts both in one corpus.

The decompression bombs are real: their PNG data inflates to the size the header declares
(20,000 x 20,000 1-bit pixels: 50 MB inflated, about 50 KB in the tar), built row by row
without ever holding the inflated image.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from dataclasses import dataclass
from typing import Iterable

from winnow.demo.images import draw_image, tar_bytes

__all__ = ["HostileSample", "image_samples", "write_hostile_tar", "png_bomb", "png_bad_crc"]


@dataclass(frozen=True)
class HostileSample:
    """One tar sample and what the pipeline must do with it.

    Attributes:
        key: the sample key (members are ``<key>.<ext>``).
        members: ``(extension, bytes)`` pairs.
        expect: ``kept``, ``rejected`` or ``dead``.
        stage: the stage that rejects or dead-letters it (``read`` for the reader).
        reason: the reject reason (for ``rejected``), or a substring of the error (for ``dead``).
        what: a short description for reports and test messages.
        holds: False when this machine cannot promise the expectation (speech synthesised
            without espeak-ng carries no words, so what Whisper makes of it is open); a
            test skips such a sample's fate but still counts it in the balance.
    """

    key: str
    members: tuple[tuple[str, bytes], ...]
    expect: str
    stage: str = ""
    reason: str = ""
    what: str = ""
    holds: bool = True


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of ``width`` x ``height`` zero pixels, compressed row by row."""
    row = b"\x00" + bytes((width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    parts = []
    block = row * 256
    for _ in range(height // 256):
        parts.append(comp.compress(block))
    parts.append(comp.compress(row * (height % 256)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def png_bad_crc(png: bytes) -> bytes:
    """``png`` with one byte of its first IDAT chunk's checksum flipped (the data is intact)."""
    i = png.index(b"IDAT")
    n = struct.unpack(">I", png[i - 4:i])[0]
    out = bytearray(png)
    out[i + 4 + n] ^= 0xFF
    return bytes(out)


def _encode(img, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _picture(rng: random.Random, size: tuple[int, int] = (160, 120)):
    """A busy picture (noise plus shapes) that passes every content check."""
    import numpy as np
    from PIL import Image, ImageDraw

    g = np.random.default_rng(rng.randrange(2**32))
    a = (g.random((size[1], size[0], 3)) * 80 + 60).astype(np.uint8)
    img = Image.fromarray(a, "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(4):
        x, y = rng.randrange(size[0] - 20), rng.randrange(size[1] - 20)
        d.rectangle((x, y, x + 20, y + 15), fill=tuple(rng.randrange(256) for _ in range(3)))
    return img


def image_samples(seed: int = 0) -> list[HostileSample]:
    """Good images in awkward encodings, and one sample per image defect, with expectations.

    The expectations assume the ``image_quality`` stage's defaults (64M-pixel budget, min side
    32, max aspect 10, blank and blur thresholds) after the WebDataset reader.
    """
    import numpy as np
    from PIL import Image, ImageFilter

    rng = random.Random(f"hostile-images-{seed}")
    out: list[HostileSample] = []

    def add(key: str, ext: str, data: bytes, expect: str, stage: str = "", reason: str = "", what: str = "",
            caption: str | None = None) -> None:
        members = [(ext, data)]
        members.append(("txt", (caption or f"A test picture: {what}.").encode()))
        out.append(HostileSample(key, tuple(members), expect, stage, reason, what))

    for i in range(4):
        data, ext, caption, _ = draw_image(rng)
        add(f"good-{i:02d}", ext, data, "kept", what="a generated picture", caption=caption)
    # a distinct picture for each encoding (copies of one would be near-duplicates of each other)
    add("good-cmyk", "jpg", _encode(_picture(rng).convert("CMYK"), "JPEG", quality=90), "kept", what="a CMYK JPEG")
    a16 = (np.asarray(_picture(rng).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    add("good-16bit", "png", _encode(Image.fromarray(a16), "PNG"), "kept", what="a 16-bit greyscale PNG")
    add("good-palette", "png", _encode(_picture(rng).convert("P", palette=Image.Palette.ADAPTIVE, colors=64), "PNG",
                                       transparency=0), "kept", what="a palette PNG with transparency")
    pic = _picture(rng)
    rgba = pic.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(pic.size))
    add("good-alpha", "png", _encode(rgba, "PNG"), "kept", what="an RGBA PNG with a gradient alpha")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    add("good-exif-rotated", "jpg", _encode(_picture(rng), "JPEG", quality=90, exif=exif.tobytes()), "kept",
        what="a JPEG with EXIF orientation 6 (shown rotated: 120x160)")
    frames = [_picture(rng, (96, 96)) for _ in range(3)]
    add("good-animated", "gif", _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        "kept", what="an animated GIF (first frame kept)")

    jpg = _encode(_picture(rng, (256, 256)), "JPEG", quality=95)
    add("bad-truncated-jpeg", "jpg", jpg[: len(jpg) * 6 // 10], "rejected", "image_quality", "image_quality_truncated",
        "a JPEG cut at 60% of its bytes")
    add("bad-png-crc", "png", png_bad_crc(_encode(_picture(rng), "PNG")), "dead", "read", "checksum",
        "a PNG whose IDAT checksum is wrong (the reader's structural check)")
    add("bad-bomb-20000", "png", png_bomb(20_000, 20_000), "dead", "read", "DecompressionBombError",
        "a 20,000 x 20,000 PNG bomb (over Pillow's hard limit: refused by the reader on its header)")
    add("bad-bomb-10000", "png", png_bomb(10_000, 10_000), "rejected", "image_quality", "image_quality_too_many_pixels",
        "a 10,000 x 10,000 PNG bomb (under Pillow's limit, over the stage's pixel budget)")
    stripes = np.tile((np.arange(32_000) % 7 * 36).astype(np.uint8), (32, 1))
    add("bad-aspect-1000", "png", _encode(Image.fromarray(stripes, "L"), "PNG"), "rejected", "image_quality",
        "image_quality_aspect_ratio", "a 32,000 x 32 image (1000:1)")
    add("bad-blank", "jpg", _encode(Image.new("RGB", (200, 150), (238, 238, 236)), "JPEG", quality=90), "rejected",
        "image_quality", "image_quality_blank", "a solid light-grey image")
    blurred = _encode(_picture(rng, (200, 200)).filter(ImageFilter.GaussianBlur(12)), "PNG")
    add("bad-blurred", "png", blurred, "rejected", "image_quality", "image_quality_blurry",
        "a picture under a Gaussian blur of radius 12")
    add("bad-tiny", "png", _encode(_picture(rng, (24, 24)), "PNG"), "rejected", "image_quality",
        "image_quality_too_small", "a 24 x 24 image")
    return out


def write_hostile_tar(path: str, samples: Iterable[HostileSample]) -> None:
    """Write ``samples`` as one WebDataset tar (members ``<key>.<ext>``, sorted, fixed metadata)."""
    from pathlib import Path

    members = [(f"{s.key}.{ext}", data) for s in samples for ext, data in s.members]
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(tar_bytes(members))
