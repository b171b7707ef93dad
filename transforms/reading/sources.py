"""Reading records from files, BigQuery or Pub/Sub: formats settled, headers checked, bad records to dead letters."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import apache_beam as beam
import orjson
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import window

from transforms import counters
from transforms.config import InferenceConfig, ParameterError
from transforms.dead_letters import dead_letter
from transforms.reading.bigquery import ReadBigQueryRows
from transforms.reading.file_ranges import RANGE_BYTES, FileRangesOf, ReadFileRanges, csv_header, format_of
from transforms.reading.file_records import UnreadableFile, open_input
from transforms.records.coders import RecordBatch
from transforms.records.parsing import (
    Parsed,
    Record,
    RecordError,
    parse_fields,
    parse_jsonl_batch,
    parse_record,
    parse_tfrecords,
)
from transforms.worker_memory import freeze_startup_objects
from transforms.writing.rows import row_json

PARSE_STAGE = "parse"
DEAD_LETTERS = "dead_letters"
# One listing call to Cloud Storage returns up to this many objects: the launch looks at no more.
_FIRST_PAGE = 1000


@dataclass(frozen=True)
class InputPlan:
    """What the source will read: a file pattern, its format and, for CSV, the header of its first file.

    `names_format` says the format came from the file names, so a file named otherwise is not read as it.
    `first_fields` are the field names of the first JSON Lines record (of `first_file`), read only when
    --row_input names fields or --route_field names one, to check them.
    """

    pattern: str
    format: str
    header: tuple[str, ...] = ()
    header_file: str = ""
    names_format: bool = False
    first_fields: tuple[str, ...] = ()
    first_file: str = ""


def _first_csv_header(paths: Iterable[str], key_field: str) -> tuple[tuple[str, ...], str]:
    """The header of the first file that has one, checked, and that file."""
    for path in paths:
        try:
            header = csv_header(path)
        except (UnreadableFile, RecordError) as error:
            raise ParameterError(f"CSV file {path} has no readable header row: {error}") from None
        if not header:
            continue  # an empty file has no records to read
        duplicates = sorted({c for c in header if header.count(c) > 1})
        if duplicates:
            raise ParameterError(f"CSV header of {path} repeats column(s) {', '.join(duplicates)}")
        if not [c for c in header if c != key_field]:
            raise ParameterError(f"CSV header of {path} has no feature column besides the key {key_field!r}")
        return header, path
    return (), ""


def _first_jsonl_fields(paths: Iterable[str]) -> tuple[tuple[str, ...], str]:
    """The field names of the first line of the first file that has one, and that file; none if it is no object.

    A first line that is not a JSON object is its own `parse` dead letter; the launch then has no fields to check.
    """
    for path in paths:
        try:
            with open_input(path) as stream:
                line = stream.readline()
        except Exception as error:
            raise ParameterError(f"JSON Lines file {path} cannot be read: {error}") from None
        if not line.strip():
            continue
        try:
            fields = orjson.loads(line)
        except orjson.JSONDecodeError:
            return (), path
        return (tuple(fields), path) if isinstance(fields, dict) else ((), path)
    return (), ""


def plan_input(config: InferenceConfig) -> InputPlan:
    """Check that --input matches, settle its format and read the first CSV header, before the pipeline is built.

    The work is the same however many files match: one listing call, and one header read (more only past
    empty files). The job itself matches every file and compares each CSV header with this one.
    """
    try:
        # Beam's match stops only when the item past its limit arrives: a limit of a full page would fetch the next.
        listed = [m.path for m in FileSystems.match([config.input], limits=[_FIRST_PAGE - 1])[0].metadata_list]
    except Exception as error:
        raise ParameterError(f"--input={config.input} cannot be listed: {error}") from None
    if not listed:
        raise ParameterError(f"no files match --input={config.input}")
    kind = config.input_format or format_of(config.input)
    if kind is None:
        kinds = {format_of(path) for path in listed}
        if len(kinds) != 1 or None in kinds:
            raise ParameterError(
                f"cannot tell the format of --input={config.input} from its file names "
                f"(e.g. {listed[0]}); name them .tfrecord, .csv or .jsonl (optionally .gz) or pass --input_format"
            )
        kind = kinds.pop()
    header, header_file = _first_csv_header(listed, config.key_field) if kind == "csv" else ((), "")
    named = config.row_input.fields or config.routing is not None
    first_fields, first_file = _first_jsonl_fields(listed) if kind == "jsonl" and named else ((), "")
    return InputPlan(config.input, kind, header, header_file, config.input_format is None, first_fields, first_file)


class RawRecord(NamedTuple):
    """A record as read, before parsing: where from, its bytes, and what the transport says of it.

    A table row also has its `fields` (column name -> value); `data` is then the row as JSON.
    """

    source: str
    data: bytes
    id: str | None = None
    key: str | None = None
    fields: dict | None = None


def file_batch(element: tuple[str, list[bytes]]) -> list[RawRecord]:
    """A batch of records as the file reader gives it, (file name, [record, ...]), as RawRecords."""
    filename, records = element
    return [RawRecord(filename, data) for data in records]


class TransportBatch:
    """A batch of elements as their transport gave them (messages, table rows), each made a RawRecord."""

    def __init__(self, unpack: Callable[[Any], RawRecord]):
        self._unpack = unpack

    def __call__(self, batch: list) -> list[RawRecord]:
        return [self._unpack(element) for element in batch]


def table_record(element: tuple[str, dict]) -> RawRecord:
    source, row = element
    return RawRecord(source, row_json(row), fields=row)


class PubsubRecord:
    """A Pub/Sub message as a RawRecord: its message id is the record id, its key attribute the key."""

    def __init__(self, subscription: str, key_attribute: str | None):
        self._subscription = subscription
        self._key_attribute = key_attribute

    def __call__(self, message) -> RawRecord:
        key = (message.attributes or {}).get(self._key_attribute) if self._key_attribute else None
        return RawRecord(self._subscription, message.data, message.message_id or None, key or None)


def record_ids(count: int) -> list[str]:
    """`count` ids for records their transport gave none: 128 random bits each, as 32 hex digits (like uuid4's).

    One call to the system's random source for the batch, instead of one per record.
    """
    digits = os.urandom(16 * count).hex()
    return [digits[i : i + 32] for i in range(0, 32 * count, 32)]


class _ParseRecords(beam.DoFn):
    """A batch of raw elements in, its parsed Records out as one list, and a dead letter per bad record.

    Examples and JSON Lines are parsed a batch at a time (a column per feature), CSV records each on its own; a
    bad record costs only itself whatever else its batch holds.
    `raw_records` makes the element's RawRecords (file_batch, or a TransportBatch).
    """

    def __init__(
        self,
        raw_records: Callable[[Any], list[RawRecord]],
        kind: str,
        config: InferenceConfig,
        header: tuple[str, ...] = (),
    ):
        self._raw_records = raw_records
        self._kind = kind
        self._header = header
        self._key_field = config.key_field
        self._types = config.feature_types
        self._requires_key = config.requires_key
        self._records_read = counters.Count(counters.RECORDS_READ, config.live_counts)

    def setup(self) -> None:
        # Every worker that handles records parses them, before any record is made: the process's startup
        # objects are all there (see worker_memory).
        freeze_startup_objects()

    def process(self, batch: Any) -> Iterable:
        raws = self._raw_records(batch)
        self._records_read.inc(len(raws))
        if self._kind == "tfrecord":
            parsed = parse_tfrecords([raw.data for raw in raws], self._key_field)
        elif self._kind == "jsonl":
            parsed = parse_jsonl_batch([raw.data for raw in raws], self._key_field, self._types)
        else:
            parsed = [None] * len(raws)
        records = []
        for raw, result, record_id in zip(raws, parsed, record_ids(len(raws)), strict=True):
            try:
                records.append(self._record(raw, result, record_id))
            except Exception as error:  # every bad record becomes a dead letter, whatever broke on it
                key = raw.key or getattr(error, "key", None)  # a key read before the error identifies the record
                letter = dead_letter(PARSE_STAGE, error, raw.data, raw.source, key=key, record_id=raw.id)
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
        if records:
            yield RecordBatch(records)

    def _record(self, raw: RawRecord, parsed: Parsed | RecordError | None, record_id: str) -> Record:
        """The Record of one raw record, given what the batch's parse made of it (None: parse it now)."""
        if isinstance(parsed, RecordError):
            raise parsed
        if parsed is None and raw.fields is None:
            parsed = parse_record(self._kind, raw.data, self._key_field, self._types, self._header)
        elif parsed is None:
            parsed = parse_fields(raw.fields, self._key_field, self._types)
        key = raw.key or parsed.key
        if self._requires_key and key is None:
            raise RecordError(f"record has no key field {self._key_field!r}, which --pattern=keyed needs")
        return Record(raw.id or record_id, key, parsed.features, raw.data, raw.source, parsed.model_input)


def parse_batches(
    raw: beam.PCollection, unpack, kind: str, config: InferenceConfig, header: tuple[str, ...] = ()
) -> tuple[beam.PCollection, beam.PCollection]:
    """Raw elements gathered into batches (within a bundle and a window: never waiting for more input), parsed.

    Out come batches of Records (lists, at most --max_batch_size long) and a dead letter per bad record.
    From here to the sinks every step handles a batch at a time, so Beam's cost per element is paid once per
    batch, not once per record.
    """
    batching = config.batching
    batches = raw | "Batch" >> beam.BatchElements(
        min_batch_size=batching.min_batch_size, max_batch_size=batching.max_batch_size
    )
    return parse(batches, TransportBatch(unpack), kind, config, header)


def parse(
    batches: beam.PCollection,
    raw_records: Callable[[Any], list[RawRecord]],
    kind: str,
    config: InferenceConfig,
    header: tuple[str, ...] = (),
) -> tuple[beam.PCollection, beam.PCollection]:
    """Batches of raw records parsed: batches of Records out, and a dead letter per bad record."""
    parse_records = beam.ParDo(_ParseRecords(raw_records, kind, config, header)).with_output_types(RecordBatch)
    return batches | "Parse" >> parse_records.with_outputs(DEAD_LETTERS, main="records")


class ReadRecords(beam.PTransform):
    """Batches of Records from the input files, and a dead letter for each record or file rest not read or parsed.

    Files are matched in the job, not at launch, and read in byte ranges spread over the workers (see
    file_ranges): uncompressed CSV and JSON Lines in many ranges each, compressed files and TFRecords whole.
    A corrupt or truncated file costs only its unreadable rest, never the job.
    """

    def __init__(self, plan: InputPlan, config: InferenceConfig, range_bytes: int = RANGE_BYTES):
        super().__init__()
        self._plan = plan
        self._config = config
        self._range_bytes = range_bytes

    def expand(self, pbegin: beam.pvalue.PBegin) -> tuple[beam.PCollection, beam.PCollection]:
        plan = self._plan
        read = ReadFileRanges(
            plan.format,
            plan.header,
            plan.header_file,
            plan.names_format,
            self._range_bytes,
            self._config.live_counts,
            self._config.batching.max_batch_size,
        )
        raw, unreadable = (
            pbegin
            | "Pattern" >> beam.Create([plan.pattern])
            | "Match" >> fileio.MatchAll()
            | "SpreadFiles" >> beam.Reshuffle()
            | "Ranges" >> FileRangesOf(plan.format, self._range_bytes)
            | "SpreadRanges" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(read).with_outputs(DEAD_LETTERS, main="raw")
        )
        records, bad = parse(raw, file_batch, plan.format, self._config, plan.header)
        return records, (unreadable, bad) | "DeadLetters" >> beam.Flatten()


class ReadPubSubRecords(beam.PTransform):
    """Batches of Records from a Pub/Sub subscription (an unbounded source: the pipeline streams), dead letters.

    Records are windowed by publish time into --window_seconds windows and batched within a window (a batch
    goes out at the end of each bundle, never waiting for its window to close), and file sinks write one set
    of files per window. Topics and tables get each row as soon as it is made.
    """

    def __init__(self, config: InferenceConfig):
        super().__init__()
        self._config = config

    def expand(self, pbegin: beam.pvalue.PBegin) -> tuple[beam.PCollection, beam.PCollection]:
        subscription = self._config.input_subscription
        kind = "jsonl" if self._config.message_format == "json" else "tfrecord"
        messages = (
            pbegin
            | "ReadPubSub" >> beam.io.ReadFromPubSub(subscription=subscription, with_attributes=True)
            | "Window" >> beam.WindowInto(window.FixedWindows(self._config.window_seconds))
        )
        return parse_batches(messages, PubsubRecord(subscription, self._config.key_attribute), kind, self._config)


class ReadTableRecords(beam.PTransform):
    """Batches of Records from a BigQuery table or query, and dead letters for rows that cannot be model input."""

    def __init__(self, config: InferenceConfig):
        super().__init__()
        self._config = config

    def expand(self, pbegin: beam.pvalue.PBegin) -> tuple[beam.PCollection, beam.PCollection]:
        rows = pbegin | "Rows" >> ReadBigQueryRows(self._config)
        return parse_batches(rows, table_record, "row", self._config)


def source_transform(config: InferenceConfig, plan: InputPlan | None) -> beam.PTransform:
    """The source the parameters name: files, a BigQuery table or query, or a Pub/Sub subscription."""
    if config.input_subscription:
        return ReadPubSubRecords(config)
    if config.input_table or config.input_query:
        return ReadTableRecords(config)
    return ReadRecords(plan, config)
