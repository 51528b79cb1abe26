"""Image-text agreement with a CLIP model from a local directory (``transformers``, no hub).

The model directory is what ``save_pretrained`` writes for a ``CLIPModel`` plus its tokenizer
and image processor (``CLIPProcessor.save_pretrained``); it is loaded with
``local_files_only=True``, so nothing is ever downloaded. Images are prepared by the
processor's Pillow/numpy path (``use_fast=False``): no torchvision.

**The score.** ``image_text_score`` is CLIPScore (Hessel et al., 2021):
``2.5 * max(cos, 0)``, where ``cos`` is the cosine similarity of the image's and the caption's
normalised embeddings. It runs from 0 to 2.5; the spec's threshold 0.85 is ``cos >= 0.34``,
a strict cut for ViT-B CLIP models on web captions (LAION-5B kept ``cos >= 0.28`` with
ViT-B/32). The raw cosine is kept too, in ``image_text_cosine``. The scores mean something
only for a trained model: the tests and the demo build a tiny randomly initialised CLIP, so
their scores are noise unless a real model directory is configured.

Records are kept by an absolute ``threshold`` on the score or by an exact ``keep_fraction``
(the Beam stage computes the global cut). Plain Python, Pillow and torch: no Beam here.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import pyarrow as pa
import xxhash

from winnow.errors import ConfigError
from winnow.filters.base import KEEP, Verdict, drop

__all__ = [
    "ClipConfig",
    "ClipScorer",
    "ClipError",
    "clip_fields",
    "is_scored",
    "selection_key",
    "clip_verdict",
    "clipscore",
    "REASON_BELOW",
]

REASON_BELOW = "image_text_score_below_threshold"

#: CLIPScore's weight w in ``w * max(cos, 0)`` (Hessel et al., 2021).
CLIPSCORE_W = 2.5
#: The default threshold on the score (the spec's 0.85; cosine 0.34).
DEFAULT_THRESHOLD = 0.85


class ClipError(ValueError):
    """One pair could not be scored (its image would not decode); the stage dead-letters it."""


def clipscore(cos: float) -> float:
    """CLIPScore of a cosine similarity: ``2.5 * max(cos, 0)``."""
    return CLIPSCORE_W * max(cos, 0.0)


@dataclass(frozen=True)
class ClipConfig:
    """Options of the ``image_text_score`` stage.

    Attributes:
        model_dir: a local directory with the CLIP model, tokenizer and image processor
            (written by ``CLIPModel.save_pretrained`` and ``CLIPProcessor.save_pretrained``).
        threshold: keep pairs whose score is at least this (default 0.85 when
            ``keep_fraction`` is not set either).
        keep_fraction: keep exactly this fraction (rounded) of the scored pairs, the highest
            scores; ties break by a hash of (id, source), the same on every runner.
        batch_size: pairs per model call at most.
        batch_bytes: encoded image bytes per model call at most (a call holds at least one pair).
        records_per_call: Beam's RunInference groups record batches up to about this many
            records per inference call; they are cut into model calls by ``batch_size`` and
            ``batch_bytes``.
        max_pixels: an image with more pixels than this (read from its header) is not decoded;
            the pair is dead-lettered (run ``image_quality`` first to reject such images).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda`` (a ConfigError when torch
            sees no CUDA device).
        dtype: ``auto`` (bfloat16 on CUDA, float32 on CPU), ``float32``, ``bfloat16`` or ``float16``.
        modalities: records of these modalities with both an image and a caption are scored;
            others pass through with null columns.
        fixed_shapes: every model call has the same shapes: ``batch_size`` pairs (a short call
            is padded with copies of its first pair) and captions padded to the model's full
            context (77 tokens for CLIP). A pair's score then does not depend on which pairs
            share its call, so the shards are identical on every runner and worker count;
            false saves the padding work and scores can differ in the last bits.
    """

    model_dir: str = ""
    threshold: float | None = None
    keep_fraction: float | None = None
    batch_size: int = 64
    batch_bytes: int = 64 * 2**20
    records_per_call: int = 512
    max_pixels: int = 64_000_000
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    modalities: tuple[str, ...] = ("image_text",)
    fixed_shapes: bool = True

    def __post_init__(self) -> None:
        key = "image_text_score.model_dir"
        if not self.model_dir:
            raise ConfigError(key, self.model_dir, "a local CLIP model directory (CLIPModel and CLIPProcessor "
                              "saved with save_pretrained)")
        if not os.path.isdir(self.model_dir):
            raise ConfigError(key, self.model_dir, "an existing local directory",
                              "nothing is downloaded: save the model and processor there first")
        if not os.path.isfile(os.path.join(self.model_dir, "config.json")):
            raise ConfigError(key, self.model_dir, "a directory with config.json (saved with save_pretrained)")
        if self.threshold is not None and self.keep_fraction is not None:
            raise ConfigError("image_text_score.keep_fraction", self.keep_fraction,
                              "null when image_text_score.threshold is set", "set one of the two")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ConfigError("image_text_score.threshold", self.threshold, "a finite number or null")
        if self.keep_fraction is not None and not 0.0 < self.keep_fraction <= 1.0:
            raise ConfigError("image_text_score.keep_fraction", self.keep_fraction, "a fraction in (0, 1] or null")
        for k in ("batch_size", "batch_bytes", "records_per_call", "max_pixels"):
            if getattr(self, k) < 1:
                raise ConfigError(f"image_text_score.{k}", getattr(self, k), "a positive integer")

    @property
    def cut_threshold(self) -> float | None:
        """The absolute threshold in force (None: selection by ``keep_fraction``)."""
        if self.keep_fraction is not None:
            return None
        return DEFAULT_THRESHOLD if self.threshold is None else self.threshold


def clip_fields(cfg: ClipConfig) -> tuple[pa.Field, ...]:
    """The columns the stage adds."""
    return (pa.field("image_text_score", pa.float64(), nullable=True),
            pa.field("image_text_cosine", pa.float64(), nullable=True))


def is_scored(record: Mapping[str, Any], cfg: ClipConfig) -> bool:
    """Whether the pair is scored: a configured modality with both an image and a caption."""
    return (record.get("modality") in cfg.modalities and record.get("image") is not None
            and isinstance(record.get("text"), str))


def selection_key(record: Mapping[str, Any], cfg: ClipConfig) -> tuple[float, int] | None:
    """Smaller is better: ``(-cosine, tie)``; None when unscored. The cosine orders pairs as
    the score does, and keeps ordering those the score's ``max(cos, 0)`` puts level at 0."""
    v = record.get("image_text_cosine")
    if v is None:
        v = record.get("image_text_score")
    if v is None or not is_scored(record, cfg):
        return None
    tie = xxhash.xxh3_64_intdigest(
        f"{record.get('id')}\x00{record.get('source')}".encode("utf-8", "surrogatepass")) >> 1
    return (-float(v), tie)


def clip_verdict(record: Mapping[str, Any], cfg: ClipConfig, cut: Sequence[Any] | None) -> Verdict:
    """Keep or drop a scored pair: the absolute threshold, or the key against the global cut."""
    score = record.get("image_text_score")
    if score is None or not is_scored(record, cfg):
        return KEEP
    threshold = cfg.cut_threshold
    if threshold is not None:
        return KEEP if score >= threshold else drop(REASON_BELOW)
    if cut is None:
        return KEEP
    key = selection_key(record, cfg)
    return KEEP if key is not None and key <= tuple(cut) else drop(REASON_BELOW)


def _load_rgb(data: bytes, max_pixels: int, side: int) -> Any:
    """An RGB PIL image (EXIF orientation applied); JPEGs decode at a reduced scale near ``side``."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        if w * h > max_pixels:
            raise ClipError(f"image is {w}x{h} = {w * h:,} pixels, over image_text_score.max_pixels={max_pixels:,}")
        im.draft("RGB", (2 * side, 2 * side))
        im.load()
        im = ImageOps.exif_transpose(im)
        return im.convert("RGB")


class ClipScorer:
    """A CLIP model, tokenizer and image processor loaded from ``cfg.model_dir``.

    ``score(pairs)`` gives one ``(score, cosine)`` or :class:`ClipError` per ``(image bytes,
    caption)`` pair, in order; model calls hold at most ``batch_size`` pairs and
    ``batch_bytes`` encoded image bytes.
    """

    def __init__(self, cfg: ClipConfig) -> None:
        import torch
        from transformers import AutoTokenizer, CLIPModel

        self.cfg = cfg
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("image_text_score.device", cfg.device, "cpu or auto", "torch sees no CUDA device here")
        self.device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
                                   else "cpu")
        dtype = cfg.dtype
        if dtype == "auto":
            dtype = "bfloat16" if self.device.type == "cuda" else "float32"
        self.dtype = getattr(torch, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model_dir, local_files_only=True)
        # the Pillow/numpy processor: the default one needs torchvision
        self.processor = _pil_processor_class().from_pretrained(cfg.model_dir, local_files_only=True)
        model = CLIPModel.from_pretrained(cfg.model_dir, local_files_only=True)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.max_length = int(min(model.config.text_config.max_position_embeddings,
                                  getattr(self.tokenizer, "model_max_length", 77) or 77))
        crop = getattr(self.processor, "crop_size", None) or {}
        self.side = int(crop.get("height", model.config.vision_config.image_size) if isinstance(crop, Mapping)
                        else model.config.vision_config.image_size)

    def _chunks(self, sizes: Sequence[int]) -> list[list[int]]:
        out: list[list[int]] = []
        cur: list[int] = []
        cur_bytes = 0
        for i, n in enumerate(sizes):
            if cur and (len(cur) >= self.cfg.batch_size or cur_bytes + n > self.cfg.batch_bytes):
                out.append(cur)
                cur, cur_bytes = [], 0
            cur.append(i)
            cur_bytes += n
        if cur:
            out.append(cur)
        return out

    def score(self, pairs: Sequence[tuple[bytes, str]]) -> list[tuple[float, float] | ClipError]:
        """One ``(score, cosine)`` (or error) per pair, in order."""
        results: list[Any] = [None] * len(pairs)
        images: dict[int, Any] = {}
        for i, (data, _) in enumerate(pairs):
            try:
                images[i] = _load_rgb(data, self.cfg.max_pixels, self.side)
            except ClipError as exc:
                results[i] = exc
            except Exception as exc:  # noqa: BLE001 - this image alone fails; the others are scored
                results[i] = ClipError(f"image does not decode: {type(exc).__name__}: {exc}")
        todo = sorted(images)
        for chunk in self._chunks([len(pairs[i][0]) for i in todo]):
            idx = [todo[k] for k in chunk]
            cos = self.cosine([images[i] for i in idx], [pairs[i][1] for i in idx])
            for i, c in zip(idx, cos):
                results[i] = (clipscore(c), c)
        return results

    def cosine(self, images: Sequence[Any], texts: Sequence[str]) -> list[float]:
        """Cosine similarity of each RGB image with its caption (one model call)."""
        import torch

        n = len(images)
        images, texts = list(images), list(texts)
        fixed = self.cfg.fixed_shapes
        if fixed and n < self.cfg.batch_size:
            images += [images[0]] * (self.cfg.batch_size - n)
            texts += [texts[0]] * (self.cfg.batch_size - n)
        pix = self.processor(images=images, return_tensors="pt")["pixel_values"]
        tok = self.tokenizer(texts, padding="max_length" if fixed else True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        with torch.inference_mode():
            img = self.model.get_image_features(pixel_values=pix.to(self.device, self.dtype, non_blocking=True))
            txt = self.model.get_text_features(input_ids=tok["input_ids"].to(self.device, non_blocking=True),
                                               attention_mask=tok["attention_mask"].to(self.device, non_blocking=True))
            img, txt = _features(img).float(), _features(txt).float()
            img = img / img.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            txt = txt / txt.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            cos = (img * txt).sum(dim=-1)[:n]
        return [float(v) for v in cos.cpu().tolist()]


def _pil_processor_class() -> Any:
    """CLIP's Pillow/numpy image processor (``CLIPImageProcessorPil`` in transformers 5;
    ``CLIPImageProcessor`` before, when that one was the Pillow one)."""
    try:
        from transformers import CLIPImageProcessorPil

        return CLIPImageProcessorPil
    except ImportError:
        from transformers import CLIPImageProcessor

        return CLIPImageProcessor


def _features(out: Any) -> Any:
    """The embedding tensor of ``get_*_features`` (a tensor, or a model output in newer transformers)."""
    if hasattr(out, "pooler_output") and not hasattr(out, "norm"):
        return out.pooler_output
    return out
