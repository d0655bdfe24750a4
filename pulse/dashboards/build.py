"""Render the catalog to JSON files: one per dashboard, byte-for-byte reproducible so CI can diff them."""
from __future__ import annotations

import json
from pathlib import Path

from pulse.dashboards.catalog import DASHBOARDS
from pulse.dashboards.model import JSON
from pulse.settings import project_root


def default_out_dir() -> Path:
    """deploy/grafana/dashboards in a checkout (what compose provisions), else ./grafana-dashboards."""
    provisioned = project_root() / "deploy" / "grafana"
    return provisioned / "dashboards" if provisioned.is_dir() else Path.cwd() / "grafana-dashboards"


def build_all() -> dict[str, JSON]:
    """uid -> dashboard JSON, in catalog order."""
    built = {}
    for make in DASHBOARDS:
        board = make()
        if board["uid"] in built:
            raise ValueError(f"two dashboards share the uid {board['uid']!r}")
        built[board["uid"]] = board
    return built


def render(board: JSON) -> str:
    """Sorted keys, two-space indent, UTF-8 text kept readable (Vietnamese titles), trailing newline."""
    return json.dumps(board, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_all(out_dir: Path | None = None) -> list[Path]:
    """Write `<uid>.json` for every dashboard into out_dir (default deploy/grafana/dashboards)."""
    out_dir = out_dir or default_out_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for uid, board in build_all().items():
        path = out_dir / f"{uid}.json"
        path.write_text(render(board), encoding="utf-8")
        written.append(path)
    return written
