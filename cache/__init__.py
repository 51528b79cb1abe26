"""winnow's three-tier streaming loader: object store (L3) -> local SSD cache (L2) -> memory (L1) -> torch.

Depends only on the shard format (:mod:`winnow.format`), never on Beam or ``winnow.pipeline``.

Typical use, one instance per rank::

    from winnow.cache import StreamingDataset, StreamingDataLoader, CudaPrefetcher
    ds = StreamingDataset(remote="s3://bucket/run", local="/nvme/winnow-cache", cache_limit="500GB",
                          memory_limit="8GB", columns=["tokens"], shuffle=True, seed=17,
                          batch_size=32, batched=True)
    loader = StreamingDataLoader(ds, num_workers=4, pin_memory=False)  # the prefetcher copies from the
    # workers' page-locked segments (pin_memory=True: the DataLoader's pin copy instead)
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        for batch in CudaPrefetcher(loader):
            ...
"""

from winnow.cache.dataset import INDEX_KEY, StreamingDataset, detect_rank
from winnow.cache.gpu import CudaPrefetcher, document_masks, pin, pinned_collate, to_device
from winnow.cache.loader import StreamingDataLoader
from winnow.cache.metrics import serve_prometheus
from winnow.cache.mixing import SOURCE_KEY, MixedDataset, WeightSchedule
from winnow.cache.order import EpochOrder, RankPlan
from winnow.cache.packing import TokenPacker
from winnow.cache.remote import RetryPolicy
from winnow.units import format_size, parse_size

__all__ = [
    "StreamingDataset",
    "StreamingDataLoader",
    "MixedDataset",
    "WeightSchedule",
    "TokenPacker",
    "CudaPrefetcher",
    "RetryPolicy",
    "EpochOrder",
    "RankPlan",
    "INDEX_KEY",
    "SOURCE_KEY",
    "detect_rank",
    "pin",
    "pinned_collate",
    "to_device",
    "document_masks",
    "serve_prometheus",
    "parse_size",
    "format_size",
]
