"""Near-duplicate detection: MinHash signatures and LSH for text, perceptual hashes for images,
and the pure clustering steps the Beam stages run (no Beam here)."""

from winnow.filters.dedup.config import ImageDedupConfig, MinHashDedupConfig

__all__ = ["MinHashDedupConfig", "ImageDedupConfig"]
