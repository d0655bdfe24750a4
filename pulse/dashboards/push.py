"""Push the dashboards to a Grafana through its HTTP API (a service-account token), into one folder.

grafana-client is an optional extra (`adoption-pulse[grafana]`) imported only here, when a push runs: it
brings urllib3-future, which takes urllib3's place for every HTTP client in the environment.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pulse.dashboards.build import build_all
from pulse.dashboards.model import JSON
from pulse.errors import PulseError, short_reason
from schemas.redact import redact_url

if TYPE_CHECKING:
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaException

DEFAULT_FOLDER = "Adoption pulse"
MISSING_EXTRA = ("`pulse dashboards push` needs grafana-client, which the default install leaves out: "
                 "pip install 'adoption-pulse[grafana]'")


class GrafanaPushError(PulseError, RuntimeError):
    """Grafana refused or could not be reached; `status` is the HTTP status (0 when there was no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Pushed:
    uid: str
    url: str
    version: int | None


def redact(url: str) -> str:
    """The Grafana base URL to show: no user, password, query or fragment (the shared redactor)."""
    return redact_url(url, mask=None, keep_query=False)


def _grafana_client() -> tuple[type[GrafanaApi], type[GrafanaException]]:
    try:
        from grafana_client import GrafanaApi
        from grafana_client.client import GrafanaException
    except ImportError:
        raise GrafanaPushError(0, MISSING_EXTRA) from None
    return GrafanaApi, GrafanaException


def _api(url: str, token: str, timeout_s: float) -> GrafanaApi:
    if not token:
        raise GrafanaPushError(401, "no Grafana token given (use --token or GRAFANA_TOKEN)")
    grafana_api, _ = _grafana_client()
    # grafana-client joins the path prefix and "api" without a separator: "/grafana" must become "/grafana/".
    return grafana_api.from_url(url.rstrip("/") + "/", credential=token, timeout=timeout_s)


def _error(exc: GrafanaException, url: str, what: str) -> GrafanaPushError:
    where = redact(url)
    status = int(exc.status_code or 0)
    if status == 401:
        message = (f"Grafana at {where} rejected the token (HTTP 401 Unauthorized) while {what}: "
                   "check that it is a valid, unexpired service-account token")
    elif status == 403:
        message = (f"Grafana at {where} refused {what} (HTTP 403 Forbidden): the token's service account "
                   "needs the Editor role (create folders and dashboards)")
    elif status == 0:
        message = f"cannot reach Grafana at {where} while {what}: {exc.message}"
    else:
        message = f"Grafana at {where} answered HTTP {status} while {what}: {exc.message}"
    return GrafanaPushError(status, message)


def _unreachable(exc: OSError, url: str, what: str) -> GrafanaPushError:
    """No answer at all (refused, no route, DNS, timeout): one line, without the HTTP library's retry story."""
    return GrafanaPushError(0, f"cannot reach Grafana at {redact(url)} while {what}: {short_reason(exc)}")


def _folder_uid(api: GrafanaApi, title: str) -> str:
    """The uid of the top-level folder with this title, created when missing."""
    for folder in api.folder.get_all_folders() or []:
        if folder.get("title") == title:
            return str(folder["uid"])
    return str(api.folder.create_folder(title)["uid"])


def push(
    url: str,
    token: str,
    folder: str = DEFAULT_FOLDER,
    overwrite: bool = True,
    *,
    timeout_s: float = 10.0,
) -> list[Pushed]:
    """Find or create the folder, then post every dashboard into it; GrafanaPushError on any refusal."""
    api = _api(url, token, timeout_s)
    _, grafana_exception = _grafana_client()
    try:
        folder_uid = _folder_uid(api, folder)
    except grafana_exception as exc:
        raise _error(exc, url, f"finding or creating folder {folder!r}") from None
    except OSError as exc:  # the HTTP library's connection errors are OSErrors
        raise _unreachable(exc, url, f"finding or creating folder {folder!r}") from None
    pushed = []
    for uid, board in build_all().items():
        # id None: Grafana matches on uid, so the same JSON works on any instance.
        payload: JSON = {"dashboard": {**board, "id": None}, "folderUid": folder_uid, "overwrite": overwrite,
                         "message": "pulse dashboards push"}
        try:
            answer = api.dashboard.update_dashboard(payload) or {}
        except grafana_exception as exc:
            if exc.status_code == 412 and not overwrite:
                raise GrafanaPushError(412, f"dashboard {uid} already exists in Grafana at {redact(url)} "
                                            "and overwriting was turned off") from None
            raise _error(exc, url, f"saving dashboard {uid}") from None
        except OSError as exc:
            raise _unreachable(exc, url, f"saving dashboard {uid}") from None
        pushed.append(Pushed(uid, str(answer.get("url", "")), answer.get("version")))
    return pushed
