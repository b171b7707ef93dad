"""Writing results and dead letters: encoded and counted once, then to files and/or a Pub/Sub topic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam import coders
from apache_beam.io.gcp.pubsub import PubsubMessage

from transforms import counters
from transforms.config import InferenceConfig
from transforms.dead_letters import DeadLetter, dead_letter_json
from transforms.inference import Pending
from transforms.rows import prediction_row, row_json


class Encoded(NamedTuple):
    """One output record as bytes, with what a Pub/Sub subscriber needs to deduplicate it."""

    payload: bytes
    record_id: str | None
    key: str | None


def encode_row(pending: Pending) -> Encoded:
    row = row_json(prediction_row(pending.record, pending.predictions)).encode("utf-8")
    return Encoded(row, pending.record.id, pending.record.key)


def encode_prediction_log(element: tuple[Pending, Any]) -> Encoded:
    pending, log = element
    return Encoded(log.SerializeToString(), pending.record.id, pending.record.key)


class EncodeDeadLetter:
    def __init__(self, pattern: str):
        self._pattern = pattern

    def __call__(self, letter: DeadLetter) -> Encoded:
        return Encoded(dead_letter_json(letter, self._pattern).encode("utf-8"), letter.record_id, letter.key)


class _EncodeAndCount(beam.DoFn):
    def __init__(self, encode: Callable[[Any], Encoded], counter_names: Callable[[Any], tuple[str, ...]]):
        self._encode = encode
        self._counter_names = counter_names
        self._counters = {}

    def process(self, element: Any):
        for name in self._counter_names(element):
            if name not in self._counters:
                self._counters[name] = counters.counter(name)
            self._counters[name].inc()
        yield self._encode(element)


def _rows_written(_: Any) -> tuple[str, ...]:
    return (counters.ROWS_WRITTEN,)


def _dead_letter_counters(letter: DeadLetter) -> tuple[str, ...]:
    return counters.DEAD_LETTERS, counters.dead_letter_counter_name(letter.stage)


def _payload(encoded: Encoded) -> bytes:
    return encoded.payload


def _pubsub_message(encoded: Encoded) -> PubsubMessage:
    attributes = {name: value for name, value in (("record_id", encoded.record_id), ("key", encoded.key)) if value}
    return PubsubMessage(encoded.payload, attributes)


class WriteEncoded(beam.PTransform):
    """Encoded records to files under `prefix` (JSON Lines or TFRecord) and/or to a Pub/Sub `topic`."""

    def __init__(self, prefix: str | None, suffix: str, topic: str | None):
        super().__init__()
        self._prefix = prefix
        self._suffix = suffix
        self._topic = topic

    def expand(self, encoded: beam.PCollection):
        if self._prefix:
            payloads = encoded | "Payloads" >> beam.Map(_payload)
            if self._suffix == ".tfrecord":
                payloads | "WriteTFRecord" >> beam.io.WriteToTFRecord(
                    self._prefix, coder=coders.BytesCoder(), file_name_suffix=self._suffix
                )
            else:
                payloads | "WriteText" >> beam.io.WriteToText(self._prefix, file_name_suffix=self._suffix)
        if self._topic:
            (
                encoded
                | "ToMessage" >> beam.Map(_pubsub_message)
                | "Publish" >> beam.io.WriteToPubSub(self._topic, with_attributes=True)
            )
        return encoded.pipeline


def write_results(config: InferenceConfig) -> beam.PTransform:
    """Rows (PredictionLogs for predict) to --output and/or --output_topic, counted as rows written."""
    predict = config.pattern == "predict"
    suffix = ".tfrecord" if predict else ".jsonl"
    return _EncodeCountWrite(
        encode_prediction_log if predict else encode_row,
        _rows_written,
        WriteEncoded(config.output, suffix, config.output_topic),
    )


def write_dead_letters(config: InferenceConfig) -> beam.PTransform:
    """Dead letters as JSON to --dead_letter files or --dead_letter_topic, counted by stage."""
    return _EncodeCountWrite(
        EncodeDeadLetter(config.pattern),
        _dead_letter_counters,
        WriteEncoded(config.dead_letter, ".jsonl", config.dead_letter_topic),
    )


class _EncodeCountWrite(beam.PTransform):
    def __init__(self, encode, counter_names, write: WriteEncoded):
        super().__init__()
        self._encode = _EncodeAndCount(encode, counter_names)
        self._write = write

    def expand(self, elements: beam.PCollection):
        return elements | "Encode" >> beam.ParDo(self._encode) | "Write" >> self._write
