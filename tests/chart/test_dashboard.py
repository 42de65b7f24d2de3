"""Every query of the Grafana dashboard is valid PromQL for a real Prometheus (Grafana's variables filled in as
Grafana would)."""

from __future__ import annotations

import json
import urllib.error

from zeta_dev.localcluster.prometheus import Prometheus

from .render import CHART

GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$task_class": ".*", "$policy": ".*"}


def test_every_dashboard_query_parses_in_prometheus(prometheus: Prometheus) -> None:
    dashboard = json.loads((CHART / "dashboards" / "zeta.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(queries) >= 15
    for query in queries:
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, f"unknown Grafana variable in {query}"
        try:
            prometheus.query(query)
        except urllib.error.HTTPError as e:
            raise AssertionError(f"Prometheus rejects {query!r}: {e.read().decode()}") from e
