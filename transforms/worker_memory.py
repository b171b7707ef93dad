"""Python's garbage collector told, once per process, to leave alone what the process built before its records came.

A worker holds about half a million objects before its first record: TensorFlow, Beam, tfx-bsl and the
pipeline itself, all alive to the end. Python's full collection walks every one of them each time it runs,
and it runs whenever the objects made since the last one reach a quarter of the long-lived: three times per
100,000 toy records, half a second each, a third of the pipeline's time (benchmarks/README.md). gc.freeze()
moves them out of the collector's sight (they are still freed when no longer referenced); a full collection
then walks only what the records made.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Exempt every object alive now from later collections, unless this process already did (at startup)."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
