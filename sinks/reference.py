"""Loads the KPI reference data (procedure catalogue, full-process offers, targets) into ClickHouse.

A table is rewritten only when its content differs from what was loaded last (sha256 of the rows), so
calling this on every migrate is cheap and idempotent."""
from __future__ import annotations

import hashlib

from clickhouse_connect.driver.client import Client

from schemas.catalogue import offered_full_process, procedures, targets


def _reference_rows() -> dict[str, tuple[list[str], list[list]]]:
    return {
        "procedure_catalogue": (
            ["procedure_code", "sector", "eligible_full_process", "fee_vnd", "deadline_working_days"],
            [[p.code, p.sector, p.eligible_full_process, p.fee_vnd, p.deadline_working_days] for p in procedures()],
        ),
        "procedure_offers": (
            ["province_code", "procedure_code"],
            [[code, procedure] for code, offered in sorted(offered_full_process().items())
             for procedure in sorted(offered)],
        ),
        "targets": (
            ["province_code", "kpi", "year", "target", "source"],
            [[t.province_code, t.kpi, t.year, t.target, t.source] for t in targets()],
        ),
    }


def load_reference_data(client: Client, database: str) -> list[str]:
    """Reload the reference tables whose content changed; returns their names."""
    loaded = dict(client.query(f"SELECT name, sha256 FROM {database}.reference_versions FINAL").result_rows)
    changed = []
    for table, (columns, rows) in _reference_rows().items():
        digest = hashlib.sha256(repr(rows).encode()).hexdigest()
        if loaded.get(table) == digest:
            continue
        client.command(f"TRUNCATE TABLE {database}.{table}")
        client.insert(f"{database}.{table}", rows, column_names=columns)
        client.insert(f"{database}.reference_versions", [[table, digest]], column_names=["name", "sha256"])
        changed.append(table)
    return changed
