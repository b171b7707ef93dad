"""Writing results: JSON Lines rows, TFRecords of PredictionLogs, and dead letters, each counted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import apache_beam as beam
from apache_beam import coders

from transforms import counters
from transforms.dead_letters import DeadLetter, dead_letter_json
from transforms.inference import Pending
from transforms.rows import prediction_row, row_json


class _Counted(beam.DoFn):
    """Formats each element for its sink and counts it under the given counter names."""

    def __init__(self, format_fn: Callable[[Any], Any], counter_names: Callable[[Any], tuple[str, ...]]):
        self._format = format_fn
        self._counter_names = counter_names
        self._counters = {}

    def process(self, element: Any):
        for name in self._counter_names(element):
            if name not in self._counters:
                self._counters[name] = counters.counter(name)
            self._counters[name].inc()
        yield self._format(element)


def _rows_written(_: Any) -> tuple[str, ...]:
    return (counters.ROWS_WRITTEN,)


def pending_json(pending: Pending) -> str:
    return row_json(prediction_row(pending.record, pending.predictions))


def prediction_log_bytes(element: tuple[Pending, Any]) -> bytes:
    return element[1].SerializeToString()


class _FormatCountWrite(beam.PTransform):
    """Format each element for its sink, count it, write it."""

    def __init__(self, format_fn: Callable[[Any], Any], counter_names, write: beam.PTransform):
        super().__init__()
        self._counted = _Counted(format_fn, counter_names)
        self._write = write

    def expand(self, elements: beam.PCollection):
        return elements | "Format" >> beam.ParDo(self._counted) | "Write" >> self._write


def write_rows(prefix: str) -> beam.PTransform:
    """Pending records with all their predictions, as JSON Lines files under `prefix`."""
    return _FormatCountWrite(pending_json, _rows_written, beam.io.WriteToText(prefix, file_name_suffix=".jsonl"))


def write_prediction_logs(prefix: str) -> beam.PTransform:
    """PredictionLogs as TFRecord files under `prefix`, the TFX BulkInferrer convention."""
    write = beam.io.WriteToTFRecord(prefix, coder=coders.BytesCoder(), file_name_suffix=".tfrecord")
    return _FormatCountWrite(prediction_log_bytes, _rows_written, write)


class _DeadLetterJson:
    def __init__(self, pattern: str):
        self._pattern = pattern

    def __call__(self, letter: DeadLetter) -> str:
        return dead_letter_json(letter, self._pattern)


def _dead_letter_counters(letter: DeadLetter) -> tuple[str, ...]:
    return counters.DEAD_LETTERS, counters.dead_letter_counter_name(letter.stage)


def write_dead_letters(prefix: str, pattern: str) -> beam.PTransform:
    """Dead letters as JSON Lines files under `prefix`, counted by stage."""
    write = beam.io.WriteToText(prefix, file_name_suffix=".jsonl")
    return _FormatCountWrite(_DeadLetterJson(pattern), _dead_letter_counters, write)
