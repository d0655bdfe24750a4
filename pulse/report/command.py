"""`pulse report`: the click command; the work is in `build`, `render` and `chromium`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pulse.settings import Settings, get_settings

if TYPE_CHECKING:
    from pulse.report.build import ReportRequest

# matplotlib, jinja2 and the store are imported when a report is made, not on every `pulse` start.


def make_report(settings: Settings, request: ReportRequest, out: Path,
                pdf: Path | None) -> dict[str, object]:
    """Reads the store (no DDL, no writes), writes the HTML and, if asked, the PDF; returns what it did."""
    from pulse.report.build import build
    from pulse.report.chromium import print_pdf
    from pulse.report.render import render_html
    from pulse.store import open_warehouse

    started = time.monotonic()
    warehouse = open_warehouse(settings, keep_open=False)
    try:
        with warehouse.lease() as client:
            page = build(client, warehouse.database, request)
    finally:
        warehouse.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(page), encoding="utf-8")
    if pdf is not None:
        pdf.parent.mkdir(parents=True, exist_ok=True)
        print_pdf(out, pdf)
    return {"html": str(out), "pdf": str(pdf) if pdf else None, "summary": page.summary,
            "seconds": round(time.monotonic() - started, 2)}


@click.command(name="report")
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), required=True,
              help="First local day (Asia/Ho_Chi_Minh), YYYY-MM-DD, included.")
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), required=True,
              help="Last local day, YYYY-MM-DD, included.")
@click.option("--province", default=None, help="Province code (current or legacy); default: all 34.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="HTML file to write.")
@click.option("--pdf", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also print it to this PDF (needs Debian's chromium).")
@click.pass_context
def report(ctx: click.Context, first, last, province: str | None, out: Path, pdf: Path | None) -> None:
    """The adoption report as one self-contained HTML page (charts inline, nothing fetched), optionally a PDF."""
    from pulse.report.build import ReportError, ReportRequest
    from pulse.report.chromium import ChromiumMissing
    from sinks.client import StoreBusy

    settings = ctx.obj if isinstance(ctx.obj, Settings) else get_settings()
    request = ReportRequest(first.date(), last.date(), province)
    try:
        result = make_report(settings, request, out, pdf)
    except (ReportError, StoreBusy, ChromiumMissing) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{result['summary']}\nwrote {result['html']}" + (f" and {result['pdf']}" if pdf else "")
               + f" in {result['seconds']} s")

