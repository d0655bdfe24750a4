"""`pulse dashboards build` / `push`."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import click

from pulse.dashboards.build import default_out_dir, write_all
from pulse.dashboards.push import DEFAULT_FOLDER, GrafanaPushError, push, redact


@click.group("dashboards")
def dashboards() -> None:
    """Grafana dashboards as code: write the JSON, or push it to a Grafana."""


@dashboards.command("build")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for <uid>.json [default: deploy/grafana/dashboards in a checkout, "
                   "else ./grafana-dashboards].")
def build_command(out_dir: Path | None) -> None:
    """Write every dashboard's JSON."""
    for path in write_all(out_dir or default_out_dir()):
        click.echo(str(path))


@dashboards.command("push")
@click.option("--url", required=True, help="Grafana base URL, e.g. http://127.0.0.1:3000")
@click.option("--token", envvar="GRAFANA_TOKEN", required=True, show_envvar=True,
              help="Service-account token (Editor). Prefer the environment variable.")
@click.option("--folder", default=DEFAULT_FOLDER, show_default=True, help="Folder to put the dashboards in.")
@click.option("--overwrite/--no-overwrite", default=True, show_default=True,
              help="Replace dashboards that already exist with the same uid.")
def push_command(url: str, token: str, folder: str, overwrite: bool) -> None:
    """Push every dashboard to a Grafana (the token is never printed)."""
    try:
        pushed = push(url, token, folder=folder, overwrite=overwrite)
    except GrafanaPushError as exc:
        raise click.ClickException(str(exc)) from None
    # Grafana answers with a path that already includes any sub-path, so only scheme and host are prefixed.
    parts = urlsplit(redact(url))
    base = f"{parts.scheme}://{parts.netloc}"
    for item in pushed:
        click.echo(f"{item.uid}: {base}{item.url}" if item.url.startswith("/") else f"{item.uid}: {item.url}")
