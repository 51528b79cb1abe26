"""winnow: curate multimodal training corpora on Apache Beam, stream the shards into training.

The sub-packages are ``winnow.pipeline`` (Beam), ``winnow.filters`` and ``winnow.tokenizer``
(pure per-record logic, no Beam), and ``winnow.cache`` (the loader, no Beam). This root package
holds only what all of them share: the exception hierarchy and the shard-format contract.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
