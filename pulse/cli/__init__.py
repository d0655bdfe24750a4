"""The `pulse` command line: one module per command, all registered on the group in `pulse.cli.base`.

Importing this package registers every command; `pulse = "pulse.cli:main"` is the installed entry point.
"""
from __future__ import annotations

from pulse.cli import (  # noqa: F401 - imported for their side effect: each registers its command on `main`
    archive,
    backfill,
    bench,
    demo,
    infra,
    kpi_exporter,
    migrate,
    query,
    replay,
    simulate,
    soak,
    watch,
    worker,
)
from pulse.cli.base import main
from pulse.dashboards.command import dashboards
from pulse.report.command import report
from pulse.vietqr_command import vietqr

for _group in (dashboards, vietqr, report):
    main.add_command(_group)

__all__ = ["main"]
