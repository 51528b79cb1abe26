"""Names ``streaming.vision`` imports; unusable on purpose (see the package docstring)."""


class VisionDataset:
    """Placeholder base class; the benchmark never builds a vision dataset."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision is not installed; bench/loader only shims its import")


class CIFAR10(VisionDataset):
    """Placeholder."""
