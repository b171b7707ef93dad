"""A worker's startup objects are frozen once, so that full garbage collections walk only what records made."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
import apache_beam  # a worker's startup: hundreds of thousands of objects that live to the end
from transforms.worker_memory import freeze_startup_objects

before = len(gc.get_objects())
freeze_startup_objects()
frozen = gc.get_freeze_count()
records = [[float(i)] for i in range(1000)]  # what records make after startup stays collectable
freeze_startup_objects()  # a second DoFn's setup in the same process freezes nothing more
print(before, frozen, gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_startup_objects_are_frozen_once_and_later_objects_stay_collectable():
    # A fresh interpreter: freezing this test process's own objects would outlive the test.
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    before, frozen, frozen_again, tracked = (int(n) for n in run.stdout.split())
    assert before > 100_000 and frozen >= before
    assert frozen_again == frozen
    assert 1000 <= tracked < 5000, "only the records' lists are left for the collector"
