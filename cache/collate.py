"""Steps and samples as torch sees them, and what torch's default collate makes of them.

:func:`step_to_torch` turns a gathered step into a dict of tensors, :func:`samples` into one dict
per sample. A step or sample holding a variable-length (ragged) column is a :class:`RaggedStep` /
:class:`RaggedSample`, ``dict`` subclasses registered in torch's ``default_collate_fn_map``: a
plain ``DataLoader(ds, batch_size=8)`` then raises a :class:`~winnow.errors.CacheError` that says
what to use, instead of failing inside ``torch.stack`` (``Trying to resize storage that is not
resizable`` in a worker). A ``CacheError`` takes one message, so a DataLoader worker re-raises it
in the main process as the same type.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from winnow.errors import CacheError

from winnow.cache.memory import INDEX_KEY

__all__ = ["RaggedSample", "RaggedStep", "step_to_torch", "samples"]


class RaggedSample(dict):
    """One sample (a ``dict``) holding a variable-length column (NumPy arrays of differing
    lengths), as a per-sample :class:`~winnow.cache.dataset.StreamingDataset` yields it.

    torch's default collate cannot stack such rows; for this type it raises a
    :class:`~winnow.errors.CacheError` that says what to use instead.
    """

    def __init__(self, ragged: tuple[str, ...] = (), *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ragged = ragged

    def __reduce__(self) -> tuple[Any, ...]:
        return RaggedSample, (self.ragged, dict(self))


class RaggedStep(dict):
    """A whole step (``batched=True``) with a variable-length column as flat values plus
    ``<column>_offsets``; torch's default collate refuses it (see :class:`RaggedSample`)."""

    def __init__(self, ragged: tuple[str, ...] = (), *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ragged = ragged

    def __reduce__(self) -> tuple[Any, ...]:
        return RaggedStep, (self.ragged, dict(self))


def _refuse_collate(batch: Sequence[Any], *, collate_fn_map: Any = None) -> Any:
    cols = ", ".join(repr(c) for c in batch[0].ragged)
    if isinstance(batch[0], RaggedStep):
        raise CacheError(
            f"DataLoader(batch_size={len(batch)}) over a batched=True StreamingDataset would stack whole steps, and "
            f"the variable-length column(s) {cols} cannot be stacked; use DataLoader(dataset, batch_size=None) or "
            "StreamingDataLoader(dataset), which hand out each step as it is (flat values plus <column>_offsets)")
    raise CacheError(
        f"torch's default collate cannot stack the variable-length column(s) {cols} into a batch; use "
        "StreamingDataset(batched=True, batch_size=B) with StreamingDataLoader(dataset) (each step carries "
        "<column> as flat values plus <column>_offsets), or TokenPacker(dataset, seq_len=...) for fixed-length "
        "sequences, or pass DataLoader(collate_fn=...) a function of your own")


def _register_collate() -> None:
    try:
        from torch.utils.data._utils.collate import default_collate_fn_map
    except ImportError:  # private module moved: torch's own error remains
        return
    default_collate_fn_map[RaggedSample] = _refuse_collate
    default_collate_fn_map[RaggedStep] = _refuse_collate


_register_collate()


def step_to_torch(out: Mapping[str, Any]) -> dict[str, Any]:
    """One gathered step (NumPy arrays, ``(values, offsets)`` tuples, lists) as a dict of tensors.

    A ragged column ``c`` becomes ``c`` (flat values) and ``c_offsets`` (``rows + 1`` int64),
    in a :class:`RaggedStep`.
    """
    res: dict[str, Any] = {}
    ragged = []
    for k, v in out.items():
        if isinstance(v, np.ndarray):
            res[k] = torch.from_numpy(v)
        elif isinstance(v, tuple):
            res[k] = torch.from_numpy(v[0])
            res[f"{k}_offsets"] = torch.from_numpy(v[1])
            ragged.append(k)
        else:
            res[k] = v
    return RaggedStep(tuple(ragged), res) if ragged else res


def samples(out: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The samples of one gathered step, one dict each (a :class:`RaggedSample` if a column is ragged)."""
    idx = out[INDEX_KEY]
    cols = [(k, v) for k, v in out.items() if k != INDEX_KEY]
    ragged = tuple(k for k, v in cols if isinstance(v, tuple))
    for i in range(len(idx)):
        # A sample with a variable-length column is a RaggedSample: torch's default collate
        # refuses it with a winnow error instead of failing inside torch.stack.
        d: dict[str, Any] = RaggedSample(ragged) if ragged else {}
        d[INDEX_KEY] = int(idx[i])
        for k, v in cols:
            if isinstance(v, tuple):
                d[k] = v[0][v[1][i]:v[1][i + 1]]
            else:
                d[k] = v[i]
        yield d
