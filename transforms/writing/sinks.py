"""Writing results and dead letters: encoded and counted once, then to files, a Pub/Sub topic and/or a table."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam import typehints
from apache_beam.io.gcp.pubsub import PubsubMessage

from transforms import counters
from transforms.config import InferenceConfig, RowInput
from transforms.dead_letters import DeadLetter, dead_letter_json, record_dead_letter
from transforms.inference.batches import Batch
from transforms.inference.predict import DEAD_LETTERS
from transforms.progress import ProgressCounts
from transforms.reading.file_records import tfrecord_frames
from transforms.records.coders import SizedPickleCoder
from transforms.records.parsing import Record
from transforms.writing.bigquery import WriteTableRows, dead_letter_table_row, prediction_table_row
from transforms.writing.rows import batch_predictions, prediction_row, row_json
from transforms.writing.windowed_files import WriteWindowedFiles

POSTPROCESS_STAGE = "postprocess"


class Encoded(NamedTuple):
    """One output record as bytes, with what a Pub/Sub subscriber needs to deduplicate it."""

    payload: bytes
    record_id: str | None
    key: str | None
    version: str | None = None


def version_attribute(predictions) -> str | None:
    """The model version(s) of a record: one model's number, or `name=number,...` for several; None when unversioned."""
    if len(predictions) == 1:
        return predictions[0].version
    return ",".join(f"{p.model}={p.version}" for p in predictions if p.version is not None) or None


class EncodedCoder(SizedPickleCoder):
    """An Encoded record pickled where it must be encoded, sized by its payload where Beam samples its size.

    Batches of Encoded records are one element each; without it, Beam's element-size sampling pickled every
    record of a sampled batch (see transforms/records/coders.py, also for why pickle encodes it).
    """

    def estimate_size(self, encoded: Encoded) -> int:
        return len(encoded.payload) + len(encoded.record_id or "") + len(encoded.key or "")

    def to_type_hint(self):
        return Encoded


beam.coders.registry.register_coder(Encoded, EncodedCoder)


def result_rows(batch: Batch) -> list[tuple[Record, list[dict], str | None]]:
    """Each record of a batch of results with its predictions, as its row holds them, and its version attribute."""
    version = version_attribute(batch.outputs)
    rows = zip(batch.records, batch_predictions(batch), strict=True)
    return [(record, predictions, version) for record, predictions in rows]


class EncodeRow:
    """A record's result as its JSON row, carrying what --row_input chooses of its input."""

    def __init__(self, row_input: RowInput = RowInput()):
        self._row_input = row_input

    def __call__(self, element: tuple[Record, list[dict], str | None]) -> Encoded:
        record, predictions, version = element
        return Encoded(row_json(prediction_row(record, predictions, self._row_input)), record.id, record.key, version)


def result_logs(batch: Batch) -> list[tuple[Record, bytes, str | None, str]]:
    """Each record of a batch of predict's results with its serialized PredictionLog, and the version and model that
    made it (a routed job's batches each have a model of their own)."""
    (outputs,) = batch.outputs
    logs = zip(batch.records, outputs.logs, strict=True)
    return [(record, log, outputs.version, outputs.model) for record, log in logs]


def encode_prediction_log(element: tuple[Record, bytes, str | None, str]) -> Encoded:
    record, log, version, _ = element
    return Encoded(log, record.id, record.key, version)


def unencodable_row(element: tuple[Record, Any, str | None], error: Exception) -> DeadLetter:
    """A result that cannot become a row (e.g. a key JSON cannot hold) is a `postprocess` dead letter."""
    return record_dead_letter(POSTPROCESS_STAGE, error, element[0])


def unencodable_dead_letter(letter: DeadLetter, error: Exception) -> DeadLetter:
    return letter._replace(message=f"{letter.message}; and it could not be encoded: {error}")


class EncodeDeadLetter:
    def __init__(self, pattern: str):
        self._pattern = pattern

    def __call__(self, letter: DeadLetter) -> Encoded:
        return Encoded(dead_letter_json(letter, self._pattern).encode("utf-8"), letter.record_id, letter.key)


class _EncodeAndCount(beam.DoFn):
    """A batch of results or dead letters in, the batch of their Encoded records out, each one counted.

    `elements` takes a batch apart into what `encode` encodes: a record each. One that cannot be encoded goes out
    as a dead letter, uncounted; its batch-mates are written. `counts` counts the encoded ones a batch at a time.
    """

    def __init__(
        self,
        elements: Callable[[Any], list],
        encode: Callable[[Any], Encoded],
        counts: Callable[[list], Counter],
        unencodable: Callable[[Any, Exception], DeadLetter],
        progress: ProgressCounts | None,
    ):
        self._elements = elements
        self._encode = encode
        self._count = counts
        self._unencodable = unencodable
        self._progress = progress
        self._counts = {}

    def process(self, batch):
        encoded, counted = [], []
        for element in self._elements(batch):
            try:
                encoded.append(self._encode(element))
            except Exception as error:
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, self._unencodable(element, error))
                continue
            counted.append(element)
        for name, count in (self._count(counted) if counted else {}).items():
            if name not in self._counts:
                self._counts[name] = counters.Count(name, self._progress)
            self._counts[name].inc(count)
        if encoded:
            yield encoded


# The model table of a run's summary counts these too, so that it agrees with the rows, as they name their model
# and version; the runner's own metrics can lag behind what was written (a local streaming run's do).
def _by_version(written: Counter, total: int) -> Counter:
    """`total` rows written, and of them each (model, version)'s predictions as their counter names them."""
    counts = Counter({counters.ROWS_WRITTEN: total})
    for (model, version), count in written.items():
        counts[counters.predictions_written_counter_name(model, version)] += count
    return counts


def _rows_written(elements: list[tuple[Record, list[dict], str | None]]) -> Counter:
    """Rows written, and each model's predictions in them, by the version that made them."""
    return _by_version(
        Counter((p["model"], p["version"]) for _, predictions, _ in elements for p in predictions), len(elements)
    )


def _logs_written(elements: list[tuple[Record, bytes, str | None, str]]) -> Counter:
    """PredictionLogs written, each a prediction of the model that made it, by its version."""
    return _by_version(Counter((model, version) for _, _, version, model in elements), len(elements))


def _dead_letters_written(letters: list[DeadLetter]) -> Counter:
    """Dead letters written, and of them each stage's."""
    counts = Counter(counters.dead_letter_counter_name(letter.stage) for letter in letters)
    counts[counters.DEAD_LETTERS] = len(letters)
    return counts


def _payloads(batch: list[Encoded]) -> list[bytes]:
    return [encoded.payload for encoded in batch]


def _lines(batch: list[Encoded]) -> bytes:
    """A batch as one piece of text: a line per record, the last one's line break left to the writer."""
    return b"\n".join(encoded.payload for encoded in batch)


def _frames(batch: list[Encoded]) -> bytes:
    return tfrecord_frames(encoded.payload for encoded in batch)


def _one_each(element: Any) -> list:
    return [element]


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which a JSON \u escape can carry
        return False
    return True


def pubsub_message(encoded: Encoded) -> PubsubMessage:
    """The Pub/Sub message of an encoded record: its payload, with attributes record_id, key and version."""
    # An attribute must be UTF-8; a key that is not stays escaped in the payload's JSON.
    attributes = {
        name: value
        for name, value in (("record_id", encoded.record_id), ("key", encoded.key), ("version", encoded.version))
        if value and _is_utf8(value)
    }
    return PubsubMessage(encoded.payload, attributes)


class WriteFiles(beam.PTransform):
    """Batches of Encoded records to files under `prefix`: TFRecord when `suffix` is .tfrecord, else JSON Lines.

    A batch of JSON Lines is written as one piece of text. In streaming, one set of files per window
    (--window_seconds), complete when the window closes.
    """

    def __init__(self, prefix: str, suffix: str):
        super().__init__()
        self._prefix = prefix
        self._suffix = suffix

    def expand(self, batches: beam.PCollection) -> None:
        if not batches.is_bounded:
            payloads = batches | "Payloads" >> beam.FlatMap(_payloads)
            payloads | "WriteWindowed" >> WriteWindowedFiles(self._prefix, self._suffix)
        elif self._suffix == ".tfrecord":
            # A batch is framed at once and its frames written as they are: a TFRecord file is frames end to end.
            frames = batches | "Frames" >> beam.Map(_frames)
            frames | "WriteTFRecord" >> beam.io.WriteToText(
                self._prefix, file_name_suffix=self._suffix, append_trailing_newlines=False
            )
        else:
            lines = batches | "Lines" >> beam.Map(_lines)
            lines | "WriteText" >> beam.io.WriteToText(self._prefix, file_name_suffix=self._suffix)


class Publish(beam.PTransform):
    """Batches of Encoded records published to a Pub/Sub topic, a message each, with attributes record_id and key."""

    def __init__(self, topic: str):
        super().__init__()
        self._topic = topic

    def expand(self, batches: beam.PCollection) -> None:
        (
            batches
            | "Unbatch" >> beam.FlatMap(list)
            | "ToMessage" >> beam.Map(pubsub_message)
            | "Publish" >> beam.io.WriteToPubSub(self._topic, with_attributes=True)
        )


def _sinks(prefix: str | None, suffix: str, topic: str | None, table: WriteTableRows | None) -> list:
    return [sink for sink in (prefix and WriteFiles(prefix, suffix), topic and Publish(topic), table) if sink]


def write_results(config: InferenceConfig) -> beam.PTransform:
    """Batches of rows (PredictionLogs for predict) to --output, --output_topic and/or --output_table, counted.

    Returns the dead letters of results that could not be encoded as a row, and of rows that a streaming insert
    into --output_table refused.
    """
    predict = config.pattern == "predict"
    table = config.output_table and WriteTableRows(
        config.output_table,
        "predictions",
        prediction_table_row,
        counters.Count(counters.ROWS_WRITTEN, config.live_counts),
    )
    return _EncodeCountWrite(
        result_logs if predict else result_rows,
        encode_prediction_log if predict else EncodeRow(config.row_input),
        _logs_written if predict else _rows_written,
        unencodable_row,
        _sinks(config.output, ".tfrecord" if predict else ".jsonl", config.output_topic, table),
        config.live_counts,
    )


def write_dead_letters(config: InferenceConfig) -> beam.PTransform:
    """Dead letters as JSON to --dead_letter files, --dead_letter_topic or --dead_letter_table, counted by stage.

    Returns the dead letters that could not be encoded or that a streaming insert into --dead_letter_table refused.
    """
    table = config.dead_letter_table and WriteTableRows(
        config.dead_letter_table, "dead_letters", dead_letter_table_row, None
    )
    return _EncodeCountWrite(
        list,
        EncodeDeadLetter(config.pattern),
        _dead_letters_written,
        unencodable_dead_letter,
        _sinks(config.dead_letter, ".jsonl", config.dead_letter_topic, table),
        config.live_counts,
        one_each=True,
    )


class _EncodeCountWrite(beam.PTransform):
    """Batches encoded and counted once, then written to every sink; a table takes them a row at a time.

    With `one_each`, the elements are single records (dead letters, which are few) made batches of one.
    """

    def __init__(
        self,
        elements,
        encode,
        counts,
        unencodable,
        sinks: list[beam.PTransform],
        progress: ProgressCounts | None,
        one_each: bool = False,
    ):
        super().__init__()
        self._encode = _EncodeAndCount(elements, encode, counts, unencodable, progress)
        self._sinks = sinks
        self._one_each = one_each

    def expand(self, elements: beam.PCollection) -> beam.PCollection:
        if self._one_each:
            elements = elements | "OneEach" >> beam.Map(_one_each)
        encode = beam.ParDo(self._encode).with_output_types(typehints.List[Encoded])
        encoded, unencodable = elements | "Encode" >> encode.with_outputs(DEAD_LETTERS, main="encoded")
        refused = []
        for sink in self._sinks:
            batches = encoded
            if isinstance(sink, WriteTableRows):  # a table takes a row at a time
                batches = encoded | f"Rows {type(sink).__name__}" >> beam.FlatMap(list)
            refused.append(batches | type(sink).__name__ >> sink)
        refused = [pcoll for pcoll in refused if isinstance(pcoll, beam.PCollection)]
        return [unencodable, *refused] | "Refused" >> beam.Flatten()


class _LogUnwritable(beam.DoFn):
    def process(self, letter: DeadLetter) -> None:
        counters.counter(counters.DEAD_LETTERS_UNWRITABLE).inc()
        logging.error("a dead letter could not be written either (%s); it was: %s", letter.message, letter.raw[:2000])


class LogUnwritable(beam.PTransform):
    """Dead letters the dead-letter sink itself refused: logged (raw input up to 2000 bytes) and counted."""

    def expand(self, letters: beam.PCollection) -> None:
        letters | "Log" >> beam.ParDo(_LogUnwritable())
