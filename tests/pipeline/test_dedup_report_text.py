"""The dedup report sections' wording: plurals, a verification without a method, and clusters
found before any connected-components round."""

from __future__ import annotations

from winnow.pipeline.stages.dedup_report import dedup_section


def _html(st: dict, removed: int) -> str:
    stats = {"stage_stats": {"audio_dedup": st},
             "stages": [{"name": "audio_dedup", "rejected": {"audio_dedup_near_duplicate": removed}}]}
    sec = dedup_section("audio_dedup", "Near-duplicate audio clusters")(stats, [], {})
    assert sec is not None
    return sec.html


def test_one_cluster_one_record_and_no_verification_method() -> None:
    html = _html({"cluster_sizes": {"n": 1}, "cc_rounds": 0, "cc_max_rounds": 8, "cc_converged": True,
                  "verify_candidate_edges": 3, "verify_removed": 0}, 1)
    assert "1 cluster of two or more records; 1 record removed" in html
    assert "Verification:" in html and "None" not in html
    assert "0 round(s)" not in html and "no round had to change the graph" in html


def test_rounds_and_method_are_shown_when_present() -> None:
    html = _html({"cluster_sizes": {"n": 6}, "cc_rounds": 2, "cc_max_rounds": 8, "cc_converged": True,
                  "verify": "jaccard", "verify_candidate_edges": 10, "verify_removed": 2}, 7)
    assert "6 clusters of two or more records; 7 records removed" in html
    assert "2 round(s) changed the graph" in html and "Verification (jaccard):" in html
