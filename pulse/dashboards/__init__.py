"""Grafana dashboards as code: catalog (what is shown), build (JSON files), push (Grafana HTTP API)."""
from __future__ import annotations

from pulse.dashboards.build import build_all, write_all

__all__ = ["build_all", "write_all"]
