"""Static checks of the ops dashboards (no Grafana or Prometheus runs here): the provisioning and
dashboard files load, every panel queries the provisioned Prometheus data source, and every metric
a panel queries is one the code actually exposes (spark_streaming/metrics.py, fraud_platform/api/metrics.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from fraud_platform.api.metrics import ApiMetrics
from spark_streaming.metrics import StreamMetrics

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# Suffixes the Prometheus exposition adds per metric type.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "info": ("_info",),
            "summary": ("_sum", "_count", "")}
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "max", "min", "avg", "clamp_min", "le", "without"}


def exposed_names() -> set[str]:
    """Every series name the two registries can expose (labelled metrics included before first use)."""
    names = set()
    for registry in (StreamMetrics().registry, ApiMetrics().registry):
        for family in registry.collect():
            names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def queried_metrics(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    without_labels = re.sub(r"\{[^}]*\}", "", without_ranges)
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_labels))
    grouping = set(re.findall(r"by \(([^)]*)\)", without_labels))
    labels = {label.strip() for group in grouping for label in group.split(",")}
    return {t for t in tokens - PROMQL_WORDS - labels if not re.fullmatch(r"e\d*", t)}


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_every_panel_queries_a_metric_the_code_exposes(path):
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] and dashboard["panels"]
    exposed = exposed_names()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            metrics = queried_metrics(target["expr"])
            assert metrics, f"{panel['title']}: no metric in {target['expr']!r}"
            unknown = metrics - exposed
            assert not unknown, f"{path.name} / {panel['title']}: {sorted(unknown)} not exposed by the code"


def test_the_dashboards_cover_the_ops_questions():
    exprs = " ".join(t["expr"] for p in DASHBOARDS for panel in json.loads(p.read_text())["panels"] for t in panel["targets"])
    for metric in ("fraud_stream_rows_total", "fraud_stream_batch_duration_seconds_bucket", "fraud_stream_end_to_end_latency_seconds_bucket",
                   "fraud_stream_consumer_lag_records", "fraud_stream_dead_letters_total", "fraud_stream_model_version",
                   "fraud_api_requests_total", "fraud_api_request_seconds_bucket", "fraud_api_decisions_total", "fraud_stream_decisions_total"):
        assert metric in exprs, metric


def test_the_checker_catches_a_metric_the_code_does_not_expose():
    assert queried_metrics('sum by (rule) (rate(fraud_stream_dead_letterz_total{rule="x"}[5m]))') == {"fraud_stream_dead_letterz_total"}
    assert "fraud_stream_dead_letterz_total" not in exposed_names()


def test_provisioning_points_at_prometheus_and_the_dashboards_folder():
    from fraud_platform_tests.deploy._compose import load_compose

    services = load_compose()["services"]
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert (datasource["uid"], datasource["type"], datasource["url"]) == ("prometheus", "prometheus", "http://prometheus:9090")
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "fraud_platform.yml").read_text())["providers"][0]
    grafana = services["grafana"]
    assert "./deploy/grafana/dashboards:" + provider["options"]["path"] + ":ro" in grafana["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "prometheus" in grafana["depends_on"]
