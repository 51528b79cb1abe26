"""fastText helpers that work with numpy 2.

``fasttext-wheel`` 0.9.2's ``predict`` wraps results with ``np.array(..., copy=False)``, which
numpy 2 refuses, and its bound ``multilinePredict`` repeats the top probability for every label
when ``k > 1``; the bound single-line ``predict`` is correct and is what we call.
(``fasttext-numpy2`` 0.10.4 fixes predict but its training diverges to NaN at random here,
so it is not used.)
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["ft_predict", "import_fasttext"]


def import_fasttext(key: str) -> Any:
    """The fasttext module, or a ConfigError naming ``key`` when it is not installed."""
    from winnow.errors import ConfigError

    try:
        import fasttext
    except ImportError as exc:
        raise ConfigError(key, "fasttext", "the fasttext package installed", "pip install fasttext-wheel==0.9.2") from exc
    ft_module = getattr(fasttext, "FastText", None)
    if ft_module is not None and hasattr(ft_module, "eprint"):
        ft_module.eprint = lambda *a, **k: None  # load_model's API-change notice on every load
    return fasttext


def ft_predict(model: Any, lines: Sequence[str], k: int = 1) -> tuple[list[list[str]], list[list[float]]]:
    """Labels and probabilities of the top ``k`` labels (``-1``: all) for each line.

    Newlines inside a line would split it; they are replaced by spaces.
    """
    predict = model.f.predict
    labels: list[list[str]] = []
    probs: list[list[float]] = []
    for ln in lines:
        pairs = predict(ln.replace("\n", " ") + "\n", k, 0.0, "replace")
        labels.append([lab for _, lab in pairs])
        probs.append([float(p) for p, _ in pairs])
    return labels, probs
