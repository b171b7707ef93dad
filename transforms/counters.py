"""The pipeline's own Beam counters, shared by the steps that count and the summary that reads them."""

import apache_beam as beam

from transforms.progress import ProgressCounts

NAMESPACE = "inference"
RECORDS_READ = "records_read"
ROWS_WRITTEN = "rows_written"
DEAD_LETTERS = "dead_letters"
DEAD_LETTERS_UNWRITABLE = "dead_letters_unwritable"
INPUT_RANGES = "input_ranges"


def counter(name: str) -> beam.metrics.metric.Metrics.DelegatingCounter:
    return beam.metrics.Metrics.counter(NAMESPACE, name)


class Count:
    """One thing counted: as a Beam metric, and into a local run's live progress when it shows one."""

    def __init__(self, name: str, progress: ProgressCounts | None = None):
        self._name = name
        self._counter = counter(name)
        self._progress = progress

    def inc(self, count: int = 1) -> None:
        self._counter.inc(count)
        if self._progress is not None:
            self._progress.add(self._name, count)


def dead_letter_counter_name(stage: str) -> str:
    return f"{DEAD_LETTERS}.{stage}"
