"""Image augmentation with Pillow: colour within +-20%, a crop keeping >= 80% of the area, flip.

The draws come from a seed (the stage passes a hash of (seed, id)), so the same record gets
the same augmentation on every run; every parameter is returned for the record's
``aug_params``.
"""

from __future__ import annotations

import io
import math
import random
from typing import Any

__all__ = ["perturb_image", "MAX_COLOUR_CHANGE", "MIN_CROP_AREA"]

MAX_COLOUR_CHANGE = 0.2
MIN_CROP_AREA = 0.8


def perturb_image(data: bytes, seed: int, flip: bool = True) -> tuple[bytes, dict[str, Any]]:
    """The augmented image (PNG bytes) and its parameters.

    Brightness, contrast and saturation factors are drawn uniformly from [0.8, 1.2]; the crop
    keeps an area share drawn from [0.8, 1.0] with an aspect change of at most 10% (the area is
    checked after rounding to whole pixels); a horizontal flip with probability 1/2 when
    ``flip``.

    Raises:
        ValueError: the bytes are not an image Pillow can read.
    """
    from PIL import Image, ImageEnhance

    rng = random.Random(seed)
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        img = im.convert("RGB")
    w, h = img.size
    factors = {k: round(rng.uniform(1 - MAX_COLOUR_CHANGE, 1 + MAX_COLOUR_CHANGE), 4)
               for k in ("brightness", "contrast", "saturation")}
    share = rng.uniform(MIN_CROP_AREA, 1.0)
    aspect = rng.uniform(0.9, 1.1)
    cw = max(1, min(w, round(w * math.sqrt(share * aspect))))
    ch = max(1, min(h, round(h * math.sqrt(share / aspect))))
    while cw * ch < MIN_CROP_AREA * w * h:  # rounding or the width cap lost area: grow back
        if cw < w:
            cw += 1
        if ch < h and cw * ch < MIN_CROP_AREA * w * h:
            ch += 1
    left = rng.randint(0, w - cw)
    top = rng.randint(0, h - ch)
    flipped = bool(flip and rng.random() < 0.5)
    out = img.crop((left, top, left + cw, top + ch))
    out = ImageEnhance.Brightness(out).enhance(factors["brightness"])
    out = ImageEnhance.Contrast(out).enhance(factors["contrast"])
    out = ImageEnhance.Color(out).enhance(factors["saturation"])
    if flipped:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buf = io.BytesIO()
    out.save(buf, format="PNG", optimize=False)
    params = {**factors, "crop": [left, top, cw, ch], "size": [w, h],
              "area_kept": round(cw * ch / (w * h), 4), "flip": flipped}
    return buf.getvalue(), params
