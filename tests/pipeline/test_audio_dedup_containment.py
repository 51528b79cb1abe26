"""audio_dedup in Beam: a short clip shared by different recordings (a jingle) removes none of
them, a true copy is still removed, and with ``cluster: representative`` a chain of clips
(each similar to the next, the ends not) cannot make a recording the duplicate of one it is
not similar to."""

from __future__ import annotations

import io

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from winnow.filters.audio_fingerprint import RATE, AudioDedupConfig
from winnow.pipeline.records import make_record
from winnow.pipeline.stages.audio_dedup import AudioDedup

from ..filters.test_audio_containment import syllables
from .batches import create_batches, rows

sf = pytest.importorskip("soundfile")

class _Collect:
    """Collects rows in the test process (FnApiRunner runs in-process; the class travels by
    reference, so its store is this module's)."""

    store: dict[str, list] = {}

    def __init__(self, name: str) -> None:
        self.name = name
        _Collect.store[name] = []

    def __call__(self, r):
        _Collect.store[self.name].append(r)


def _run_stage(stage, recs):
    with TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        out = create_batches(p, recs, size=2) | stage
        for name, pc in (("kept", out.kept), ("rejected", out.rejected), ("dead", out.dead)):
            rows(pc, name) | f"Sink{name}" >> beam.Map(_Collect(name))
    return _Collect.store["kept"], _Collect.store["rejected"], _Collect.store["dead"]


def flac(x: np.ndarray, gain: float = 1.0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(x * gain, -1, 1), RATE, format="FLAC")
    return buf.getvalue()


def _rec(rid: str, x: np.ndarray, gain: float = 1.0) -> dict:
    return make_record(source=f"s/{rid}", id=rid, audio=flac(x, gain), text=f"recording {rid}")


def test_a_shared_jingle_removes_no_recording_and_a_copy_is_still_removed():
    jingle = syllables(5, 1)
    ep1 = np.concatenate([jingle, syllables(55, 2)])
    recs = [
        _rec("a-jingle", jingle),
        _rec("b-episode1", ep1),
        _rec("c-episode2", np.concatenate([jingle, syllables(55, 3)])),
        _rec("d-other", syllables(60, 4)),
        _rec("e-episode1-copy", ep1[int(0.2 * RATE):], gain=0.5),
    ]
    kept, rejected, dead = _run_stage(AudioDedup(AudioDedupConfig()), recs)
    assert not dead
    assert sorted(r["id"] for r in kept) == ["a-jingle", "b-episode1", "c-episode2", "d-other"]
    assert [(r["id"], r["reject_reason"], r["duplicate_of"]) for r in rejected] == [
        ("e-episode1-copy", "audio_dedup_near_duplicate", "b-episode1")]
    sizes = {r["id"]: r["audio_dup_cluster_size"] for r in kept}
    assert sizes["b-episode1"] == 2 and sizes["a-jingle"] in (None, 1) and sizes["c-episode2"] in (None, 1)


@pytest.fixture(scope="module")
def chain():
    a = syllables(20, 41)
    b = np.concatenate([a, syllables(12, 42)])  # 32 s: a is 62% of it
    c = np.concatenate([b, syllables(20, 43)])  # 52 s: b is 62% of it, a only 38%
    return [_rec("a", a), _rec("b", b), _rec("c", c)]


def test_representative_clusters_do_not_chain(chain):
    kept, rejected, dead = _run_stage(AudioDedup(AudioDedupConfig()), chain)
    assert not dead
    assert sorted(r["id"] for r in kept) == ["a", "c"]
    assert [(r["id"], r["duplicate_of"]) for r in rejected] == [("b", "a")]


def test_components_chain_as_documented(chain):
    kept, rejected, dead = _run_stage(AudioDedup(AudioDedupConfig(cluster="components")), chain)
    assert not dead
    assert [r["id"] for r in kept] == ["a"]
    assert sorted((r["id"], r["duplicate_of"]) for r in rejected) == [("b", "a"), ("c", "a")]
