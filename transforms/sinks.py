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


class WriteRows(beam.PTransform):
    """Pending records with all their predictions, as JSON Lines files under `prefix`."""

    def __init__(self, prefix: str):
        super().__init__()
        self._prefix = prefix

    def expand(self, pending: beam.PCollection):
        return (
            pending
            | "ToJson" >> beam.ParDo(_Counted(pending_json, _rows_written))
            | "Write" >> beam.io.WriteToText(self._prefix, file_name_suffix=".jsonl")
        )


class WritePredictionLogs(beam.PTransform):
    """PredictionLogs as TFRecord files under `prefix`, the TFX BulkInferrer convention."""

    def __init__(self, prefix: str):
        super().__init__()
        self._prefix = prefix

    def expand(self, logs: beam.PCollection):
        return (
            logs
            | "Serialize" >> beam.ParDo(_Counted(prediction_log_bytes, _rows_written))
            | "Write" >> beam.io.WriteToTFRecord(self._prefix, coder=coders.BytesCoder(), file_name_suffix=".tfrecord")
        )


class _DeadLetterJson:
    def __init__(self, pattern: str):
        self._pattern = pattern

    def __call__(self, letter: DeadLetter) -> str:
        return dead_letter_json(letter, self._pattern)


def _dead_letter_counters(letter: DeadLetter) -> tuple[str, ...]:
    return counters.DEAD_LETTERS, counters.dead_letter_counter_name(letter.stage)


class WriteDeadLetters(beam.PTransform):
    """Dead letters as JSON Lines files under `prefix`, counted by stage."""

    def __init__(self, prefix: str, pattern: str):
        super().__init__()
        self._prefix = prefix
        self._pattern = pattern

    def expand(self, dead_letters: beam.PCollection):
        return (
            dead_letters
            | "ToJson" >> beam.ParDo(_Counted(_DeadLetterJson(self._pattern), _dead_letter_counters))
            | "Write" >> beam.io.WriteToText(self._prefix, file_name_suffix=".jsonl")
        )
