"""Import-time stand-in for torchvision, used only by bench/loader to import MosaicML Streaming.

``streaming/__init__.py`` imports its vision datasets, which import torchvision. PyPI's
torchvision wheels are CUDA builds whose C extension cannot load next to winnow's CPU-only
torch, and the benchmark reads token arrays only, so no torchvision code runs. This package
provides just the names that import needs; calling any of them raises.
"""
