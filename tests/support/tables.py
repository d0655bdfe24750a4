"""Reading the ClickHouse window tables back for comparison with the truth."""
from __future__ import annotations

from collections import Counter
from datetime import timezone

from sinks.client import Warehouse
from sinks.windows import WINDOW_SPECS
from tests.support.truth import Truth


def stored_windows(chdb_url: str) -> dict[str, dict]:
    warehouse = Warehouse(chdb_url, keep_open=False)
    try:
        with warehouse.lease() as client:
            tables = {}
            for spec in WINDOW_SPECS.values():
                measures = list(spec.measures)
                rows = client.query(
                    f"SELECT window_start, province_code, {', '.join(measures)} FROM pulse.{spec.table} FINAL"
                ).result_rows
                tables[spec.table] = {
                    (start.replace(tzinfo=timezone.utc), code): Counter(dict(zip(measures, values)))
                    for start, code, *values in rows
                }
            return tables
    finally:
        warehouse.close()


def dead_letter_reasons(chdb_url: str) -> Counter:
    warehouse = Warehouse(chdb_url, keep_open=False)
    try:
        with warehouse.lease() as client:
            rows = client.query("SELECT reason, count() FROM pulse.dead_letters FINAL GROUP BY reason").result_rows
            return Counter(dict(rows))
    finally:
        warehouse.close()


def assert_windows_equal(truth: Truth, stored: dict[str, dict]) -> None:
    """Row by row: same keys, same measures (zero measures compared as absent)."""
    for table, expected in truth.windows.items():
        actual = stored[table]
        missing = sorted(set(expected) - set(actual))[:5]
        extra = sorted(set(actual) - set(expected))[:5]
        assert not missing and not extra, f"{table}: missing windows {missing}, unexpected windows {extra}"
        wrong = [(key, dict(expected[key]), dict(actual[key])) for key in sorted(expected)
                 if +expected[key] != +actual[key]]
        assert not wrong, f"{table}: {len(wrong)} windows differ, e.g. {wrong[:3]}"
    for table in stored.keys() - truth.windows.keys():
        assert not stored[table], f"{table} has rows but the input had no such events"
