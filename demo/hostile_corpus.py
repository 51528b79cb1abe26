"""One hostile WebDataset corpus with every planted media defect: images and audio together.

:func:`hostile_samples` joins the image samples of :func:`winnow.demo.hostile_media.image_samples`
(truncated JPEG, PNG with a bad CRC, 20,000 x 20,000 and 10,000 x 10,000 bombs, 1,000:1
aspect, blank, blurred, tiny; good CMYK, 16-bit, palette, alpha, EXIF-rotated and animated
images) and the audio samples of :func:`winnow.demo.hostile_audio.audio_samples` (silence, a
0.2 s clip, a clipped clip, a corrupt header, a noisy clip, a wrong caption, a re-encoded
duplicate; good WAV, FLAC, MP3 and Ogg clips); :func:`write_hostile_corpus` writes them as one
tar. Each sample says what must become of it after :data:`MEDIA_STAGES` (kept, rejected by a
stage with a reason, or dead-lettered by a stage), with :func:`media_overrides`.
"""

from __future__ import annotations

from winnow.demo.hostile_audio import STAGES as AUDIO_STAGES
from winnow.demo.hostile_audio import audio_samples
from winnow.demo.hostile_media import HostileSample, image_samples, write_hostile_tar

__all__ = ["MEDIA_STAGES", "hostile_samples", "write_hostile_corpus", "media_overrides"]

#: Every media stage, in the order the expectations are written for.
MEDIA_STAGES = ("image_quality", "image_dedup", "image_text_score", *AUDIO_STAGES)


def hostile_samples(seed: int = 0) -> list[HostileSample]:
    """The image samples and the audio samples, one list (keys are distinct)."""
    out = image_samples(seed) + audio_samples()
    keys = [s.key for s in out]
    if len(set(keys)) != len(keys):  # pragma: no cover - a builder bug
        raise ValueError("hostile image and audio sample keys overlap")
    return out


def media_overrides(clip_dir: str, max_pixels: int = 4_000_000) -> list[str]:
    """The options the expectations assume: ``image_text_score`` on ``clip_dir`` with threshold 0
    (a random CLIP's scores are noise: the stage runs and annotates every pair, and no
    pair is planted for it), the model stages on the CPU, and the image pixel budget."""
    return [f"image_text_score.model_dir={clip_dir}", "image_text_score.threshold=0.0",
            "image_text_score.device=cpu", "image_text_score.batch_size=8",
            "audio_mos.device=cpu", "audio_asr.device=cpu", f"image_quality.max_pixels={max_pixels}"]


def write_hostile_corpus(path: str, samples: list[HostileSample] | None = None) -> list[HostileSample]:
    """Write ``samples`` (default: :func:`hostile_samples`) as one WebDataset tar; returns them."""
    samples = hostile_samples() if samples is None else samples
    write_hostile_tar(path, samples)
    return samples
