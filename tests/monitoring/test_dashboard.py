"""The Grafana dashboard JSON: importable structure, and queries only winnow's metric names.

(Grafana is not installable here; tests/monitoring/test_prometheus_live.py runs every panel's
query against a real Prometheus holding a run's and a loader's metrics.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from winnow.monitoring.names import LOADER, PIPELINE, metric_names

DASHBOARD_PATH = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "winnow-dashboard.json"
DASHBOARD = json.loads(DASHBOARD_PATH.read_text())


def panel_queries(dash: dict) -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` of every target of every panel (rows' nested panels too)."""
    out = []
    for p in dash["panels"]:
        for q in [p, *p.get("panels", [])]:
            for t in q.get("targets", []):
                out.append((q["title"], t["expr"]))
    return out


def substitute(expr: str, run_id: str, rank: str) -> str:
    """The query Grafana would send with the dashboard's variables set."""
    return expr.replace("$run_id", run_id).replace("$rank", rank).replace("$__rate_interval", "1m")


def test_dashboard_structure_is_importable():
    d = DASHBOARD
    assert d["title"] and d["uid"] and isinstance(d["schemaVersion"], int)
    assert [i["name"] for i in d["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        assert {"type", "title", "gridPos"} <= set(p), p.get("title")
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0
        if p["type"] != "row":
            assert p["targets"] and p["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert all(t["refId"] and t["expr"] for t in p["targets"])
    names = {v["name"] for v in d["templating"]["list"]}
    assert names == {"run_id", "rank"}


def test_dashboard_covers_what_the_issue_asks_for():
    titles = " | ".join(t for t, _ in panel_queries(DASHBOARD)).lower()
    for word in ("funnel", "rejects by", "throughput per stage", "dead letters", "hit rates", "fetch bandwidth", "stall share per rank"):
        assert word in titles, word


def test_dashboard_queries_only_exported_metrics():
    used = set()
    for title, expr in panel_queries(DASHBOARD):
        found = set(re.findall(r"\bwinnow_[a-z0-9_]+", expr))
        assert found, title
        used |= found
        assert found <= metric_names(), (title, found - metric_names())
        assert expr.count("(") == expr.count(")"), title
    assert any(n in used for n in PIPELINE) and any(n in used for n in LOADER)


def test_every_loader_metric_has_a_snapshot_source():
    from winnow.monitoring.loader import SNAPSHOT_KEYS

    assert set(SNAPSHOT_KEYS) == set(LOADER)
