"""`make pictures`: the README's pictures, made from data this command produces itself.

It simulates a month for the 34 provinces with the project's own simulator, stores it the way a backfill
does (`pulse replay --direct` into a throw-away chDB store), builds the report for one province and
takes a screenshot of it (docs/pictures/report.png). Then it adds one live-looking hour (the density of
`pulse demo`) and draws the `pulse watch` screen from the store's window rows with rich, exports it as
SVG and has Chromium turn it into docs/pictures/watch.png.

    python -m pulse.report.pictures docs/pictures [--province 24] [--keep DIR]
"""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import click

from pulse.settings import Settings

MONTH_FIRST, MONTH_LAST = date(2026, 10, 1), date(2026, 10, 31)
LOCAL = timezone(timedelta(hours=7))
EVENTS = 300_000
LIVE_HOUR_EVENTS = 24_000
# The live hour ends at 16:00 local time on the last working day (Friday 30 October): counters had been open
# all day. The month is a past one: events after the present are dead-lettered `future_time` by design.
WATCH_UNTIL = datetime(2026, 10, 30, 16, 0, tzinfo=LOCAL)
REPORT_SIZE = (1000, 1500)
MAX_PNG_BYTES = 500_000


def _pulse(*args: str, env: dict[str, str]) -> dict:
    """Runs a `pulse` command as a user would; returns its last line of output as JSON."""
    done = subprocess.run([sys.executable, "-m", "pulse.cli", *args], env={**os.environ, **env}, text=True,
                          capture_output=True, timeout=1200, check=False)
    if done.returncode != 0:
        raise click.ClickException(f"pulse {args[0]} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def simulate_and_store(work: Path, env: dict[str, str], name: str, start: datetime, seconds: float,
                       events: int, faults: str | None = None) -> dict[str, float]:
    """`events` simulated over `seconds` of event time from `start`, stored by a direct replay."""
    rate = 100.0
    started = time.monotonic()
    _pulse("simulate", "--seed", "7", "--events", str(events), "--rate", str(rate),
           "--speed", str(seconds * rate / events), "--start", start.isoformat(),
           *(("--faults", faults) if faults else ()), "--out", str(work / f"{name}.jsonl"), env=env)
    simulated = time.monotonic()
    _pulse("replay", "--from-file", str(work / f"{name}.jsonl"), "--direct", "--quiet", env=env)
    return {f"{name}_simulate_s": round(simulated - started, 1),
            f"{name}_replay_direct_s": round(time.monotonic() - simulated, 1)}


def simulate_month(work: Path, env: dict[str, str]) -> dict[str, float]:
    """A month of events (all streams, all provinces, a few faults for the data-quality section)."""
    start = datetime.combine(MONTH_FIRST, datetime.min.time(), LOCAL)
    return simulate_and_store(work, env, "month", start, ((MONTH_LAST - MONTH_FIRST).days + 1) * 86400, EVENTS,
                              faults="duplicate=0.002,too_late=0.001,malformed=0.001,unknown_province=0.0005")


def simulate_live_hour(work: Path, env: dict[str, str]) -> dict[str, float]:
    """The hour before the watch screen at the density `pulse demo` produces (400 events/s at 60× speed)."""
    return simulate_and_store(work, env, "live_hour", WATCH_UNTIL - timedelta(hours=1), 3600, LIVE_HOUR_EVENTS)


def shrink_png(png: Path) -> None:
    """256-colour palette: screenshots of flat charts and text lose nothing visible and shrink severalfold."""
    from PIL import Image

    with Image.open(png) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)
    if png.stat().st_size > MAX_PNG_BYTES:
        raise click.ClickException(f"{png} is {png.stat().st_size} bytes, over {MAX_PNG_BYTES}")


def report_picture(settings: Settings, province: str, work: Path, out: Path) -> dict[str, object]:
    from pulse.report.build import ReportRequest
    from pulse.report.chromium import screenshot
    from pulse.report.command import make_report

    result = make_report(settings, ReportRequest(MONTH_FIRST, MONTH_LAST, province), work / "report.html", None)
    screenshot(work / "report.html", out / "report.png", *REPORT_SIZE)
    shrink_png(out / "report.png")
    return result


def screen_moment(events: Path) -> datetime:
    """The minute after the last payment of a simulated file: the live view as it was then."""
    last = max(datetime.fromisoformat(event["event_time"]) for event in map(json.loads, events.open(encoding="utf-8"))
               if event.get("type") == "payment")
    return last.replace(second=0, microsecond=0) + timedelta(minutes=1)


def watch_rows(settings: Settings, until: datetime) -> list[dict]:
    """The window rows `pulse watch` would have received on `pulse.windows` that day up to `until`, oldest first."""
    from pulse.store import open_warehouse
    from sinks.windows import WINDOW_SPECS

    def utc(moment: datetime) -> str:
        return f"{moment.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}"

    rows = []
    warehouse = open_warehouse(settings, keep_open=False)
    try:
        with warehouse.lease() as client:
            for spec in WINDOW_SPECS.values():
                measures = list(spec.measures)
                result = client.query(
                    f"SELECT window_start, province_code, {', '.join(measures)} FROM {warehouse.database}.{spec.table}"
                    f" FINAL WHERE window_start >= '{utc(until.replace(hour=0, minute=0))}' "
                    f"AND window_start < '{utc(until)}' ORDER BY window_start").result_rows
                rows += [{"table": spec.table, "window_start": start.replace(tzinfo=timezone.utc).isoformat(),
                          "province_code": code, **dict(zip(measures, values))} for start, code, *values in result]
    finally:
        warehouse.close()
    return sorted(rows, key=lambda row: row["window_start"])


def watch_picture(settings: Settings, work: Path, out: Path, until: datetime) -> None:
    from rich.console import Console

    from pulse.report.chromium import screenshot
    from pulse.watch import WindowBoard

    rows = watch_rows(settings, until)
    if not rows:  # a picture of an empty screen would pass every other check
        raise click.ClickException(f"no window rows up to {until:%Y-%m-%d %H:%M %Z}: nothing to picture")
    board = WindowBoard()
    for row in rows:
        board.add(row)
    screen = board.render()
    # A terminal just wide enough for the table, so that no province name wraps and no blank margin is left.
    width = min(200, Console(width=200, file=io.StringIO()).measure(screen).maximum)
    console = Console(record=True, width=width, force_terminal=True, color_system="truecolor", file=io.StringIO())
    console.print(screen)
    svg = console.export_svg(title="pulse watch")
    # rich's SVG would fetch its font from a CDN; the system's monospace font draws the same characters.
    # JetBrains Mono (Debian's fonts-jetbrains-mono) draws every Vietnamese letter; Fira Code lacks some.
    svg = re.sub(r"@font-face\s*\{[^}]*\}", "", svg).replace("Fira Code", "JetBrains Mono")
    width, height = (float(v) for v in re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg).groups())
    page = work / "watch.html"
    page.write_text("<!doctype html><meta charset='utf-8'><style>html,body{margin:0;background:#fff}"
                    f"svg{{display:block;width:{width}px;height:{height}px}}</style>{svg}", encoding="utf-8")
    screenshot(page, out / "watch.png", int(width), int(height))
    shrink_png(out / "watch.png")


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path), default=Path("docs/pictures"))
@click.option("--province", default="24", show_default=True, help="The province whose report is pictured.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Work in this folder and keep it (the simulated month, the store, the report HTML).")
def main(out: Path, province: str, keep: Path | None) -> None:
    """Regenerates OUT/report.png and OUT/watch.png from a freshly simulated month."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pulse-pictures-") as scratch:
        work = keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        env = {"PULSE_STATE_DIR": str(work / "state"), "PULSE_CLICKHOUSE_URL": f"chdb://{work / 'store'}",
               "PULSE_PII_KEY": "pictures-only"}
        settings = Settings(state_dir=work / "state", clickhouse_url=env["PULSE_CLICKHOUSE_URL"])
        timings = simulate_month(work, env)
        report = report_picture(settings, province, work, out)
        timings.update(simulate_live_hour(work, env))  # after the report: the month stays a plain month
        watch_picture(settings, work, out, screen_moment(work / "live_hour.jsonl"))
    click.echo(json.dumps({**timings, "report_s": report["seconds"], "summary": report["summary"],
                           "pictures": [str(out / "report.png"), str(out / "watch.png")]}, ensure_ascii=False))


if __name__ == "__main__":
    main()
