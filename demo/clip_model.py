"""A randomly initialised CLIP model directory, built offline (for tests, the demo and benchmarks).

:func:`build_random_clip` writes what ``CLIPModel.save_pretrained`` and
``CLIPProcessor.save_pretrained`` write for a real checkpoint: the model, a byte-level BPE
tokenizer (the 256 byte symbols, each also as a word end, and the two CLIP specials; no
merges, so every character is a token) and the Pillow/numpy image processor. Its scores are
noise: it proves the loading and inference paths, and with ``size="vit-b-16"`` (ViT-B/16's
shape: vision 12x768 on 224-pixel images in 16-pixel patches, text 12x512, projection 512)
it has a realistic cost per image. :func:`build_random_siglip` writes a tiny random SigLIP the
same way (``SiglipModel``, a sentencepiece ``SiglipTokenizer`` trained here on Python's own
help texts, and the Pillow image processor). Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

__all__ = ["build_random_clip", "build_random_siglip", "image_processor_class", "demo_clip_overrides"]


def image_processor_class():
    """CLIP's Pillow/numpy image processor class (``CLIPImageProcessorPil`` in transformers 5;
    ``CLIPImageProcessor`` before, where that one was the Pillow one)."""
    try:
        from transformers import CLIPImageProcessorPil

        return CLIPImageProcessorPil
    except ImportError:
        from transformers import CLIPImageProcessor

        return CLIPImageProcessor


def save_quietly(model: object, out: str) -> None:
    """``model.save_pretrained(out)`` without transformers' progress bar on the console (the demo
    prints its own progress)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out)  # type: ignore[attr-defined]
    finally:
        if was:
            hf_logging.enable_progress_bar()


def build_random_clip(path: str | Path, size: Literal["tiny", "vit-b-16"] = "tiny", seed: int = 0) -> str:
    """Write a random CLIP with its tokenizer and image processor under ``path``; returns it."""
    import torch
    from tokenizers import pre_tokenizers
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    tok = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    if size == "tiny":
        image_side = 32
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      image_size=image_side, patch_size=8)
        projection = 16
        vocab_size = len(vocab)
    else:  # openai/clip-vit-base-patch16's shape
        image_side = 224
        text = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8)
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=image_side, patch_size=16)
        projection = 512
        vocab_size = 49408
    cfg = CLIPConfig(text_config=dict(vocab_size=vocab_size, max_position_embeddings=77,
                                      bos_token_id=0, eos_token_id=1, pad_token_id=1, **text),
                     vision_config=vision, projection_dim=projection)
    torch.manual_seed(seed)
    save_quietly(CLIPModel(cfg).eval(), str(out))
    proc = image_processor_class()(size={"shortest_edge": image_side}, crop_size={"height": image_side, "width": image_side},
                                   do_center_crop=True, do_resize=True, do_normalize=True, do_convert_rgb=True)
    CLIPProcessor(image_processor=proc, tokenizer=tok).save_pretrained(str(out))
    return str(out)


def build_random_siglip(path: str | Path, seed: int = 0) -> str:
    """Write a tiny random SigLIP with its tokenizer and image processor under ``path``; returns it.

    The tokenizer is a 256-piece sentencepiece unigram model trained on Python's help topics
    (``pydoc_data.topics``, shipped with Python), as ``SiglipTokenizer`` loads one; the image
    processor resizes to 32 x 32 (SigLIP's exact-size resize, no crop) and normalises by 0.5.
    """
    import io

    import sentencepiece as spm
    import torch
    from pydoc_data.topics import topics
    from transformers import SiglipConfig, SiglipModel, SiglipProcessor, SiglipTokenizer

    import transformers

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    lines = [ln for v in sorted(topics.values()) for ln in v.splitlines() if ln.strip()][:4000]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, vocab_size=256,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>",
                                   eos_piece="</s>", unk_piece="<unk>", minloglevel=2, num_threads=1)
    spiece = out / "spiece.model"
    spiece.write_bytes(buf.getvalue())
    text_len = 16
    tok = SiglipTokenizer(vocab_file=str(spiece), model_max_length=text_len)
    cfg = SiglipConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=text_len, pad_token_id=0, bos_token_id=None,
                         eos_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8))
    torch.manual_seed(seed)
    save_quietly(SiglipModel(cfg).eval(), str(out))
    proc_cls = getattr(transformers, "SiglipImageProcessorPil", None) or transformers.SiglipImageProcessor
    proc = proc_cls(size={"height": 32, "width": 32}, do_resize=True, do_rescale=True, do_normalize=True)
    SiglipProcessor(image_processor=proc, tokenizer=tok).save_pretrained(str(out))
    return str(out)


#: The demo keeps this fraction of the scored pairs (its model is random: the cut shows the
#: mechanism, not a judgement).
DEMO_KEEP_FRACTION = 0.95


def demo_clip_overrides(corpus_dir: str) -> list[str]:
    """Build the demo's tiny random CLIP under ``<corpus_dir>/models/clip`` and return the
    ``image_text_score`` options that use it; ``[]`` when torch or transformers is missing
    (``pip install 'winnow[images]'``), and the demo then runs without the stage."""
    import importlib.util

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        return []
    path = build_random_clip(Path(corpus_dir) / "models" / "clip")
    return [f"image_text_score.model_dir={path}", f"image_text_score.keep_fraction={DEMO_KEEP_FRACTION}"]
