"""Score text with any Hugging Face sequence-classification model from a local directory.

A quality classifier (FineWeb-Edu's), a domain classifier (NeMo Curator's), a CoLA
acceptability model, a toxicity model: anything ``AutoModelForSequenceClassification`` loads
from a directory written by ``save_pretrained`` (model and tokenizer), with
``local_files_only=True`` so nothing is ever downloaded.

The score of a text is the probability of one label (softmax over the labels; a sigmoid for
models whose ``problem_type`` is ``multi_label_classification``). A model with one output
(``num_labels == 1``, a regression head such as FineWeb-Edu's) gives its raw output.

Records are kept by an absolute ``threshold`` on the score or by an exact ``keep_fraction`` of
the scored records (the pipeline stage computes the global cut; see
:mod:`winnow.pipeline.stages.classifier`). Plain Python and torch: no Beam here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pyarrow as pa
import xxhash

from winnow.errors import ConfigError
from winnow.filters.devices import check_model_dir, check_selection, torch_device_and_dtype
from winnow.filters.base import KEEP, Verdict, drop

__all__ = [
    "ClassifierConfig",
    "ClassifierModel",
    "ClassifierError",
    "classifier_fields",
    "is_scored",
    "selection_key",
    "classifier_verdict",
    "REASON_BELOW",
]

REASON_BELOW = "classifier_below_threshold"

#: The default threshold on the score when neither ``threshold`` nor ``keep_fraction`` is set.
DEFAULT_THRESHOLD = 0.5


class ClassifierError(ValueError):
    """One text could not be scored (the stage dead-letters that record alone)."""


@dataclass(frozen=True)
class ClassifierConfig:
    """Options of the ``classifier`` stage.

    Attributes:
        model_dir: a local directory holding the model and its tokenizer (``save_pretrained``).
        label: the label whose probability is the score: its name (``id2label``) or its index.
            Empty: the one output of a one-output model, label 1 of a two-label model; a model
            with more labels needs it named.
        threshold: keep records whose score is at least this (default 0.5 when
            ``keep_fraction`` is not set either).
        keep_fraction: keep exactly this fraction (rounded) of the scored records, the highest
            scores; ties break by a hash of (id, source), the same on every runner.
        batch_size: texts per model call.
        records_per_call: Beam's RunInference groups record batches up to about this many
            records per inference call (``batch_elements_kwargs``); sorted by length inside a
            call, they are cut into model batches of ``batch_size``.
        max_length: tokens per text at most (longer texts are truncated).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        dtype: ``auto`` (bfloat16 on CUDA, float32 on CPU), ``float32``, ``bfloat16`` or ``float16``.
        column: the score column's name.
        modalities: records of these modalities are scored; others pass through unscored.
    """

    model_dir: str = ""
    label: str = ""
    threshold: float | None = None
    keep_fraction: float | None = None
    batch_size: int = 64
    records_per_call: int = 1024
    max_length: int = 512
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    column: str = "classifier_score"
    modalities: tuple[str, ...] = ("text",)

    def __post_init__(self) -> None:
        check_model_dir("classifier", self.model_dir,
                        "a local model directory (written by save_pretrained, with its tokenizer)", "tokenizer")
        check_selection("classifier", self.threshold, self.keep_fraction)
        if self.batch_size < 1:
            raise ConfigError("classifier.batch_size", self.batch_size, "a positive integer")
        if self.records_per_call < 1:
            raise ConfigError("classifier.records_per_call", self.records_per_call, "a positive integer")
        if self.max_length < 2:
            raise ConfigError("classifier.max_length", self.max_length, "an integer of at least 2")
        if not self.column.isidentifier():
            raise ConfigError("classifier.column", self.column, "a column name such as classifier_score")

    @property
    def cut_threshold(self) -> float | None:
        """The absolute threshold in force (None: selection by ``keep_fraction``)."""
        if self.keep_fraction is not None:
            return None
        return DEFAULT_THRESHOLD if self.threshold is None else self.threshold


def classifier_fields(cfg: ClassifierConfig) -> tuple[pa.Field, ...]:
    """The column the stage adds."""
    return (pa.field(cfg.column, pa.float64(), nullable=True),)


def is_scored(record: Mapping[str, Any], cfg: ClassifierConfig) -> bool:
    """Whether the model scores this record (its modality is scored and it has text)."""
    return record.get("modality", "text") in cfg.modalities and record.get("text") is not None


def selection_key(record: Mapping[str, Any], cfg: ClassifierConfig) -> tuple[float, int] | None:
    """Smaller is better: ``(-score, tie)``, ``tie`` a hash of (id, source); None when unscored."""
    v = record.get(cfg.column)
    if v is None or not is_scored(record, cfg):
        return None
    # 63 bits: Beam's integer coder holds signed 64-bit values
    tie = xxhash.xxh3_64_intdigest(
        f"{record.get('id')}\x00{record.get('source')}".encode("utf-8", "surrogatepass")) >> 1
    return (-float(v), tie)


def classifier_verdict(record: Mapping[str, Any], cfg: ClassifierConfig, cut: Sequence[Any] | None) -> Verdict:
    """Keep or drop a scored record: the absolute threshold, or the selection key against the
    exact global ``cut`` (None with ``keep_fraction``: nothing was scored, keep)."""
    score = record.get(cfg.column)
    if score is None or not is_scored(record, cfg):
        return KEEP
    threshold = cfg.cut_threshold
    if threshold is not None:
        return KEEP if score >= threshold else drop(REASON_BELOW)
    if cut is None:
        return KEEP
    key = selection_key(record, cfg)
    return KEEP if key is not None and key <= tuple(cut) else drop(REASON_BELOW)


def _resolve_label(label: str, config: Any, key: str = "classifier.label") -> int | None:
    """The output index the score reads (None: a one-output model's raw value)."""
    n = int(getattr(config, "num_labels", 0) or 0)
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    if n == 1:
        if label not in ("", "0") and label not in id2label.values():
            raise ConfigError(key, label, "empty (the model has one output)")
        return None
    by_name = {v: k for k, v in id2label.items()}
    if label == "":
        if n == 2:
            return 1
        raise ConfigError(key, label, f"one of the labels {sorted(by_name)} or an index below {n}",
                          f"the model has {n} labels")
    if label in by_name:
        return by_name[label]
    if label.lstrip("-").isdigit() and 0 <= int(label) < n:
        return int(label)
    raise ConfigError(key, label, f"one of the labels {sorted(by_name)} or an index below {n}")


class ClassifierModel:
    """A sequence-classification model and its tokenizer, loaded from ``cfg.model_dir``.

    ``score(texts)`` gives one result per text: the score (a float) or a
    :class:`ClassifierError` for a text that could not be tokenized (the others are scored).
    Texts are sorted by length inside a call so model batches carry little padding; results
    come back in input order.
    """

    def __init__(self, cfg: ClassifierConfig) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.cfg = cfg
        self.device, self.dtype = torch_device_and_dtype("classifier", cfg.device, cfg.dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model_dir, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(cfg.model_dir, local_files_only=True)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.index = _resolve_label(cfg.label, model.config)
        self.multi_label = getattr(model.config, "problem_type", None) == "multi_label_classification"
        limit = getattr(model.config, "max_position_embeddings", None) or cfg.max_length
        tok_limit = getattr(self.tokenizer, "model_max_length", None) or cfg.max_length
        self.max_length = int(min(cfg.max_length, limit, tok_limit))
        # a text longer than this many characters cannot fit more tokens than max_length anyway
        # in practice; cutting first keeps a huge record from costing a huge tokenization
        self.max_chars = self.max_length * 32

    def _encode(self, texts: Sequence[str]) -> tuple[list[list[int] | None], list[ClassifierError | None]]:
        tok = self.tokenizer
        kw = dict(truncation=True, max_length=self.max_length, add_special_tokens=True)
        cut = [t[: self.max_chars] if isinstance(t, str) else t for t in texts]
        try:
            ids = tok(list(cut), **kw)["input_ids"]
            return list(ids), [None] * len(cut)
        except Exception:  # noqa: BLE001 - find the text(s) that fail, score the rest
            pass
        out: list[list[int] | None] = []
        errs: list[ClassifierError | None] = []
        for t in cut:
            try:
                if not isinstance(t, str):
                    raise TypeError(f"text is {type(t).__name__}, not str")
                out.append(list(tok([t], **kw)["input_ids"][0]))
                errs.append(None)
            except Exception as exc:  # noqa: BLE001 - this text alone fails
                out.append(None)
                errs.append(ClassifierError(f"tokenization failed: {type(exc).__name__}: {exc}"))
        return out, errs

    def score(self, texts: Sequence[str]) -> list[float | ClassifierError]:
        """One score (or error) per text, in order."""
        import torch

        ids, errs = self._encode(texts)
        results: list[Any] = list(errs)
        order = sorted((i for i, x in enumerate(ids) if x is not None), key=lambda i: (len(ids[i]), i))
        pad = self.tokenizer.pad_token_id or 0
        bs = self.cfg.batch_size
        for s in range(0, len(order), bs):
            chunk = order[s:s + bs]
            width = max(len(ids[i]) for i in chunk)
            inp = np.full((len(chunk), width), pad, dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                seq = ids[i]
                inp[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1
            for i, v in zip(chunk, self._forward(torch.from_numpy(inp), torch.from_numpy(mask))):
                results[i] = v
        return results

    def _forward(self, input_ids: Any, attention_mask: Any) -> list[float]:
        import torch

        with torch.inference_mode():
            logits = self.model(input_ids=input_ids.to(self.device, non_blocking=True),
                                attention_mask=attention_mask.to(self.device, non_blocking=True)).logits
            logits = logits.float()
            if self.index is None:
                vals = logits[:, 0]
            elif self.multi_label:
                vals = torch.sigmoid(logits[:, self.index])
            else:
                vals = torch.softmax(logits, dim=-1)[:, self.index]
        return [float(v) for v in vals.cpu().tolist()]
