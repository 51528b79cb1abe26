"""The image checks on literal images: one defect per case, the expected reason and columns."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image, ImageFilter

from winnow.demo.hostile_media import png_bad_crc, png_bomb
from winnow.errors import ConfigError
from winnow.filters.image_quality import (
    FIELDS,
    ImageQualityConfig,
    ImageQualityFilter,
    grey_entropy,
    inspect_image,
    laplacian_variance,
)


def enc(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def busy(w: int = 160, h: int = 120, seed: int = 0) -> Image.Image:
    g = np.random.default_rng(seed)
    return Image.fromarray((g.random((h, w, 3)) * 200 + 20).astype(np.uint8), "RGB")


CFG = ImageQualityConfig()
PIC = busy()


def _anim() -> bytes:
    frames = [busy(64, 64, s) for s in range(3)]
    return enc(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


CASES = [
    ("rgb png", enc(PIC), "", (160, 120), "PNG"),
    ("rgb jpeg", enc(PIC, "JPEG", quality=90), "", (160, 120), "JPEG"),
    ("cmyk jpeg", enc(PIC.convert("CMYK"), "JPEG"), "", (160, 120), "JPEG"),
    ("16-bit png", enc(Image.fromarray(np.asarray(PIC.convert("L"), np.uint16) * 257)), "", (160, 120), "PNG"),
    ("palette png", enc(PIC.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=3), "", (160, 120), "PNG"),
    ("la png", enc(PIC.convert("LA")), "", (160, 120), "PNG"),
    ("1-bit png", enc(PIC.convert("1")), "", (160, 120), "PNG"),
    ("animated gif", _anim(), "", (64, 64), "PNG"),  # first frame, re-encoded losslessly
    ("truncated jpeg", enc(busy(256, 256), "JPEG", quality=95)[:9000], "image_quality_truncated", (256, 256), "JPEG"),
    ("truncated png", enc(PIC)[:20000], "image_quality_truncated", (160, 120), "PNG"),
    ("bad png crc", png_bad_crc(enc(PIC)), "image_quality_corrupt", (160, 120), "PNG"),
    ("not an image", b"\x89PNG but not really" + bytes(100), "image_quality_corrupt", (None, None), None),
    ("tiny", enc(busy(20, 40)), "image_quality_too_small", (20, 40), "PNG"),
    ("1000:1", enc(busy(32000, 32)), "image_quality_aspect_ratio", (32000, 32), "PNG"),
    ("solid", enc(Image.new("RGB", (100, 100), (200, 10, 10))), "image_quality_blank", (100, 100), "PNG"),
    ("solid jpeg", enc(Image.new("RGB", (100, 100), (240, 240, 240)), "JPEG"), "image_quality_blank", (100, 100), "JPEG"),
    ("blurred", enc(busy(200, 200).filter(ImageFilter.GaussianBlur(12))), "image_quality_blurry", (200, 200), "PNG"),
    ("bomb 10k", png_bomb(10_000, 10_000), "image_quality_too_many_pixels", (10_000, 10_000), "PNG"),
]


@pytest.mark.parametrize("name, data, reason, size, fmt", CASES, ids=[c[0] for c in CASES])
def test_case(name, data, reason, size, fmt):
    rep = inspect_image(data, CFG)
    assert rep.reason == reason, (name, rep)
    assert (rep.width, rep.height) == size
    assert rep.format == fmt
    if reason in ("", "image_quality_too_small", "image_quality_aspect_ratio", "image_quality_blank", "image_quality_blurry"):
        assert rep.sharpness is not None and rep.entropy is not None and rep.std is not None
    if reason in ("image_quality_truncated", "image_quality_corrupt", "image_quality_too_many_pixels"):
        assert rep.error and rep.sharpness is None


def test_20000_square_bomb_is_refused_from_its_header_without_allocating():
    data = png_bomb(20_000, 20_000)  # 400M 1-bit pixels: 50 MB inflated, 400 MB as L
    assert len(data) < 200_000
    tracemalloc.start()
    try:
        rep = inspect_image(data, CFG)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rep.reason == "image_quality_too_many_pixels"
    assert (rep.width, rep.height) in ((20_000, 20_000), (None, None))
    assert peak < 5_000_000, f"peak Python allocation {peak:,} bytes while refusing a bomb"


def test_budget_is_configurable():
    data = enc(busy(300, 200))
    assert inspect_image(data, ImageQualityConfig(max_pixels=60_000)).reason == ""
    rep = inspect_image(data, ImageQualityConfig(max_pixels=59_999))
    assert rep.reason == "image_quality_too_many_pixels" and "max_pixels=59,999" in rep.error


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # 90 degrees
    data = enc(busy(160, 120), "JPEG", exif=exif.tobytes())
    rep = inspect_image(data, CFG)
    assert (rep.width, rep.height) == (120, 160) and rep.image is None  # measured as shown, bytes kept
    out = inspect_image(data, ImageQualityConfig(reencode_format="png"))
    with Image.open(io.BytesIO(out.image)) as im:
        assert im.size == (120, 160) and im.format == "PNG"


def test_animated_reject_by_config():
    assert inspect_image(_anim(), ImageQualityConfig(animated="reject")).reason == "image_quality_animated"
    rep = inspect_image(_anim(), CFG)
    with Image.open(io.BytesIO(rep.image)) as im:
        assert not getattr(im, "is_animated", False) and im.size == (64, 64)


def test_reencode_and_max_side():
    cfg = ImageQualityConfig(reencode_format="jpeg", max_side=80)
    rgba = busy(160, 120).convert("RGBA")
    rep = inspect_image(enc(rgba), cfg)
    assert rep.reason == "" and (rep.width, rep.height, rep.format) == (80, 60, "JPEG")
    with Image.open(io.BytesIO(rep.image)) as im:
        assert im.format == "JPEG" and im.size == (80, 60) and im.mode == "RGB"
    same = inspect_image(enc(rgba), cfg)
    assert same.image == rep.image  # deterministic
    # max_side alone: a PNG stays PNG, a small image is untouched
    rep = inspect_image(enc(busy(400, 100)), ImageQualityConfig(max_side=200))
    assert (rep.width, rep.height, rep.format) == (200, 50, "PNG")
    assert inspect_image(enc(busy(100, 100)), ImageQualityConfig(max_side=200)).image is None


def test_16bit_is_scaled_not_clipped():
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (64, 1))
    rep = inspect_image(enc(Image.fromarray(ramp)), ImageQualityConfig(min_sharpness=0))
    assert rep.reason == "" and rep.entropy > 7.5  # all 256 grey levels survive (clipping would give ~1 level)


def test_measures():
    assert laplacian_variance(np.zeros((10, 10), np.float32)) == 0.0
    checker = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.float32)
    assert laplacian_variance(checker) > 1e5
    assert grey_entropy(np.zeros((8, 8), np.uint8)) == 0.0
    assert grey_entropy(np.arange(256, dtype=np.uint8)) == pytest.approx(8.0)


def test_filter_passes_non_image_records_with_null_columns():
    f = ImageQualityFilter()
    rec, v = f.process({"id": "t", "modality": "text", "text": "hi", "image": None})
    assert v.keep and all(rec[fl.name] is None for fl in FIELDS)
    rec, v = f.process({"id": "i", "modality": "image_text", "text": "x", "image": enc(Image.new("L", (64, 64)))})
    assert not v.keep and v.reason == "image_quality_blank" and rec["image_width"] == 64
    assert set(f.reasons) >= {v.reason} and all(r.startswith("image_quality_") for r in f.reasons)


@pytest.mark.parametrize("kw, key", [
    ({"max_pixels": 0}, "image_quality.max_pixels"),
    ({"max_aspect_ratio": 0.5}, "image_quality.max_aspect_ratio"),
    ({"min_sharpness": float("nan")}, "image_quality.min_sharpness"),
    ({"reencode_format": "gif"}, "image_quality.reencode_format"),
    ({"jpeg_quality": 0}, "image_quality.jpeg_quality"),
    ({"analysis_side": 8}, "image_quality.analysis_side"),
])
def test_config_errors(kw, key):
    with pytest.raises(ConfigError) as e:
        ImageQualityConfig(**kw)
    assert e.value.key == key


def test_large_jpeg_is_measured_at_reduced_scale_with_its_full_size_reported():
    img = busy(60, 45, seed=4).resize((2400, 1800), Image.Resampling.NEAREST)  # blocks 40 px wide
    exif = Image.Exif()
    exif[0x0112] = 8  # 270 degrees: shown 1800 x 2400
    data = enc(img, "JPEG", quality=90, exif=exif.tobytes())
    rep = inspect_image(data, CFG)
    assert rep.reason == "" and (rep.width, rep.height, rep.format) == (1800, 2400, "JPEG") and rep.image is None
    full = inspect_image(data, ImageQualityConfig(reencode_format="jpeg"))  # decodes every pixel
    assert (full.width, full.height) == (1800, 2400)
    assert rep.std == pytest.approx(full.std, rel=0.1)
    cut = inspect_image(data[: len(data) // 2], CFG)
    assert cut.reason == "image_quality_truncated"  # the reduced-scale decode still reads the whole stream
