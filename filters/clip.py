"""Image-text agreement with a CLIP model from a local directory (``transformers``, no hub).

The model directory is what ``save_pretrained`` writes for a ``CLIPModel`` plus its tokenizer
and image processor (``CLIPProcessor.save_pretrained``), or the same for a ``SiglipModel``
(``SiglipProcessor``; ``config.json``'s ``model_type`` says which; other model types are a
ConfigError); it is loaded with ``local_files_only=True``, so nothing is ever downloaded. No
torchvision.

**SigLIP.** Captions are always padded to the model's full text length and passed without an
attention mask, as SigLIP was trained (its text tower pools the last position). The score is
the same CLIPScore of the cosine as for CLIP; SigLIP's cosines of matching pairs run lower
than CLIP's (its sigmoid loss has a learned scale and bias), so an absolute threshold made for
CLIP does not carry over: use ``keep_fraction`` or a threshold measured on the model.

**Image preparation.** Pillow decodes each image and resizes and crops it exactly as the
saved processor's Pillow/numpy path does (same sizes, resample filter, crop box), in a thread
pool (Pillow releases the GIL while it decodes and resizes). The rescale and mean/std
normalisation go through a per-channel table of the processor's own float32 values, so the
pixel values equal the processor's bit for bit (a test checks it): on CUDA the uint8 crops are
stacked, copied and looked up on the device; on the CPU the pool threads look them up.
Decoding the next model call's images overlaps the current call. Processor configurations
this path does not cover (no resize, padding, ``longest_edge``, ...) use the
processor itself, still decoded in the pool; ``fast_preprocess: false`` forces that.

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
import os
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import pyarrow as pa
import xxhash

from winnow.errors import ConfigError
from winnow.filters.devices import check_model_dir, check_selection, torch_device_and_dtype
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
    "FastImagePrep",
    "fast_image_prep",
    "model_type",
    "MODEL_TYPES",
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
        model_dir: a local directory with the CLIP (or SigLIP) model, tokenizer and image
            processor (written by ``CLIPModel.save_pretrained`` and ``CLIPProcessor.save_pretrained``,
            or the Siglip classes').
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
        fast_preprocess: resize and crop with Pillow in a thread pool and normalise on the
            device, giving the processor's pixel values (see the module doc); false runs the
            transformers processor on each call's images (still decoded in the pool).
        preprocess_threads: threads that decode and resize images (0: one per CPU this
            process may run on, at most 32).
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
    fast_preprocess: bool = True
    preprocess_threads: int = 0

    def __post_init__(self) -> None:
        check_model_dir("image_text_score", self.model_dir, "a local CLIP model directory (CLIPModel and "
                        "CLIPProcessor saved with save_pretrained)", "processor")
        model_type(self.model_dir)  # a ConfigError for a model type the stage does not run
        check_selection("image_text_score", self.threshold, self.keep_fraction)
        for k in ("batch_size", "batch_bytes", "records_per_call", "max_pixels"):
            if getattr(self, k) < 1:
                raise ConfigError(f"image_text_score.{k}", getattr(self, k), "a positive integer")
        if not 0 <= self.preprocess_threads <= 256:
            raise ConfigError("image_text_score.preprocess_threads", self.preprocess_threads,
                              "0 (one per CPU) or a thread count up to 256")

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


#: The model types (``config.json``'s ``model_type``) the stage runs.
MODEL_TYPES = ("clip", "siglip")


def model_type(model_dir: str) -> str:
    """``clip`` or ``siglip`` from ``model_dir/config.json``; a ConfigError for anything else."""
    import json

    path = os.path.join(model_dir, "config.json")
    try:
        with open(path, encoding="utf-8") as fh:
            kind = json.load(fh).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError("image_text_score.model_dir", model_dir, "a config.json that is a JSON object",
                          f"reading it failed: {type(exc).__name__}") from None
    if kind not in MODEL_TYPES:
        raise ConfigError("image_text_score.model_dir", model_dir,
                          f"a model of type {' or '.join(MODEL_TYPES)} (config.json model_type)",
                          f"its model_type is {kind!r}, which image_text_score does not run (dual encoders "
                          "with get_image_features/get_text_features: CLIPModel or SiglipModel)")
    return kind


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


def _size_field(size: Any, key: str) -> Any:
    """A field of a processor's size (a dict, or transformers 5's ``SizeDict``); None if unset."""
    if size is None:
        return None
    if isinstance(size, Mapping):
        return size.get(key)
    return getattr(size, key, None)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_SIZE_KEYS = ("height", "width", "longest_edge", "shortest_edge", "max_height", "max_width", "min_pixels", "max_pixels")


@dataclass(frozen=True)
class FastImagePrep:
    """What the processor does to an RGB image, for the fast path.

    Attributes:
        shortest_edge: resize so the shorter side is this (the longer side scaled and floored,
            as transformers does); None when ``resize`` is set instead.
        resize: ``(height, width)`` to resize to exactly; None when ``shortest_edge`` is set.
        crop: ``(height, width)`` of the centre crop, or None.
        resample: Pillow's resampling filter (3 = bicubic, CLIP's).
        table: ``(3, 256)`` float32: the processor's rescaled, normalised value of each uint8
            value of each channel.
    """

    shortest_edge: int | None
    resize: tuple[int, int] | None
    crop: tuple[int, int] | None
    resample: int
    table: Any

    @property
    def out_size(self) -> tuple[int, int]:
        """``(height, width)`` of the prepared image."""
        if self.crop is not None:
            return self.crop
        if self.resize is not None:
            return self.resize
        raise ValueError("a shortest_edge resize without a crop has no fixed size")

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """Pillow's ``(width, height)`` after the resize, as the processor computes it."""
        if self.resize is not None:
            return self.resize[1], self.resize[0]
        s = int(self.shortest_edge or 0)
        if width <= height:
            return s, int(s * height / width)
        return int(s * width / height), s

    def prepare(self, im: Any) -> Any:
        """An RGB PIL image to the ``(height, width, 3)`` uint8 array the model sees (before the table)."""
        import numpy as np

        w, h = im.size
        nw, nh = self.resized_size(w, h)
        im = im.resize((nw, nh), resample=self.resample)
        if self.crop is not None:
            ch, cw = self.crop
            top, left = (nh - ch) // 2, (nw - cw) // 2
            im = im.crop((left, top, left + cw, top + ch))
        return np.asarray(im, dtype=np.uint8)

    def normalize(self, arr: Any) -> Any:
        """A prepared ``(height, width, 3)`` uint8 array to the processor's ``(3, height, width)``
        float32 values, through the table (on the CPU; numpy's take releases the GIL)."""
        import numpy as np

        out = np.empty((3,) + arr.shape[:2], dtype=np.float32)
        for c in range(3):
            np.take(self.table[c], arr[:, :, c], out=out[c])
        return out


def fast_image_prep(processor: Any) -> FastImagePrep | None:
    """The fast path's plan for an image processor's configuration, or None when it does not
    cover it (then the processor runs): a resize to a shortest edge or to an exact size by a
    Pillow filter, an optional centre crop no larger than the resized image, rescale and/or
    mean/std normalisation of three channels, no padding."""
    import numpy as np

    def attr(name: str) -> Any:
        return getattr(processor, name, None)

    if not attr("do_resize") or attr("do_pad"):
        return None
    size = attr("size")
    used = {k for k in _SIZE_KEYS if _size_field(size, k) is not None}
    shortest, resize = None, None
    if used == {"shortest_edge"}:
        shortest = int(_size_field(size, "shortest_edge"))
        min_side = (shortest, shortest)
    elif used == {"height", "width"}:
        resize = (int(_size_field(size, "height")), int(_size_field(size, "width")))
        min_side = resize
    else:
        return None
    if min(min_side) < 1:
        return None
    crop = None
    if attr("do_center_crop"):
        cs = attr("crop_size")
        ch, cw = _size_field(cs, "height"), _size_field(cs, "width")
        if ch is None or cw is None or not (0 < int(ch) <= min_side[0] and 0 < int(cw) <= min_side[1]):
            return None  # a crop larger than the image pads: the processor's business
        crop = (int(ch), int(cw))
    elif resize is None:
        return None  # shortest-edge resize without a crop: sizes differ within a call
    resample = attr("resample")
    if resample is None:
        resample = 2  # the Pillow backend's default (bilinear)
    try:
        resample = int(resample)
    except (TypeError, ValueError):
        return None
    if resample not in (0, 1, 2, 3, 4, 5):
        return None
    # each channel's value table, computed as transformers' numpy rescale and normalize do
    values = np.arange(256, dtype=np.uint8)[None, :].repeat(3, axis=0)
    do_rescale, do_normalize = attr("do_rescale"), attr("do_normalize")
    if not do_rescale and not do_normalize:
        return None  # the processor would hand over uint8 values
    if do_rescale:
        x = (values.astype(np.float64) * float(attr("rescale_factor"))).astype(np.float32)
    else:
        x = values.astype(np.float32)
    if do_normalize:
        mean, std = attr("image_mean"), attr("image_std")
        mean = [mean] * 3 if isinstance(mean, (int, float)) else list(mean)
        std = [std] * 3 if isinstance(std, (int, float)) else list(std)
        if len(mean) != 3 or len(std) != 3:
            return None
        x = (x - np.array(mean, dtype=np.float32)[:, None]) / np.array(std, dtype=np.float32)[:, None]
    return FastImagePrep(shortest, resize, crop, resample, np.ascontiguousarray(x, dtype=np.float32))


def _prep_threads(n: int) -> int:
    if n:
        return n
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(32, cpus))


class ClipScorer:
    """A CLIP model, tokenizer and image processor loaded from ``cfg.model_dir``.

    ``score(pairs)`` gives one ``(score, cosine)`` or :class:`ClipError` per ``(image bytes,
    caption)`` pair, in order; model calls hold at most ``batch_size`` pairs and
    ``batch_bytes`` encoded image bytes. Images decode and resize in a thread pool, ahead of
    the model calls; ``close()`` stops the pool.
    """

    def __init__(self, cfg: ClipConfig) -> None:
        import torch
        from transformers import AutoTokenizer, CLIPModel, SiglipModel

        self.cfg = cfg
        self.kind = model_type(cfg.model_dir)
        self.device, self.dtype = torch_device_and_dtype("image_text_score", cfg.device, cfg.dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model_dir, local_files_only=True)
        # the Pillow/numpy processor: the default one needs torchvision
        self.processor = _pil_processor_class(self.kind).from_pretrained(cfg.model_dir, local_files_only=True)
        model_cls = SiglipModel if self.kind == "siglip" else CLIPModel
        model = model_cls.from_pretrained(cfg.model_dir, local_files_only=True)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.max_length = int(min(model.config.text_config.max_position_embeddings,
                                  getattr(self.tokenizer, "model_max_length", 77) or 77))
        self.prep = fast_image_prep(self.processor) if cfg.fast_preprocess else None
        # on CUDA the uint8 crops travel and the table applies there; on the CPU the pool applies it
        self._table_on_device = self.device.type == "cuda"
        if self.prep is not None:
            self.side = max(self.prep.out_size)
            table = torch.from_numpy(self.prep.table).to(self.device)
            self._table = table.reshape(-1)
            self._channel_offset = torch.arange(3, device=self.device, dtype=torch.int64).view(3, 1, 1) * 256
        else:
            crop = getattr(self.processor, "crop_size", None)
            side = _size_field(crop, "height") or _size_field(getattr(self.processor, "size", None), "shortest_edge")
            self.side = int(side or model.config.vision_config.image_size)
        self.threads = _prep_threads(cfg.preprocess_threads)
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="clip-prep")

    def close(self) -> None:
        """Stop the preprocessing threads."""
        self._pool.shutdown(wait=True)

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

    def _prepare(self, im: Any) -> Any:
        """An RGB PIL image for :meth:`pixel_values`: the fast path's uint8 ``(h, w, 3)`` array
        (CUDA) or float32 ``(3, h, w)`` values (CPU); the image itself for the processor path."""
        if self.prep is None:
            return im
        arr = self.prep.prepare(im)
        return arr if self._table_on_device else self.prep.normalize(arr)

    def _load(self, data: bytes) -> Any:
        """One image for the model (:meth:`_prepare`) or the ClipError it raised; runs in the pool."""
        try:
            return self._prepare(_load_rgb(data, self.cfg.max_pixels, self.side))
        except ClipError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - this image alone fails; the others are scored
            # no per-process values in the text (Pillow names the BytesIO by its address)
            return ClipError(f"image does not decode: {type(exc).__name__}: {_ADDRESS.sub('', str(exc))}")

    def score(self, pairs: Sequence[tuple[bytes, str]]) -> list[tuple[float, float] | ClipError]:
        """One ``(score, cosine)`` (or error) per pair, in order.

        Model calls are cut from the decodable pairs in order (``batch_size``, ``batch_bytes``,
        as :meth:`_chunks`); the pool decodes up to four calls ahead while the model runs, and
        the cosines come back to the host once, at the end.
        """
        import torch

        results: list[Any] = [None] * len(pairs)
        ahead = 4 * self.cfg.batch_size
        inflight: deque = deque()
        nxt = 0
        launched: list[tuple[list[int], Any]] = []
        cur: list[tuple[int, Any]] = []
        cur_bytes = 0

        def launch() -> None:
            idx = [i for i, _ in cur]
            launched.append((idx, self._cosine_tensor([x for _, x in cur], [pairs[i][1] for i in idx])))

        for i in range(len(pairs)):
            while nxt < len(pairs) and len(inflight) < ahead:
                inflight.append(self._pool.submit(self._load, pairs[nxt][0]))
                nxt += 1
            item = inflight.popleft().result()
            if isinstance(item, ClipError):
                results[i] = item
                continue
            n = len(pairs[i][0])
            if cur and (len(cur) >= self.cfg.batch_size or cur_bytes + n > self.cfg.batch_bytes):
                launch()
                cur, cur_bytes = [], 0
            cur.append((i, item))
            cur_bytes += n
        if cur:
            launch()
        if launched:
            cos = torch.cat([c for _, c in launched]).cpu().tolist()
            k = 0
            for idx, _ in launched:
                for i in idx:
                    results[i] = (clipscore(cos[k]), cos[k])
                    k += 1
        return results

    def pixel_values(self, images: Sequence[Any]) -> Any:
        """The model's pixel values (on the device, in the model's dtype) of prepared images
        (:meth:`_prepare`): PIL images go through the processor."""
        import numpy as np
        import torch

        if self.prep is None or not isinstance(images[0], np.ndarray):
            pix = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
            return pix.to(self.device, self.dtype, non_blocking=True)
        if images[0].dtype != np.uint8:  # normalised in the pool already (CPU)
            return torch.from_numpy(np.stack(images)).to(self.device, self.dtype)
        if self.device.type == "cuda":  # stack straight into page-locked memory, copy asynchronously
            x = torch.empty((len(images),) + images[0].shape, dtype=torch.uint8, pin_memory=True)
            np.stack(images, out=x.numpy())
        else:
            x = torch.from_numpy(np.stack(images))
        x = x.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        pix = self._table[x.to(torch.int64) + self._channel_offset]  # (n, 3, h, w) float32
        return pix.to(self.dtype)

    def cosine(self, images: Sequence[Any], texts: Sequence[str]) -> list[float]:
        """Cosine similarity of each RGB PIL image with its caption (one model call)."""
        prepared = [self._prepare(im.convert("RGB")) for im in images] if self.prep is not None else list(images)
        return [float(v) for v in self._cosine_tensor(prepared, texts).cpu().tolist()]

    def _cosine_tensor(self, images: Sequence[Any], texts: Sequence[str]) -> Any:
        """One model call: the cosines of prepared images with their captions, on the device
        (not synchronised, so the next call's images can be prepared meanwhile)."""
        import torch

        n = len(images)
        images, texts = list(images), list(texts)
        fixed = self.cfg.fixed_shapes
        if fixed and n < self.cfg.batch_size:
            images += [images[0]] * (self.cfg.batch_size - n)
            texts += [texts[0]] * (self.cfg.batch_size - n)
        siglip = self.kind == "siglip"  # trained on captions padded to full length, without a mask
        tok = self.tokenizer(texts, padding="max_length" if fixed or siglip else True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        with torch.inference_mode():
            pix = self.pixel_values(images)
            img = self.model.get_image_features(pixel_values=pix)
            mask = None if siglip else tok["attention_mask"].to(self.device, non_blocking=True)
            txt = self.model.get_text_features(input_ids=tok["input_ids"].to(self.device, non_blocking=True),
                                               attention_mask=mask)
            img, txt = _features(img).float(), _features(txt).float()
            img = img / img.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            txt = txt / txt.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            return (img * txt).sum(dim=-1)[:n]


def _pil_processor_class(kind: str = "clip") -> Any:
    """The model type's Pillow/numpy image processor (``CLIPImageProcessorPil`` or
    ``SiglipImageProcessorPil`` in transformers 5; ``CLIPImageProcessor`` or
    ``SiglipImageProcessor`` before, when those were the Pillow ones)."""
    import transformers

    prefix = "Siglip" if kind == "siglip" else "CLIP"
    return getattr(transformers, f"{prefix}ImageProcessorPil", None) or getattr(transformers, f"{prefix}ImageProcessor")


def _features(out: Any) -> Any:
    """The embedding tensor of ``get_*_features`` (a tensor, or a model output in newer transformers)."""
    if hasattr(out, "pooler_output") and not hasattr(out, "norm"):
        return out.pooler_output
    return out
