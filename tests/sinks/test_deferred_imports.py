"""pandas and pyarrow stay out of a process that only stores rows (the worker), and stay usable by one
that asks for them: sinks/deferred_imports.py."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# In a fresh interpreter (a test process has long imported both): the worker's path, then a DataFrame
# insert and DataFrame and Arrow reads once pandas and pyarrow are imported.
PROBE = textwrap.dedent("""
    import json, sys, tempfile
    from datetime import datetime, timezone
    from sinks.client import Warehouse
    from sinks.schema import migrate
    out = {}
    with tempfile.TemporaryDirectory() as path:
        warehouse = Warehouse(f"chdb://{path}/store", keep_open=True)
        with warehouse.lease() as client:
            migrate(client, "pulse", batched=True)
            client.command("CREATE TABLE pulse.t (n UInt64, at DateTime64(3, 'UTC'), s String) "
                           "ENGINE = MergeTree ORDER BY n")
            now = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
            client.insert("pulse.t", [[1, now, "a"], [2, now, "b"]], column_names=["n", "at", "s"])
            client.insert("pulse.t", [[4, 5], [now, now], ["c", "d"]], column_names=["n", "at", "s"],
                          column_oriented=True)
            out["stored"] = client.query("SELECT sum(n), count() FROM pulse.t").result_rows[0]
            out["loaded_while_storing"] = sorted(m for m in ("pandas", "pyarrow") if m in sys.modules)
            import pandas, pyarrow
            client.insert_df("pulse.t", pandas.DataFrame({"n": [10], "at": [now], "s": ["df"]}))
            client.insert("pulse.t", pandas.DataFrame({"n": [20], "at": [now], "s": ["df2"]}))
            out["df_sum"] = int(client.query_df("SELECT sum(n) AS total FROM pulse.t")["total"][0])
            out["arrow_rows"] = client.query_arrow("SELECT n FROM pulse.t").num_rows
            from chdb.state import sqlitelike
            out["chdb_arrow_is_pyarrow"] = sqlitelike.pa.RecordBatchReader is pyarrow.RecordBatchReader
        warehouse.close()
    print(json.dumps(out))
""")


def test_rows_are_stored_without_pandas_or_pyarrow_and_both_work_when_asked_for() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["stored"] == [1 + 2 + 4 + 5, 4]  # the column-oriented insert held rows 4 and 5
    assert found["loaded_while_storing"] == []
    assert found["df_sum"] == 1 + 2 + 4 + 5 + 10 + 20
    assert found["arrow_rows"] == 6
    assert found["chdb_arrow_is_pyarrow"] is True
