"""The pipeline's own Beam counters, shared by the steps that count and the summary that reads them."""

import apache_beam as beam

NAMESPACE = "inference"
RECORDS_READ = "records_read"
ROWS_WRITTEN = "rows_written"
DEAD_LETTERS = "dead_letters"
DEAD_LETTERS_UNWRITABLE = "dead_letters_unwritable"
INPUT_RANGES = "input_ranges"


def counter(name: str) -> beam.metrics.metric.Metrics.DelegatingCounter:
    return beam.metrics.Metrics.counter(NAMESPACE, name)


def dead_letter_counter_name(stage: str) -> str:
    return f"{DEAD_LETTERS}.{stage}"
