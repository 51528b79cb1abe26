"""Generated images for the demo corpus, each with a caption that says what was drawn.

:func:`draw_image` paints one small picture with Pillow from a seeded RNG (a plain or gradient
background, one to three coloured shapes, sometimes a word) and describes it in a sentence;
:func:`tar_bytes` packs files into a reproducible WebDataset-style tar (sorted members, fixed
timestamps and owners), so the same seed always gives the same bytes.
"""

from __future__ import annotations

import io
import random
import tarfile
from typing import Any

__all__ = [
    "draw_image",
    "tar_bytes",
]

_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40), "green": (44, 160, 44), "blue": (31, 90, 200), "yellow": (240, 210, 30),
    "purple": (128, 60, 170), "orange": (255, 127, 14), "white": (245, 245, 245),
    "black": (20, 20, 20), "gray": (127, 127, 127), "pink": (240, 140, 190),
    "teal": (23, 160, 160), "brown": (140, 86, 45),
}
_SHAPES = ("circle", "square", "triangle", "ring", "cross", "diamond")
_WORDS = ("sun", "river", "winnow", "hello", "42", "data", "seed", "north", "blue sky", "map")


def draw_image(rng: random.Random) -> tuple[bytes, str, str, dict[str, Any]]:
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


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A USTAR archive of ``members``, sorted, with fixed timestamps and owners."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
            info.uname = info.gname = "winnow"
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()
