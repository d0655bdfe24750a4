"""`pulse watch`: a live terminal view of adoption per province, fed by the `pulse.windows` topic."""
from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from functools import cache

import orjson
from kafka import KafkaConsumer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pulse.kafka_security import kafka_options
from pulse.settings import Settings
from schemas.catalogue import targets
from schemas.provinces import provinces

SPARK = "▁▂▃▄▅▆▇█"
HISTORY = 12  # windows shown in the sparkline
# "Today" is the local day in Vietnam (Asia/Ho_Chi_Minh, UTC+7 all year), as in kpi_daily and the dashboards.
ICT = timezone(timedelta(hours=7))
# One-stop counters (bộ phận một cửa) as most provinces open them: Monday to Friday, 07:30-11:30 and 13:00-17:00.
COUNTER_HOURS = ((7.5, 11.5), (13.0, 17.0))
COUNTER_DAYS = range(5)


def local_day_start(moment: datetime) -> datetime:
    """The UTC instant of 00:00 ICT on the local day containing `moment` (an aware datetime)."""
    local = moment.astimezone(ICT)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(timezone.utc)


def counters_open(moment: datetime) -> bool:
    local = moment.astimezone(ICT)
    hour = local.hour + local.minute / 60
    return local.weekday() in COUNTER_DAYS and any(start <= hour < end for start, end in COUNTER_HOURS)


@cache
def online_targets(year: int) -> dict[str, float]:
    """Province -> online dossier rate target for the year (schemas/data/targets.csv)."""
    return {t.province_code: t.target for t in targets() if t.kpi == "online_dossier_rate" and t.year == year}


def _attainment(part: int, whole: int, target: float | None) -> str:
    return f"{100 * part / whole / target:4.0f}%" if whole and target else "   –"


def sparkline(values: list[int]) -> str:
    top = max(values, default=0)
    return "".join(SPARK[min(len(SPARK) - 1, v * len(SPARK) // (top + 1))] for v in values) if top else ""


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:5.1f}%" if whole else "    –"


class WindowBoard:
    """Latest row per (table, window, province); rows are full recomputations, so the last one wins."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[tuple[datetime, str], dict]] = defaultdict(dict)
        self.updates = 0

    def add(self, row: dict) -> None:
        start = datetime.fromisoformat(row["window_start"])
        self.rows[row["table"]][(start, row["province_code"])] = row
        self.updates += 1

    def windows(self) -> list[datetime]:
        return sorted({start for table in self.rows.values() for start, _ in table})

    def total(self, table: str, province: str, measure: str, since: datetime | None = None) -> int:
        return sum(r[measure] for (start, code), r in self.rows[table].items()
                   if code == province and (since is None or start >= since))

    def render(self) -> Group:
        windows = self.windows()
        current = windows[-1] if windows else None
        day = local_day_start(current) if current else None
        goals = online_targets(current.astimezone(ICT).year) if current else {}
        table = Table(title=f"Adoption pulse — window {current.astimezone(ICT):%Y-%m-%d %H:%M} ICT (UTC+7); "
                            f"'today' = since 00:00 ICT" if current
                      else "Adoption pulse — waiting for window rows on pulse.windows", expand=False)
        for header in ("Province", "QR tx (now)", "QR ok", "QR value today (M VND)", "trend",
                       "Online dossiers today", "of target", "On time today", "VNeID activated today"):
            table.add_column(header, justify="right" if header != "Province" else "left")
        for code, unit in provinces().items():
            tx_now = self.total("payments_1m", code, "tx_count", current) if current else 0
            ok_now = self.total("payments_1m", code, "success_count", current) if current else 0
            online = self.total("dossiers_1m", code, "submitted_online", day)
            offline = self.total("dossiers_1m", code, "submitted_offline", day)
            done = self.total("dossiers_1m", code, "completed", day)
            on_time = self.total("dossiers_1m", code, "completed_on_time", day)
            trend = [self.rows["payments_1m"].get((w, code), {}).get("tx_count", 0) for w in windows[-HISTORY:]]
            table.add_row(
                f"{code} {unit.name}", str(tx_now), _pct(ok_now, tx_now),
                f"{self.total('payments_1m', code, 'amount_vnd', day) / 1e6:,.1f}", sparkline(trend),
                _pct(online, online + offline), _attainment(online, online + offline, goals.get(code)),
                _pct(on_time, done), str(self.total("id_activations_1m", code, "activations", day)),
            )
        return Group(table, *self._notes(current),
                     Text(f"{self.updates} window updates received · Ctrl-C to stop", style="dim"))

    @staticmethod
    def _notes(current: datetime | None) -> list[Text]:
        """Why a column can look odd at this hour, so nobody reads it as a KPI."""
        notes = [Text("'of target': online dossier rate today ÷ the province's target for the year "
                      "(schemas/data/targets.csv); '–' where nothing was submitted yet.", style="dim")]
        if current is not None and not counters_open(current):
            notes.append(Text(
                f"Counters (bộ phận một cửa) are closed at {current.astimezone(ICT):%a %H:%M} ICT (open Mon–Fri "
                "07:30–11:30, 13:00–17:00): dossiers arriving now are online ones, so 'Online dossiers today' "
                "climbs towards 100% until they open; 'On time' and 'VNeID activated' stay low while "
                "offices are closed (results and approvals are done in office hours).", style="yellow"))
        return notes


def consume_into(board: WindowBoard, consumer: KafkaConsumer, budget_s: float) -> None:
    batches = consumer.poll(timeout_ms=int(budget_s * 1000), max_records=5000)
    for records in batches.values():
        for record in records:
            board.add(orjson.loads(record.value))


def open_consumer(settings: Settings) -> KafkaConsumer:
    # No group: every viewer reads the compacted window topic from the start, independently.
    return KafkaConsumer(settings.topics.windows, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                         auto_offset_reset="earliest", enable_auto_commit=False, **kafka_options(settings))


def watch(settings: Settings, duration_s: float | None = None, refresh_s: float = 1.0) -> WindowBoard:
    board = WindowBoard()
    consumer = open_consumer(settings)
    deadline = time.monotonic() + duration_s if duration_s else None
    try:
        with Live(board.render(), refresh_per_second=2, screen=False) as live:
            while deadline is None or time.monotonic() < deadline:
                consume_into(board, consumer, refresh_s)
                live.update(board.render())
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return board
