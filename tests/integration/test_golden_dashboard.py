"""The shipped Grafana dashboard: every query is PromQL that Prometheus' own checker accepts,
uses rate() over the window the user picks (never irate), and covers services, edges and
routes with the labels the documented scrape configurations set."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml

DOCS = Path(__file__).resolve().parents[2] / "docs" / "observability"


def expressions() -> list[str]:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_every_dashboard_query_is_valid_promql_over_the_chosen_window(tmp_path: Path) -> None:
    exprs = expressions()
    assert len(exprs) >= 10
    for expr in exprs:
        assert "irate(" not in expr
        if "rate(" in expr:
            assert "[$window]" in expr
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus package) is not installed"
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "record": f"weft:dashboard_{n}",
                        "expr": e.replace("$window", "1m").replace("$service", "api|web"),
                    }
                    for n, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in checked.stdout


def test_the_dashboard_shows_services_edges_and_routes() -> None:
    joined = "\n".join(expressions())
    assert "sum by (service)" in joined  # per service
    assert "sum by (peer, service)" in joined  # per edge: caller -> callee
    assert "sum by (peer, route)" in joined  # per route
    assert "histogram_quantile(0.99" in joined and "histogram_quantile(0.5" in joined
