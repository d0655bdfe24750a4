"""pulse/gc_tuning.py: what exists when the worker has started is frozen, young collections are rarer."""
from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_start_up_pauses_collections_then_tuning_freezes_the_heap_and_raises_the_first_threshold() -> None:
    # In a child: freezing and thresholds are process-wide and would change every later test's collections.
    probe = (
        "import gc\n"
        "kept = [[n] for n in range(5000)]\n"
        "from pulse.gc_tuning import YOUNG_THRESHOLD, pause_for_start_up, tune_for_streaming\n"
        "older = gc.get_threshold()[1:]\n"
        "pause_for_start_up()\n"
        "assert not gc.isenabled()\n"
        "frozen = tune_for_streaming()\n"
        "assert gc.isenabled()\n"
        "assert frozen == gc.get_freeze_count() >= 5000, frozen\n"
        "assert not any(kept[0] is o for o in gc.get_objects()), 'frozen objects are in no generation'\n"
        "assert gc.get_threshold() == (YOUNG_THRESHOLD, *older), gc.get_threshold()\n"
        "print('ok', frozen)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr
    assert gc.get_freeze_count() == 0  # this process untouched
