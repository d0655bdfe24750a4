"""What the window tables must hold for the events a run sent: the oracle `pulse bench` and `pulse soak` compare
the stored totals with. Computed from the events as generated, independently of the worker's code."""
from __future__ import annotations

from collections import Counter


def add_to_window_truth(event: dict, totals: dict[str, Counter]) -> None:
    """Add one generated event to the expected totals per window table (`payments_1m`, `dossiers_1m`,
    `id_activations_1m`), in the measures the tables' totals query reads."""
    kind = event["type"]
    if kind == "payment":
        ok = event["status"] == "success"
        totals["payments_1m"].update({"tx": 1, "ok": ok, "amount": event["amount_vnd"] if ok else 0})
    elif kind == "dossier":
        submitted = event["stage"] == "submitted"
        totals["dossiers_1m"].update({"online": submitted and event["channel"] == "online",
                                      "offline": submitted and event["channel"] == "offline",
                                      "completed": event["stage"] == "returned"})
    else:  # windows count activated accounts only, not registrations or approvals
        activated = event.get("step", "activated") == "activated"
        totals["id_activations_1m"].update({"activations": activated, "level2": activated and event["level"] == 2})
