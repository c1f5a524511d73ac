"""Prometheus and Grafana files: valid for the real tools, and about metrics the code exports.

promtool (Debian's prometheus package, installed by `make setup`) checks the scrape config
and parses every PromQL expression of the Grafana dashboard. The metric names the
dashboard queries must be the ones listed in infra/metrics.py, which the stack test checks
against the running processes' /metrics.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.metrics import EXPECTED_METRICS, PROMETHEUS_BUILTIN, expected_names

ROOT = Path(__file__).resolve().parents[3]
MONITORING = ROOT / "infra" / "monitoring"
PROMETHEUS_YML = MONITORING / "prometheus.yml"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = MONITORING / "grafana" / "provisioning" / "dashboards" / "pipeline.yml"

# Grafana's built-in interval variables, as Prometheus durations for parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless",
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "abs", "clamp_min",
    "clamp_max", "time", "vector", "scalar", "label_replace", "absent", "changes", "resets", "sort",
    "sort_desc", "max_over_time", "min_over_time", "avg_over_time", "sum_over_time", "last_over_time",
}  # fmt: skip


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: apt-get install prometheus (make setup installs it as root)")
    return found


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return out


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (identifiers that are not functions, keywords or labels)."""
    text = re.sub(r'"[^"]*"', "", expr)  # label values
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    return {n for n in names if n not in PROMQL_KEYWORDS and not n.startswith("__")}


@pytest.fixture(scope="module", params=DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def dashboard(request) -> dict[str, Any]:
    return json.loads(request.param.read_text())


# --- Prometheus --------------------------------------------------------------------------


def test_prometheus_config_passes_promtool_check():
    result = subprocess.run(
        [promtool(), "check", "config", str(PROMETHEUS_YML)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_prometheus_config(tmp_path):
    # The check above can fail: an unknown field and a bad duration.
    broken = PROMETHEUS_YML.read_text().replace(
        "scrape_interval: 5s", "scrape_interval: 5 seconds\n  scrap_timeout: 4s"
    )
    path = tmp_path / "prometheus.yml"
    path.write_text(broken)
    result = subprocess.run(
        [promtool(), "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0


def test_prometheus_jobs_are_the_jobs_of_the_metric_list():
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    assert [job["job_name"] for job in config["scrape_configs"]] == list(EXPECTED_METRICS)


# --- Grafana provisioning ------------------------------------------------------------------


def test_datasource_provisioning_points_at_compose_prometheus():
    config = yaml.safe_load(DATASOURCES.read_text())
    (source,) = config["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["uid"] == "prometheus"


def test_dashboard_provider_loads_the_folder_compose_mounts():
    providers = yaml.safe_load(PROVIDERS.read_text())["providers"]
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"] if v.startswith("./"))
    dashboards_in_container = mounts["./infra/monitoring/grafana/dashboards"]
    assert [p["options"]["path"] for p in providers] == [dashboards_in_container]
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.rpartition("/")[0] == dashboards_in_container
    assert (ROOT / "infra/monitoring/grafana/dashboards" / home.rpartition("/")[2]).exists()


# --- the Grafana dashboard ----------------------------------------------------------------


def test_there_is_a_provisioned_dashboard():
    assert DASHBOARDS


def test_dashboard_has_the_fields_grafana_provisioning_needs(dashboard):
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["panels"]
    assert dashboard.get("id") is None  # an id would clash with Grafana's own numbering


def test_panel_ids_and_query_ref_ids_are_unique(dashboard):
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]


def test_panels_sit_on_the_24_column_grid_without_overlapping(dashboard):
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard):
        pos = panel["gridPos"]
        assert all(isinstance(pos[k], int) for k in ("x", "y", "w", "h")), panel["title"]
        assert 0 <= pos["x"] and pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_query_uses_the_provisioned_datasource(dashboard):
    uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] == uid
            assert target["expr"].strip()


def test_every_query_is_valid_promql(dashboard, tmp_path):
    # promtool parses recording rules with Prometheus's own PromQL parser.
    rules = []
    for i, expr in enumerate(expressions(dashboard)):
        for variable, duration in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, duration)
        rules.append({"record": f"panel_query_{i}", "expr": expr})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_only_metrics_of_the_metric_list(dashboard):
    queried = set().union(*(metric_names(e) for e in expressions(dashboard)))
    assert queried - expected_names() == set(), (
        "add them to infra/metrics.py (and to the code that exports them)"
    )


def test_every_listed_metric_has_a_panel(dashboard):
    queried = set().union(*(metric_names(e) for e in expressions(dashboard)))
    listed = expected_names() - PROMETHEUS_BUILTIN
    assert listed - queried == set(), "a metric in infra/metrics.py that no panel shows"


@pytest.mark.parametrize(
    "topic",
    ["throughput", "lag", "dead letters", "late events", "alerts", "sink", "circuit"],
)
def test_dashboard_shows_each_required_topic(dashboard, topic):
    assert any(topic in p["title"].lower() for p in panels(dashboard) if p["type"] != "row")


def test_metric_name_extraction_ignores_functions_labels_and_ranges():
    expr = 'histogram_quantile(0.99, sum by (le) (rate(a_b_bucket{job="flow"}[$__rate_interval]))) / on(x) c'
    assert metric_names(expr) == {"a_b_bucket", "c"}
