"""The pipeline's own Beam counters, shared by the steps that count and the summary that reads them."""

from collections import defaultdict
from collections.abc import Mapping

import apache_beam as beam

from transforms.progress import ProgressCounts

NAMESPACE = "inference"
RECORDS_READ = "records_read"
ROWS_WRITTEN = "rows_written"
PREDICTIONS_WRITTEN = "predictions_written"
DEAD_LETTERS = "dead_letters"
DEAD_LETTERS_UNWRITABLE = "dead_letters_unwritable"
INPUT_RANGES = "input_ranges"
UNVERSIONED = "unversioned"


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


def predictions_written_counter_name(model: str, version: str | None) -> str:
    """`predictions_written.<version>.<model>`: one model version's predictions in the results the sinks were handed.

    The version (a number, or `unversioned` for a plain SavedModel directory) comes first: a model's name may hold
    dots, a version cannot.
    """
    return f"{PREDICTIONS_WRITTEN}.{version or UNVERSIONED}.{model}"


def predictions_written(counts: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """Model -> version -> predictions written, read back from counts by name (Beam's, or a live run's totals)."""
    written = defaultdict(dict)
    for name, count in counts.items():
        prefix, _, rest = name.partition(".")
        if prefix == PREDICTIONS_WRITTEN:
            version, _, model = rest.partition(".")
            written[model][version] = count
    return dict(written)
