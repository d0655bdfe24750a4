"""The Alertmanager configuration: deploy/alertmanager/alertmanager.yml.tmpl rendered by
deploy/alertmanager/render.sh, the script the compose Alertmanager container runs too (Alertmanager
itself does not read environment variables), so `pulse infra up` and the tests run what compose runs."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pulse.errors import PulseError
from pulse.settings import Settings, project_root

RENDER_TIMEOUT_S = 30


class AlertmanagerConfigError(PulseError, RuntimeError):
    """The receivers' settings were refused (the message names the setting, never its value)."""


def alertmanager_dir() -> Path:
    return project_root() / "deploy" / "alertmanager"


def render_alertmanager_config(output: Path, webhook_url: str, critical_webhook_url: str = "",
                               heartbeat_url: str = "") -> Path:
    """Write the Alertmanager configuration with these receiver URLs to `output` and return it."""
    source = alertmanager_dir()
    env = {**os.environ, "PULSE_ALERT_WEBHOOK_URL": webhook_url,
           "PULSE_ALERT_CRITICAL_WEBHOOK_URL": critical_webhook_url, "PULSE_ALERT_HEARTBEAT_URL": heartbeat_url}
    output.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["sh", str(source / "render.sh"), str(source / "alertmanager.yml.tmpl"), str(output)],
                            env=env, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise AlertmanagerConfigError(result.stderr.strip() or f"render.sh exited with {result.returncode}")
    return output


def render_from_settings(settings: Settings, output: Path) -> Path:
    return render_alertmanager_config(output, settings.alert_webhook_url, settings.alert_critical_webhook_url,
                                      settings.alert_heartbeat_url)
