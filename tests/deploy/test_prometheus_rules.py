"""The monitoring mixin: Prometheus config, recording rules, alerts, their unit tests, runbooks, Alertmanager.

Runs the real `promtool` and `amtool` (Debian packages `prometheus` and `prometheus-alertmanager`; CI
installs them). A missing tool is a failure, never a skip: these checks are the only thing standing
between a typo in an alert and a silent pager.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
RULES_DIR = PROM_DIR / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
RULE_TEST_FILES = sorted((PROM_DIR / "tests").glob("*.test.yml"))
ALERTMANAGER_TEMPLATE = ROOT / "deploy" / "alertmanager" / "alertmanager.yml.tmpl"
METRICS_DOC = ROOT / "docs" / "metrics.md"
RUNBOOKS = ROOT / "docs" / "runbooks.md"

RUNBOOK_BASE = "https://github.com/adoption-pulse/adoption-pulse/blob/main/docs/runbooks.md#"
SEVERITIES = {"critical", "warning", "info"}
WEBHOOK_URL = "http://127.0.0.1:5001/alerts"
PAGER_URL = "https://pager.example/alertmanager?key=a&b=1"
HEARTBEAT_URL = "https://heartbeat.example/ping/abc"
# Fire for ever by design: no quiet promtool case is possible.
ALWAYS_FIRING = {"PulseWatchdog"}
TOOL_TIMEOUT_S = 300


# --- helpers -------------------------------------------------------------------------------------

def _tool(name: str, env_var: str) -> str:
    path = os.environ.get(env_var) or shutil.which(name)
    if not path:
        pytest.fail(
            f"`{name}` not found on PATH (or ${env_var}). Install it: apt-get install "
            f"{'prometheus' if name == 'promtool' else 'prometheus-alertmanager'} "
            f"(CI does); these checks must not be skipped.",
            pytrace=False,
        )
    return path


def _run(args: list[str], cwd: Path = ROOT) -> str:
    try:
        result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"{' '.join(args)} did not finish in {TOOL_TIMEOUT_S} s:\n{error.stdout or ''}{error.stderr or ''}",
                    pytrace=False)
    output = f"$ {' '.join(args)}\n{result.stdout}{result.stderr}"
    assert result.returncode == 0, f"exit status {result.returncode}\n{output}"
    return output


def _load(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _groups() -> list[dict]:
    return [group for path in RULE_FILES for group in _load(path)["groups"]]


def _rules(kind: str) -> list[dict]:
    return [rule for group in _groups() for rule in group["rules"] if kind in rule]


def _alerts() -> list[dict]:
    return _rules("alert")


def _alert_names() -> list[str]:
    return sorted({rule["alert"] for rule in _alerts()})


def _documented_metrics() -> dict[str, str]:
    """metric name -> type, from the table in docs/metrics.md."""
    metrics = {}
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\|\s*`((?:pulse|alertmanager)_[a-z0-9_]+)`\s*\|\s*([a-z]+)", line)
        if match:
            metrics[match.group(1)] = match.group(2)
    return metrics


def _github_anchors(markdown: str) -> set[str]:
    anchors = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        match = None if in_code else re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
        if match:
            text = re.sub(r"[`*_\[\]()]", "", match.group(1)).strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


_PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "inf", "nan",
    # aggregation operators: `sum by (x) (...)` puts the clause between the name and its parenthesis
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "limitk", "limit_ratio",
}


def _selected_series(expr: str) -> set[str]:
    """Metric (or recorded series) names an expression selects; functions, keywords and labels removed."""
    text = re.sub(r"#[^\n]*", "", expr)                       # comments
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', text)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)                     # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", text)  # label lists
    text = re.sub(r"\[[^\]]*\]", "", text)                    # ranges / subqueries
    names = set()
    for match in re.finditer(r"(?<![\w:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", text):
        name, is_call = match.group(1), match.group(2)
        if is_call or name.lower() in _PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def _alert_unit_tests() -> dict[str, dict[str, int]]:
    """alertname -> {'fire': n, 'no_fire': n} over all promtool test files."""
    seen: dict[str, dict[str, int]] = {}
    for path in RULE_TEST_FILES:
        for group in _load(path).get("tests") or []:
            for case in group.get("alert_rule_test") or []:
                counts = seen.setdefault(case["alertname"], {"fire": 0, "no_fire": 0})
                counts["fire" if case.get("exp_alerts") else "no_fire"] += 1
    return seen


# --- the real tools ------------------------------------------------------------------------------

def test_promtool_check_config() -> None:
    output = _run([_tool("promtool", "PROMTOOL"), "check", "config", str(PROM_CONFIG)])
    assert "SUCCESS" in output, output


def test_promtool_check_rules() -> None:
    assert RULE_FILES, f"no rule files in {RULES_DIR}"
    output = _run([_tool("promtool", "PROMTOOL"), "check", "rules", *map(str, RULE_FILES)])
    assert "FAILED" not in output, output


def test_promtool_unit_tests() -> None:
    assert RULE_TEST_FILES, "no promtool unit tests (deploy/prometheus/tests/*.test.yml)"
    output = _run([_tool("promtool", "PROMTOOL"), "test", "rules", *map(str, RULE_TEST_FILES)])
    assert "FAILED" not in output, output


def _render(output: Path, webhook: str, critical: str = "", heartbeat: str = "") -> subprocess.CompletedProcess:
    """deploy/alertmanager/render.sh, as compose and `pulse infra up` run it."""
    env = {"PATH": os.environ["PATH"], "PULSE_ALERT_WEBHOOK_URL": webhook, "PULSE_ALERT_CRITICAL_WEBHOOK_URL": critical,
           "PULSE_ALERT_HEARTBEAT_URL": heartbeat}
    return subprocess.run(["sh", str(ALERTMANAGER_TEMPLATE.parent / "render.sh"), str(ALERTMANAGER_TEMPLATE),
                           str(output)], env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False)


@pytest.fixture
def alertmanager_config(tmp_path: Path) -> Path:
    """The template rendered with a pager and a heartbeat URL of their own."""
    output = tmp_path / "alertmanager.yml"
    result = _render(output, WEBHOOK_URL, PAGER_URL, HEARTBEAT_URL)
    assert result.returncode == 0, result.stderr
    return output


@pytest.mark.parametrize("heartbeat", [HEARTBEAT_URL, ""], ids=["with-heartbeat", "without-heartbeat"])
def test_amtool_check_config(tmp_path: Path, heartbeat: str) -> None:
    config = tmp_path / "alertmanager.yml"
    rendered = _render(config, WEBHOOK_URL, heartbeat=heartbeat)
    assert rendered.returncode == 0, rendered.stderr
    output = _run([_tool("amtool", "AMTOOL"), "check-config", str(config)])
    assert "SUCCESS" in output, output
    receivers = {r["name"]: r for r in _load(config)["receivers"]}
    hooks = [w["url"] for w in receivers["pulse-heartbeat"].get("webhook_configs") or []]
    assert hooks == ([heartbeat] if heartbeat else []), "without a heartbeat URL the receiver delivers nowhere"
    assert receivers["pulse-critical"]["webhook_configs"][0]["url"] == WEBHOOK_URL, "the pager defaults to the webhook"


@pytest.mark.parametrize(("webhook", "heartbeat", "message"), [
    ("", "", "PULSE_ALERT_WEBHOOK_URL is not set"),
    ("127.0.0.1:5001/alerts", "", "PULSE_ALERT_WEBHOOK_URL must start with http:// or https://"),
    ("http://chat.example/a b", "", "must not contain quotes, spaces or tabs"),
    (WEBHOOK_URL, "ftp://heartbeat.example", "PULSE_ALERT_HEARTBEAT_URL must start with http:// or https://"),
])
def test_render_refuses_bad_receivers(tmp_path: Path, webhook: str, heartbeat: str, message: str) -> None:
    output = tmp_path / "alertmanager.yml"
    result = _render(output, webhook, heartbeat=heartbeat)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not output.exists() and not list(tmp_path.iterdir()), "a refused render leaves no file behind"


# --- Prometheus config ---------------------------------------------------------------------------

def test_prometheus_config_targets() -> None:
    config = _load(PROM_CONFIG)
    jobs = {job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
            for job in config["scrape_configs"]}
    assert jobs.get("pulse-worker") == ["127.0.0.1:6066"]
    assert jobs.get("pulse-simulator") == ["127.0.0.1:6067"]
    # the alerting path scrapes itself (PulseAlertNotificationsFailing reads Alertmanager's counters)
    assert jobs.get("prometheus") == ["127.0.0.1:9090"]
    assert jobs.get("alertmanager") == ["127.0.0.1:9093"]
    assert config["rule_files"] == ["rules/*.yml"]
    am_targets = [t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    assert am_targets == ["127.0.0.1:9093"]


# --- rules ---------------------------------------------------------------------------------------

def test_recording_rule_names_follow_level_metric_operations() -> None:
    records = [rule["record"] for rule in _rules("record")]
    assert records, "no recording rules"
    assert len(records) == len(set(records)), "a recording rule name is defined twice"
    bad = [name for name in records if not re.fullmatch(r"[a-z_]+:pulse_[a-z0-9_]+:[a-z0-9_]+", name)]
    assert not bad, f"not level:pulse_metric:operations: {bad}"


def test_rules_only_use_documented_metrics() -> None:
    documented = _documented_metrics()
    assert len(documented) > 20, f"could not read the metric table of {METRICS_DOC}"
    recorded = {rule["record"] for rule in _rules("record")}
    problems = []
    for rule in _rules("record") + _alerts():
        name = rule.get("record") or rule.get("alert")
        for series in sorted(_selected_series(str(rule["expr"]))):
            if series == "up" or series in recorded or series in documented:
                continue
            base, _, suffix = series.rpartition("_")
            if suffix in {"bucket", "sum", "count"} and documented.get(base) == "histogram":
                continue
            problems.append(f"{name}: {series}")
    assert not problems, ("rules select series that are neither in docs/metrics.md nor recording rules "
                          f"defined here: {problems}")


def test_selected_series_parser() -> None:
    expr = ('sum by (stream, reason) (rate(pulse_events_deadlettered_total{stream="payments"}[5m] offset 1w))\n'
            '/ on (stream) group_left stream:pulse_events_consumed:rate5m > bool 0.5 # pulse_not_a_metric\n'
            'and histogram_quantile(0.95, rate(pulse_event_freshness_seconds_bucket[5m])) or absent(up{job="x"})')
    assert _selected_series(expr) == {
        "pulse_events_deadlettered_total", "stream:pulse_events_consumed:rate5m",
        "pulse_event_freshness_seconds_bucket", "up",
    }


def test_alerts_have_names_labels_and_annotations() -> None:
    alerts = _alerts()
    assert alerts, "no alerts"
    problems = []
    for rule in alerts:
        name = rule["alert"]
        if not re.fullmatch(r"Pulse[A-Z][A-Za-z0-9]*", name):
            problems.append(f"{name}: not a CamelCase name starting with Pulse")
        severity = (rule.get("labels") or {}).get("severity")
        if severity not in SEVERITIES:
            problems.append(f"{name}: severity {severity!r} not in {sorted(SEVERITIES)}")
        if "for" not in rule:
            problems.append(f"{name}: no `for:` (every alert must ride out a short blip)")
        annotations = rule.get("annotations") or {}
        for key in ("summary", "description", "runbook_url"):
            if not str(annotations.get(key, "")).strip():
                problems.append(f"{name}: missing annotation {key}")
        description = str(annotations.get("description", ""))
        if "{{" not in description or not re.search(r"\$labels|\$value", description):
            problems.append(f"{name}: description does not template $labels or $value")
        if annotations.get("runbook_url") != RUNBOOK_BASE + name.lower():
            problems.append(f"{name}: runbook_url {annotations.get('runbook_url')!r} != {RUNBOOK_BASE + name.lower()!r}")
    assert not problems, "\n".join(problems)


def test_same_name_alerts_differ_in_severity() -> None:
    seen: dict[str, list[str]] = {}
    for rule in _alerts():
        seen.setdefault(rule["alert"], []).append(rule["labels"]["severity"])
    repeated = {name: sev for name, sev in seen.items() if len(sev) != len(set(sev))}
    assert not repeated, f"alerts defined twice with the same severity: {repeated}"


def test_required_alerts_exist() -> None:
    required = {
        "PulseWorkerDown", "PulseWorkerAbsent", "PulseConsumerLagHigh", "PulseConsumerStalled",
        "PulseDeadLetterRatioHigh", "PulseDeadLetterBurst", "PulseSinkFailing", "PulseSinkBufferNearLimit",
        "PulseFreshnessSLOBreached", "PulseLateDossierShareHigh", "PulseCashlessVolumeDrop",
        "PulseVNeIDActivationsStalled",
    }
    assert required <= set(_alert_names()), f"missing: {sorted(required - set(_alert_names()))}"
    exprs = {rule["alert"]: " ".join(str(rule["expr"]).split()) for rule in _alerts()}
    assert exprs["PulseWorkerDown"] == 'up{job="pulse-worker"} == 0'
    assert exprs["PulseWorkerAbsent"] == 'absent(up{job="pulse-worker"})'
    assert "offset 1w" in exprs["PulseCashlessVolumeDrop"]


def test_dead_letter_burst_is_the_fast_e2e_alert() -> None:
    """The end-to-end test waits for this exact alert; keep it fast and named as is."""
    [burst] = [rule for rule in _alerts() if rule["alert"] == "PulseDeadLetterBurst"]
    assert burst["labels"]["severity"] == "warning"
    assert burst["for"] == "15s"
    assert " ".join(str(burst["expr"]).split()) == "stream:pulse_events_deadlettered:ratio1m > 0.5"
    [ratio] = [rule for rule in _rules("record") if rule["record"] == "stream:pulse_events_deadlettered:ratio1m"]
    assert "rate1m" in ratio["expr"]
    [group] = [g for g in _groups() if burst in g["rules"]]
    assert "interval" not in group, "the burst alert must run at the global (fast) evaluation interval"


def test_every_alert_has_firing_and_quiet_unit_tests() -> None:
    tested = _alert_unit_tests()
    problems = [f"{name}: {tested.get(name, {'fire': 0, 'no_fire': 0})}" for name in _alert_names()
                if not tested.get(name, {}).get("fire")
                or (name not in ALWAYS_FIRING and not tested.get(name, {}).get("no_fire"))]
    assert not problems, f"alerts without both a firing and a non-firing promtool case: {problems}"
    unknown = sorted(set(tested) - set(_alert_names()))
    assert not unknown, f"unit tests for alerts that do not exist: {unknown}"


def test_unit_tests_evaluate_recording_rules_first() -> None:
    """promtool evaluates groups missing from group_eval_order first, which would let alerts read stale
    recorded values; so each test file lists every group of its rule files, recording groups first."""
    problems = []
    for path in RULE_TEST_FILES:
        spec = _load(path)
        groups = [g["name"] for rule_file in spec["rule_files"] for g in _load(path.parent / rule_file)["groups"]]
        order = spec.get("group_eval_order") or []
        if sorted(order) != sorted(groups):
            problems.append(f"{path.name}: group_eval_order {order} != groups {groups}")
            continue
        kinds = ["alert" if any("alert" in r for r in g["rules"]) else "record"
                 for name in order for rule_file in spec["rule_files"]
                 for g in _load(path.parent / rule_file)["groups"] if g["name"] == name]
        first_alert = kinds.index("alert") if "alert" in kinds else len(kinds)
        if "record" in kinds[first_alert:]:
            problems.append(f"{path.name}: a recording group comes after an alert group in group_eval_order")
        for group in spec.get("tests") or []:
            if "interval" not in group:
                problems.append(f"{path.name}: test {group.get('name')!r} has no `interval:`")
    assert not problems, "\n".join(problems)


# --- runbooks ------------------------------------------------------------------------------------

def test_every_alert_has_a_runbook_section() -> None:
    markdown = RUNBOOKS.read_text(encoding="utf-8")
    anchors = _github_anchors(markdown)
    missing = [name for name in _alert_names() if name.lower() not in anchors]
    assert not missing, f"docs/runbooks.md has no section for: {missing} (anchors found: {sorted(anchors)})"
    for name in _alert_names():
        assert re.search(rf"^## {name}\s*$", markdown, re.MULTILINE), f"expected a `## {name}` heading"


def test_runbook_internal_links_resolve() -> None:
    markdown = RUNBOOKS.read_text(encoding="utf-8")
    anchors = _github_anchors(markdown)
    broken = sorted({link for link in re.findall(r"\]\(#([^)]+)\)", markdown) if link not in anchors})
    assert not broken, f"links to missing sections: {broken}"


# --- Alertmanager --------------------------------------------------------------------------------

def test_alertmanager_routes_and_inhibitions(alertmanager_config: Path) -> None:
    config = _load(alertmanager_config)
    receivers = {r["name"]: [w["url"] for w in r.get("webhook_configs") or []] for r in config["receivers"]}
    route = config["route"]
    assert receivers[route["receiver"]] == [WEBHOOK_URL], "the default receiver posts to PULSE_ALERT_WEBHOOK_URL"
    assert route["group_wait"] == "1s"
    children = route.get("routes", [])
    # the watchdog goes to the heartbeat receiver alone (first route, no `continue`)
    assert children[0]["matchers"] == ['alertname="PulseWatchdog"'] and not children[0].get("continue")
    assert children[0]["receiver"] == "pulse-heartbeat" and receivers["pulse-heartbeat"] == [HEARTBEAT_URL]
    routed = {m: child["receiver"] for child in children for m in child.get("matchers", [])}
    used = {rule["labels"]["severity"] for rule in _alerts()}
    for severity in used:
        assert f'severity="{severity}"' in routed, f"no route for severity {severity}"
    assert receivers[routed['severity="critical"']] == [PAGER_URL], "critical alerts page"
    for matcher in ('severity="warning"', 'severity="info"'):
        assert receivers[routed[matcher]] == [WEBHOOK_URL], f"{matcher} goes to the chat webhook"
    [failing] = [c for c in children if c.get("matchers") == ['alertname="PulseAlertNotificationsFailing"']]
    assert failing["receiver"] == "pulse-critical" and failing.get("continue") is True, \
        "failed notifications go to the pager and on to the chat"
    inhibit = [rule for rule in config.get("inhibit_rules", [])
               if rule.get("source_matchers") == ['severity="critical"']
               and rule.get("target_matchers") == ['severity="warning"']]
    assert inhibit and {"alertname", "topic", "province", "instance"} <= set(inhibit[0].get("equal", [])), \
        "critical inhibits warning only for the same alert on the same topic / province / instance"
    names = set(_alert_names())
    for rule in config.get("inhibit_rules", []):
        for matcher in rule.get("source_matchers", []) + rule.get("target_matchers", []):
            match = re.fullmatch(r'alertname=~?"(.*)"', matcher)
            if match:
                unknown = set(match.group(1).split("|")) - names
                assert not unknown, f"inhibit rule names unknown alerts: {unknown}"
        assert "PulseWatchdog" not in str(rule.get("target_matchers")), "nothing may silence the watchdog"
