"""Placeholder for ``to_tensor``; the benchmark never calls it."""


def to_tensor(pic):
    raise RuntimeError("torchvision is not installed; bench/loader only shims its import")
