"""Real Prometheus, Alertmanager and an Alertmanager webhook receiver for end-to-end alert tests.

Everything here is started on 127.0.0.1 with ports and storage of its own, and stopped with bounded
waits (terminate, wait, kill). A missing binary or a taken port is a test failure, never a skip.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from pulse.alertmanager_config import render_alertmanager_config

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
RULES_DIR = PROM_DIR / "rules"
WORKER_JOB = "pulse-worker"
PROMETHEUS_JOB = "prometheus"
ALERTMANAGER_JOB = "alertmanager"

STOP_WAIT_S = 10.0
LOG_TAIL_CHARS = 3000


def require_binary(name: str, env_var: str, package: str) -> str:
    """Path of a binary ($env_var, else PATH), or a clear failure naming the Debian package."""
    path = os.environ.get(env_var) or shutil.which(name)
    if not path:
        pytest.fail(f"`{name}` not found on PATH (or ${env_var}). Install it: apt-get install {package}. "
                    "The end-to-end alert test must not be skipped.", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.5,
               describe: Callable[[], str] | None = None) -> Any:
    """Poll until `predicate()` is truthy and return its value; fail after `timeout_s`.

    `describe` adds context to the failure (log tails, the last API answer)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{describe()}" if describe else ""
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}{extra}")
        time.sleep(poll_s)


def http_json(url: str, timeout_s: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # 127.0.0.1 only
        return json.loads(response.read())


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


# --- processes -----------------------------------------------------------------------------------

class ManagedProcess:
    """A subprocess with its output in a log file; `stop()` is bounded and safe to call twice."""

    def __init__(self, name: str, args: list[str], log_path: Path, cwd: Path = ROOT) -> None:
        self.name = name
        self.args = args
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        try:
            self.process = subprocess.Popen(args, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        except OSError:
            self._log.close()
            raise

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, wait_s: float = STOP_WAIT_S) -> int | None:
        try:
            return terminate(self.process, wait_s)
        finally:
            self._log.close()

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"({self.name} log unreadable: {error})"
        return f"--- {self.name} log ({self.log_path}), last {chars} chars ---\n{text[-chars:]}"

    def check_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"{self.name} exited with status {self.process.returncode}\n{self.log_tail()}")


def terminate(process: subprocess.Popen, wait_s: float = STOP_WAIT_S) -> int | None:
    """SIGTERM, wait up to `wait_s`, then SIGKILL and wait again (bounded). Returns the exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            process.kill()
    try:
        return process.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        return None


def prometheus_config(worker_target: str, alertmanager_target: str, interval: str = "1s",
                      source: Path = PROM_CONFIG) -> dict:
    """deploy/prometheus/prometheus.yml adapted to one test: the worker job (at `worker_target`) and the
    alerting path's own jobs (Alertmanager at `alertmanager_target`; Prometheus itself, whose address
    `Prometheus` fills in), alerts to `alertmanager_target`, absolute rule file paths and short intervals."""
    with source.open(encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    targets = {WORKER_JOB: worker_target, ALERTMANAGER_JOB: alertmanager_target, PROMETHEUS_JOB: None}
    jobs = {job.get("job_name"): job for job in config.get("scrape_configs", []) if job.get("job_name") in targets}
    missing = sorted(set(targets) - set(jobs))
    assert not missing, f"{source} has no scrape job {missing} (the alert rules select on them)"
    for name, job in jobs.items():
        job["static_configs"] = [{"targets": [targets[name]]}] if targets[name] else job["static_configs"]
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
    config["scrape_configs"] = list(jobs.values())
    config["global"] = {**config.get("global", {}), "scrape_interval": interval, "scrape_timeout": interval,
                        "evaluation_interval": interval}
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_target]}]}]}
    rule_files = sorted(str(path.resolve()) for path in RULES_DIR.glob("*.yml"))
    assert rule_files, f"no rule files in {RULES_DIR}"
    config["rule_files"] = rule_files
    return config


class Prometheus(ManagedProcess):
    def __init__(self, config: dict, workdir: Path) -> None:
        binary = require_binary("prometheus", "PROMETHEUS", "prometheus")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "prometheus.yml"
        for job in config.get("scrape_configs", []):
            if job.get("job_name") == PROMETHEUS_JOB:  # scrapes itself, wherever this test put it
                job["static_configs"] = [{"targets": [f"127.0.0.1:{self.port}"]}]
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        super().__init__("prometheus", [
            binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=info",
        ], workdir / "prometheus.log")

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        answer = http_json(f"{self.url}/api/v1/{path}{query}")
        assert answer.get("status") == "success", f"Prometheus {path}: {answer}"
        return answer["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def wait_ready(self, timeout_s: float = 30) -> None:
        def ready() -> bool:
            self.check_alive()
            return http_ok(f"{self.url}/-/ready")
        wait_until(ready, timeout_s, f"Prometheus ready at {self.url}", describe=self.log_tail)

    def targets(self, job: str) -> list[dict]:
        return [t for t in self.api("targets", state="active")["activeTargets"] if t["labels"].get("job") == job]

    def alerts(self, name: str) -> list[dict]:
        """Active (pending or firing) alerts with this alertname."""
        return [a for a in self.api("alerts")["alerts"] if a["labels"].get("alertname") == name]

    def alert_rules(self, name: str) -> list[dict]:
        return [rule for group in self.api("rules", type="alert")["groups"] for rule in group["rules"]
                if rule["name"] == name]


class Alertmanager(ManagedProcess):
    """deploy/alertmanager/alertmanager.yml.tmpl rendered by deploy/alertmanager/render.sh (as in compose)
    with the receivers at `webhook_url` / `heartbeat_url`."""

    def __init__(self, workdir: Path, webhook_url: str, heartbeat_url: str = "") -> None:
        binary = require_binary("prometheus-alertmanager", "ALERTMANAGER", "prometheus-alertmanager")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = render_alertmanager_config(workdir / "alertmanager.yml", webhook_url, heartbeat_url=heartbeat_url)
        self.config_path = config
        super().__init__("alertmanager", [
            binary, f"--config.file={config}", f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
        ], workdir / "alertmanager.log")

    def wait_ready(self, timeout_s: float = 30) -> None:
        def ready() -> bool:
            self.check_alive()
            return http_ok(f"{self.url}/-/ready")
        wait_until(ready, timeout_s, f"Alertmanager ready at {self.url}", describe=self.log_tail)

    def alerts(self) -> list[dict]:
        return http_json(f"{self.url}/api/v2/alerts")

    def post_alerts(self, alerts: list[dict]) -> None:
        """Push alerts as Prometheus would (API v2)."""
        request = urllib.request.Request(f"{self.url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:  # 127.0.0.1 only
            assert response.status == 200, response.status


# --- webhook receiver ----------------------------------------------------------------------------

class WebhookReceiver:
    """Collects the JSON bodies Alertmanager POSTs to http://127.0.0.1:<port><path> for each of `paths`
    (port 0: a free one, chosen by the kernel)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, paths: tuple[str, ...] = ("/alerts",)) -> None:
        self.host, self.paths = host, paths
        self.payloads: list[dict] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload = json.loads(body)
                except ValueError as error:
                    receiver._record_error(f"{self.path}: not JSON ({error}): {body[:200]!r}")
                    self.send_response(400)
                else:
                    if self.path in receiver.paths:
                        receiver._record({**payload, "_path": self.path})
                        self.send_response(200)
                    else:
                        receiver._record_error(f"POST to unexpected path {self.path}")
                        self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True  # TIME_WAIT leftovers only; a live listener still fails

        try:
            self._server = Server((host, port), Handler)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            pytest.fail(f"cannot start the Alertmanager webhook receiver: {host}:{port} is already in use",
                        pytrace=False)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"webhook-{self.port}", daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        assert path in self.paths, path
        return f"http://{self.host}:{self.port}{path}"

    def _record(self, payload: dict) -> None:
        with self._lock:
            self.payloads.append(payload)

    def _record_error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    def received(self) -> list[dict]:
        with self._lock:
            return list(self.payloads)

    def alerts(self) -> list[dict]:
        """Every alert of every payload, each with the payload's `receiver`, `status` and URL path added."""
        return [{**alert, "payload_status": payload.get("status"), "receiver": payload.get("receiver"),
                 "path": payload["_path"]}
                for payload in self.received() for alert in payload.get("alerts", [])]

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=wait_s)
