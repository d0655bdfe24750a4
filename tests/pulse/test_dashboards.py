"""Dashboards as code: the committed JSON is current, every panel's query runs against real data, every
Prometheus metric exists, and push talks to the Grafana API as expected."""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from pulse.dashboards.build import build_all, default_out_dir, render, write_all
from pulse.dashboards.command import dashboards
from pulse.dashboards.macros import UnknownVariable, expand
from pulse.dashboards.model import CLICKHOUSE, PROMETHEUS, declared_columns
from pulse.dashboards.push import GrafanaPushError, push
from pulse.settings import project_root
from schemas.provinces import provinces
from sinks.client import Warehouse
from tests.pulse.conftest import SampleStore

BOARDS = build_all()
UIDS = ["pulse-overview", "pulse-cashless", "pulse-public-services", "pulse-identity", "pulse-pipeline", "pulse-kpis"]
CODES = list(provinces())
REGIONS = sorted({unit.region for unit in provinces().values()})
WINDOW_TABLES = ("payments_1m", "dossiers_1m", "id_activations_1m")
RAW_TABLES = ("payments", "dossier_events", "id_activations", "dead_letters")


def _panels(datasource_type: str) -> list[tuple[str, dict[str, Any]]]:
    return [(uid, panel) for uid, board in BOARDS.items() for panel in board["panels"]
            if panel["datasource"]["type"] == datasource_type]


CH_PANELS = _panels(CLICKHOUSE["type"])
PROM_PANELS = _panels(PROMETHEUS["type"])
# (province codes, regions, Grafana interval in seconds): everything, and one province (Cà Mau).
SELECTIONS = {"all-provinces": (CODES, REGIONS, 30), "one-province": (["96"], ["Mekong Delta"], 300)}


# ---------------------------------------------------------------------------------------------- (a) JSON


def test_the_six_dashboards_are_built() -> None:
    assert list(BOARDS) == UIDS
    for board in BOARDS.values():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids))
        assert all(panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24 for panel in board["panels"])
    for uid in [uid for uid in UIDS if uid != "pulse-pipeline"]:
        assert [v["name"] for v in BOARDS[uid]["templating"]["list"]] == ["region", "province"]


def test_committed_json_is_what_build_generates() -> None:
    out = default_out_dir()
    hint = "run `pulse dashboards build` and commit deploy/grafana/dashboards/"
    for uid, board in BOARDS.items():
        path = out / f"{uid}.json"
        assert path.is_file(), f"{path} is missing: {hint}"
        assert path.read_text(encoding="utf-8") == render(board), f"{path} is out of date: {hint}"
    stale = {path.stem for path in out.glob("pulse-*.json")} - set(BOARDS)
    assert not stale, f"dashboards no longer built: {sorted(stale)}: delete them and {hint}"


def test_build_is_deterministic(tmp_path: Path) -> None:
    first = [path.read_bytes() for path in write_all(tmp_path / "a")]
    second = [path.read_bytes() for path in write_all(tmp_path / "b")]
    assert first == second
    assert all(content.endswith(b"}\n") for content in first)
    assert json.loads(first[0])["uid"] == "pulse-overview"


def test_build_command_writes_every_dashboard(tmp_path: Path) -> None:
    result = CliRunner().invoke(dashboards, ["build", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(path.stem for path in tmp_path.glob("*.json")) == sorted(UIDS)


# ---------------------------------------------------------------------------------------------- (b) SQL


def test_macro_expansion() -> None:
    sql = ("SELECT $__timeInterval(t) WHERE $__timeFilter(t) AND x IN (${province:singlequote}) "
           "AND y = $region AND z > $__fromTime AND z < $__toTime LIMIT $__interval_s")
    out = expand(sql, time_from=100, time_to=200, interval_s=60, variables={"province": ["01", "96"], "region": ["R"]})
    assert out == ("SELECT toStartOfInterval(toDateTime(t), INTERVAL 60 second) "
                   "WHERE t >= toDateTime(100) AND t <= toDateTime(200) AND x IN ('01','96') "
                   "AND y = R AND z > toDateTime(100) AND z < toDateTime(200) LIMIT 60")
    with pytest.raises(UnknownVariable):
        expand("SELECT $nope", time_from=0, time_to=1, interval_s=1, variables={})


def _all_sql() -> list[str]:
    sql = [target["rawSql"] for _, panel in CH_PANELS for target in panel["targets"]]
    return sql + [v["query"] for board in BOARDS.values() for v in board["templating"]["list"]]


def test_tables_are_read_with_final() -> None:
    # Window rows are rewritten as late events arrive and raw events can be redelivered: without FINAL a
    # panel would count a window or an event more than once.
    pattern = re.compile(r"\bpulse\.(\w+)\b(\s+FINAL\b)?")
    for sql in _all_sql():
        unfinal = [m[1] for m in pattern.finditer(sql) if m[1] in WINDOW_TABLES + RAW_TABLES and not m[2]]
        assert not unfinal, f"{unfinal} read without FINAL in:\n{sql}"


@pytest.fixture(scope="module")
def client(sample_store: SampleStore) -> Iterator[Any]:
    warehouse = Warehouse(sample_store.url)
    try:
        with warehouse.lease() as leased:
            yield leased
    finally:
        warehouse.close()  # one chDB store per process: let the next module open its own


def _run(client: Any, store: SampleStore, sql: str, selection: str) -> Any:
    codes, regions, interval_s = SELECTIONS[selection]
    expanded = expand(sql, time_from=store.start, time_to=store.end, interval_s=interval_s,
                      variables={"province": codes, "region": regions})
    assert "$" not in expanded, f"unexpanded macro or variable in:\n{expanded}"
    return client.query(expanded)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _numeric_columns(panel: dict[str, Any]) -> list[str]:
    """Declared columns with a unit are numbers."""
    return [override["matcher"]["options"] for override in panel["fieldConfig"]["overrides"]
            if any(prop["id"] == "unit" for prop in override["properties"])]


def _check_stat(result: Any) -> None:
    assert len(result.column_names) == 1 and len(result.result_rows) == 1, result.result_rows
    assert _is_number(result.result_rows[0][0]), f"not a number: {result.result_rows[0][0]!r}"


def _check_timeseries(panel: dict[str, Any], result: Any) -> None:
    assert result.column_names[0] == "time"
    assert list(result.column_names[1:]) == declared_columns(panel)
    times = [row[0] for row in result.result_rows]
    assert all(isinstance(t, datetime) for t in times) and times == sorted(times)
    for index in range(1, len(result.column_names)):
        values = [row[index] for row in result.result_rows]
        assert all(v is None or _is_number(v) for v in values), result.column_names[index]
        assert any(_is_number(v) for v in values), f"{result.column_names[index]} has no value"


def _check_table(panel: dict[str, Any], result: Any) -> None:
    assert list(result.column_names) == declared_columns(panel)
    for name in _numeric_columns(panel):
        index = result.column_names.index(name)
        values = [row[index] for row in result.result_rows]
        assert all(v is None or _is_number(v) for v in values), name
        assert any(_is_number(v) for v in values), f"{name} has no value"


@pytest.mark.parametrize("selection", list(SELECTIONS))
@pytest.mark.parametrize(("uid", "panel"), CH_PANELS, ids=[f"{uid}#{p['id']}" for uid, p in CH_PANELS])
def test_clickhouse_panel_returns_the_declared_shape(
    client: Any, sample_store: SampleStore, uid: str, panel: dict[str, Any], selection: str
) -> None:
    (target,) = panel["targets"]
    assert target["datasource"] == CLICKHOUSE
    result = _run(client, sample_store, target["rawSql"], selection)
    assert result.result_rows, f"{uid} / {panel['title']}: no rows for {selection}"
    if panel["type"] == "stat":
        _check_stat(result)
    elif panel["type"] == "timeseries":
        assert target["format"] == 0
        _check_timeseries(panel, result)
    else:
        assert target["format"] == 1
        _check_table(panel, result)


def test_province_tables_follow_the_province_variable(client: Any, sample_store: SampleStore) -> None:
    tables = [p for _, p in CH_PANELS if p["type"] == "table" and declared_columns(p)[:1] == ["code"]]
    assert len(tables) == 4
    for panel in tables:
        for selection, expected in (("all-provinces", CODES), ("one-province", ["96"])):
            result = _run(client, sample_store, panel["targets"][0]["rawSql"], selection)
            assert [row[0] for row in result.result_rows] == expected


def test_variables_list_regions_and_provinces(client: Any, sample_store: SampleStore) -> None:
    variables = {v["name"]: v for v in BOARDS["pulse-overview"]["templating"]["list"]}
    assert all(v["multi"] and v["includeAll"] and v["datasource"] == CLICKHOUSE for v in variables.values())
    regions = _run(client, sample_store, variables["region"]["query"], "all-provinces")
    assert [row[0] for row in regions.result_rows] == REGIONS
    everything = _run(client, sample_store, variables["province"]["query"], "all-provinces")
    assert [row[0] for row in everything.result_rows] == CODES
    mekong = _run(client, sample_store, variables["province"]["query"], "one-province")
    assert {row[0] for row in mekong.result_rows} == {c for c, u in provinces().items() if u.region == "Mekong Delta"}
    assert ("96", "96 Cà Mau") in mekong.result_rows


def test_activations_per_minute_by_level_add_up_to_all_activations(client: Any, sample_store: SampleStore) -> None:
    """Level 1 + level 2 per minute equals all activations per minute, bucket by bucket: a rate scale applied
    to only part of `sum(a) - sum(b)` (missing parentheses) breaks this at any interval above one minute."""
    [panel] = [p for p in BOARDS["pulse-identity"]["panels"] if p["title"].endswith("/ Activations per minute")]
    codes, _, interval_s = SELECTIONS["one-province"]
    assert interval_s > 60, "the check needs buckets of several minutes"
    shown = _run(client, sample_store, panel["targets"][0]["rawSql"], "one-province")
    assert list(shown.column_names) == ["time", "level1", "level2"]
    direct = client.query(
        f"SELECT toStartOfInterval(window_start, INTERVAL {interval_s} SECOND) AS time, "
        f"sum(activations) * 60 / {interval_s} FROM pulse.id_activations_1m FINAL "
        f"WHERE province_code IN ({', '.join(repr(c) for c in codes)}) "
        f"AND window_start >= %(start)s AND window_start <= %(end)s GROUP BY time ORDER BY time",
        parameters={"start": sample_store.start, "end": sample_store.end})
    expected = {row[0].replace(tzinfo=None): float(row[1]) for row in direct.result_rows}
    got = {row[0].replace(tzinfo=None): float(row[1] or 0) + float(row[2] or 0) for row in shown.result_rows}
    assert len(expected) >= 10 and any(expected.values()), expected
    assert got == pytest.approx(expected), "level 1 + level 2 per minute differs from all activations per minute"


# ---------------------------------------------------------------------------------------------- (c) PromQL

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "inf", "nan"}


def documented_metrics() -> set[str]:
    names = set()
    text = (project_root() / "docs" / "metrics.md").read_text(encoding="utf-8")
    for name, kind in re.findall(r"^\|\s*`(pulse_\w+)`\s*\|\s*(\w+)", text, flags=re.MULTILINE):
        names.add(name)
        if kind == "histogram":
            names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return names


def recording_rules() -> set[str]:
    names = set()
    for path in sorted((project_root() / "deploy" / "prometheus" / "rules").glob("*.yml")):
        for group in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("groups") or []:
            names.update(rule["record"] for rule in group.get("rules") or [] if "record" in rule)
    return names


def metric_names(expr: str) -> set[str]:
    """Series names in a PromQL expression: identifiers outside strings, selectors, ranges and groupings
    that are not function calls or keywords."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    found = re.findall(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", expr)
    return {name for name in found if name.lower() not in _KEYWORDS}


def test_metric_name_parser() -> None:
    assert metric_names('sum by (stream) (rate(pulse_a_total{stream="x"}[$__rate_interval]))') == {"pulse_a_total"}
    assert metric_names("histogram_quantile(0.95, sum by (le) (rate(h_bucket[5m])))") == {"h_bucket"}
    assert metric_names("time() - max(a:b:c)") == {"a:b:c"}


@pytest.mark.parametrize(("uid", "panel"), PROM_PANELS, ids=[f"{uid}#{p['id']}" for uid, p in PROM_PANELS])
def test_prometheus_panels_use_known_metrics(uid: str, panel: dict[str, Any]) -> None:
    known = documented_metrics() | recording_rules()
    for target in panel["targets"]:
        assert target["datasource"] == PROMETHEUS
        names = metric_names(target["expr"])
        assert names, f"no metric in {target['expr']!r}"
        unknown = names - known
        assert not unknown, f"{uid} / {panel['title']}: {sorted(unknown)} not in docs/metrics.md or recording rules"


# ---------------------------------------------------------------------------------------------- (d) push

TOKEN = "glsa_test-token-do-not-print"


class FakeGrafana:
    """The few Grafana API endpoints push uses, recording each request."""

    def __init__(self, *, status: int = 200, folders: list[dict[str, Any]] | None = None) -> None:
        self.status, self.folders = status, list(folders or [])
        self.requests: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if self.status != 200:
            return self.status, {"message": "invalid API key" if self.status == 401 else "permission denied"}
        if (method, path) == ("GET", "/api/folders"):
            return 200, self.folders
        if (method, path) == ("POST", "/api/folders"):
            folder = {"id": 7, "uid": "new-folder-uid", "title": body["title"]}
            self.folders.append(folder)
            return 200, folder
        if (method, path) == ("POST", "/api/dashboards/db"):
            uid = body["dashboard"]["uid"]
            return 200, {"id": 1, "uid": uid, "url": f"/d/{uid}/slug", "status": "success", "version": 1}
        return 404, {"message": "not found"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                path = self.path.split("?", 1)[0]
                fake.requests.append({"method": self.command, "path": path, "headers": dict(self.headers),
                                      "body": body})
                status, payload = fake.answer(self.command, path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve  # http.server's naming

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

        return Handler

    def __enter__(self) -> FakeGrafana:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def calls(self, method: str, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if (r["method"], r["path"]) == (method, path)]


def test_push_creates_the_folder_and_posts_every_dashboard() -> None:
    with FakeGrafana() as grafana:
        pushed = push(grafana.url, TOKEN)
    assert [item.uid for item in pushed] == UIDS
    assert all(r["headers"].get("Authorization") == f"Bearer {TOKEN}" for r in grafana.requests)
    (created,) = grafana.calls("POST", "/api/folders")
    assert created["body"]["title"] == "Adoption pulse"
    posts = grafana.calls("POST", "/api/dashboards/db")
    assert [p["body"]["dashboard"]["uid"] for p in posts] == UIDS
    for post in posts:
        assert post["body"]["overwrite"] is True
        assert post["body"]["folderUid"] == "new-folder-uid"
        assert post["body"]["dashboard"]["id"] is None
        assert post["body"]["dashboard"]["panels"] == BOARDS[post["body"]["dashboard"]["uid"]]["panels"]


def test_push_reuses_an_existing_folder_and_honours_no_overwrite() -> None:
    folders = [{"id": 3, "uid": "other", "title": "Other"}, {"id": 4, "uid": "existing", "title": "IOC"}]
    with FakeGrafana(folders=folders) as grafana:
        push(grafana.url + "/", TOKEN, folder="IOC", overwrite=False)
    assert not grafana.calls("POST", "/api/folders")
    posts = grafana.calls("POST", "/api/dashboards/db")
    assert len(posts) == 6
    assert all(p["body"]["folderUid"] == "existing" and p["body"]["overwrite"] is False for p in posts)


@pytest.mark.parametrize(("status", "hint"), [(401, "rejected the token"), (403, "Editor role")])
def test_push_refused_raises_a_clear_error(status: int, hint: str) -> None:
    with FakeGrafana(status=status) as grafana, pytest.raises(GrafanaPushError) as caught:
        push(grafana.url, TOKEN)
    assert caught.value.status == status
    assert f"HTTP {status}" in str(caught.value) and hint in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert not grafana.calls("POST", "/api/dashboards/db")


def test_push_command_never_prints_the_token() -> None:
    runner = CliRunner()
    with FakeGrafana() as grafana:
        ok = runner.invoke(dashboards, ["push", "--url", grafana.url], env={"GRAFANA_TOKEN": TOKEN})
    assert ok.exit_code == 0, ok.output
    assert f"pulse-overview: {grafana.url}/d/pulse-overview/slug" in ok.output
    with FakeGrafana(status=401) as grafana:
        refused = runner.invoke(dashboards, ["push", "--url", grafana.url, "--token", TOKEN])
    assert refused.exit_code == 1
    assert "HTTP 401" in refused.output
    assert TOKEN not in ok.output + refused.output
