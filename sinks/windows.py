"""Window tables: what each measures, and how a window row is recomputed from its raw table.

A window row is always the full aggregate of the deduplicated raw rows of its minute and province,
never an increment, so recomputing a window any number of times, from any worker, converges on the
same row. `version` is the number of raw events covered: rows only ever grow, so the highest
version is the most complete one, and ReplacingMergeTree keeps it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class WindowSpec:
    table: str
    source: str
    measures: dict[str, str]

    @property
    def columns(self) -> list[str]:
        return ["window_start", "province_code", *self.measures, "version"]

    def recompute_sql(self, database: str) -> str:
        measures = ",\n    ".join(f"{expression} AS {name}" for name, expression in self.measures.items())
        return f"""
SELECT
    toDateTime(toStartOfMinute(event_time), 'UTC') AS window_start,
    province_code,
    {measures},
    count() AS version
FROM {database}.{self.source} FINAL
WHERE event_time >= {{lo:DateTime64(3, 'UTC')}} AND event_time < {{hi:DateTime64(3, 'UTC')}}
  AND toStartOfMinute(event_time) IN {{starts:Array(DateTime('UTC'))}}
GROUP BY window_start, province_code
ORDER BY window_start, province_code"""


WINDOW_SPECS: dict[str, WindowSpec] = {
    spec.source: spec
    for spec in (
        WindowSpec(
            table="payments_1m",
            source="payments",
            measures={
                "tx_count": "count()",
                "success_count": "countIf(status = 'success')",
                "amount_vnd": "sumIf(amount_vnd, status = 'success')",
            },
        ),
        WindowSpec(
            table="dossiers_1m",
            source="dossier_events",
            measures={
                "submitted_online": "countIf(stage = 'submitted' AND channel = 'online')",
                "submitted_offline": "countIf(stage = 'submitted' AND channel = 'offline')",
                "submitted_full_process_online": "countIf(stage = 'submitted' AND channel = 'online' AND full_process)",
                "completed": "countIf(stage = 'returned')",
                "completed_on_time": "countIf(stage = 'returned' AND event_time <= due_time)",
                "paid_online": "countIf(stage = 'returned' AND paid_online)",
                "vneid_authenticated": "countIf(stage = 'submitted' AND channel = 'online' AND vneid_authenticated)",
            },
        ),
        WindowSpec(
            table="id_activations_1m",
            source="id_activations",
            # Registrations and approvals are steps on the way; an account counts once it is activated.
            measures={"activations": "countIf(step = 'activated')",
                      "level2_activations": "countIf(step = 'activated' AND level = 2)"},
        ),
    )
}


def window_bounds(minute_starts: set[int]) -> dict[str, object]:
    """Query parameters for recomputing the windows that start at these Unix minutes."""
    starts = sorted(minute_starts)
    return {
        "lo": datetime.fromtimestamp(starts[0], timezone.utc),
        "hi": datetime.fromtimestamp(starts[-1] + 60, timezone.utc),
        "starts": [datetime.fromtimestamp(start, timezone.utc) for start in starts],
    }
