"""The Grafana dashboard and the Prometheus alert rules in deploy/ parse, and use only metrics the service exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY

import api.metrics
import facequeue.plumbing.metrics
import workers.metrics
from facequeue.core.settings import Settings
from facequeue.plumbing.backlog_gauges import BacklogCollector

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
DASHBOARD = json.loads((DEPLOY / "grafana" / "facequeue.json").read_text())
ALERTS = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
GRAFANA_VARIABLES = {"$__rate_interval": "5m"}  # what Grafana substitutes before the query reaches Prometheus
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
EXPECTED_ALERTS = {  # the four, and what keeps them honest
    "FacequeueBacklogAgeHigh",
    "FacequeueBatchBacklogAgeHigh",
    "FacequeueTaskFailureRatioHigh",
    "FacequeueWebhookBacklog",
    "FacequeueNoLiveWorker",
    "FacequeueMetricsSourceDown",
    "FacequeueUpstreamCircuitOpen",
}


def exported_series_names() -> set[str]:
    """Every series name the service can expose: the families registered by the API, the workers and the
    lifecycle, and the backlog collector's, with the suffixes Prometheus adds per type."""
    assert api.metrics and workers.metrics and facequeue.plumbing.metrics  # imported for their families
    families = [family for family in REGISTRY.collect() if family.name.startswith("facequeue_")]
    families += BacklogCollector(Settings(_env_file=None)).describe()
    return {family.name + suffix for family in families for suffix in SAMPLE_SUFFIXES[family.type]}


def metric_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    return names


def dashboard_queries() -> list[str]:
    queries = []
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries.append(expr)
    return queries


def alert_rules() -> list[dict]:
    return [rule for group in ALERTS["groups"] for rule in group["rules"]]


def test_the_exported_names_are_the_agreed_ones() -> None:
    names = exported_series_names()
    for name in (
        "facequeue_backlog_tasks",
        "facequeue_backlog_oldest_queued_age_seconds",
        "facequeue_workers_alive",
        "facequeue_tasks_submitted_total",
        "facequeue_tasks_finished_total",
        "facequeue_task_queue_wait_seconds_bucket",
        "facequeue_task_processing_seconds_count",
        "facequeue_task_end_to_end_seconds_sum",
        "facequeue_frames_processed_total",
        "facequeue_detector_seconds_bucket",
        "facequeue_broker_queue_length",
        "facequeue_webhook_attempts_total",
        "facequeue_webhook_deliveries_pending",
        "facequeue_upstream_calls_total",
        "facequeue_upstream_circuit_state",
        "facequeue_http_requests_total",
        "facequeue_http_request_duration_seconds_bucket",
        "facequeue_metrics_source_up",
    ):
        assert name in names


def test_every_dashboard_query_parses_and_uses_exported_metrics() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 20
    used = set()
    for expr in queries:
        used |= metric_names(expr)
    assert used <= exported_series_names(), used - exported_series_names()
    # every family the issue asks for is on the dashboard
    assert {name.removesuffix("_bucket") for name in used} >= {
        "facequeue_backlog_tasks",
        "facequeue_backlog_oldest_queued_age_seconds",
        "facequeue_broker_queue_length",
        "facequeue_workers_alive",
        "facequeue_tasks_submitted_total",
        "facequeue_tasks_finished_total",
        "facequeue_task_queue_wait_seconds",
        "facequeue_task_processing_seconds",
        "facequeue_task_end_to_end_seconds",
        "facequeue_frames_processed_total",
        "facequeue_detector_seconds",
        "facequeue_webhook_attempts_total",
        "facequeue_webhook_deliveries_pending",
        "facequeue_upstream_calls_total",
        "facequeue_upstream_circuit_state",
        "facequeue_http_requests_total",
        "facequeue_http_request_duration_seconds",
    }


def test_dashboard_panels_have_unique_ids_and_use_the_datasource_variable() -> None:
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    assert [variable["name"] for variable in DASHBOARD["templating"]["list"]] == ["datasource"]
    for panel in DASHBOARD["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]


def test_alert_rules_are_complete_and_use_exported_metrics() -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} == EXPECTED_ALERTS
    exported = exported_series_names()
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert DURATION.match(rule["for"]), rule["for"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        names = metric_names(rule["expr"])
        assert names and names <= exported, (rule["alert"], names - exported)


@pytest.mark.parametrize("expr", ["sum(rate(facequeue_tasks_finished_total[5m])", "max(facequeue_workers_alive) =="])
def test_a_broken_query_is_caught(expr: str) -> None:
    with pytest.raises(ValueError):
        promql_parser.parse(expr)
