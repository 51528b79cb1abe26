"""The cycle collector's thresholds in winnow's processes (``winnow.pipeline.memory.tune_gc``)."""

import gc

import pytest

from winnow.pipeline.memory import GC_THRESHOLD, tune_gc


@pytest.fixture
def thresholds():
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("thresholds")
def test_tune_gc_raises_the_default_thresholds_once():
    gc.set_threshold(700, 10, 10)  # Python's defaults
    tune_gc()
    assert gc.get_threshold() == (GC_THRESHOLD, 20, 20)
    tune_gc()
    assert gc.get_threshold() == (GC_THRESHOLD, 20, 20)


@pytest.mark.usefixtures("thresholds")
def test_tune_gc_keeps_a_higher_or_disabled_setting():
    gc.set_threshold(GC_THRESHOLD * 5, 50, 30)
    tune_gc()
    assert gc.get_threshold() == (GC_THRESHOLD * 5, 50, 30)
    gc.set_threshold(0, 10, 10)  # automatic collection off: the process chose it
    tune_gc()
    assert gc.get_threshold() == (0, 10, 10)


def test_a_stage_step_tunes_its_worker_process():
    """Every stage step's setup tunes its process (so workers of any runner are tuned)."""
    import subprocess
    import sys

    code = ("import gc; gc.set_threshold(700, 10, 10)\n"
            "from winnow.pipeline.stages.base import _FilterFn\n"
            "from winnow.filters.normalize import Normalizer\n"
            "fn = _FilterFn('normalize', Normalizer, chunk=8); fn.setup()\n"
            "print(gc.get_threshold()[0])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out.strip()) == GC_THRESHOLD
