"""A StreamingDataset with the small-cache settings the packing and transfer tests share."""

from __future__ import annotations

from winnow.cache import StreamingDataset


def ds(remote, local, **kw):
    args = dict(remote=remote, local=str(local), cache_limit="32MB", columns=["tokens"], batch_size=20,
                batched=True, shuffle_block=150, seed=1)
    args.update(kw)
    return StreamingDataset(**args)
