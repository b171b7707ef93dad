"""Reading records from files, BigQuery or Pub/Sub: formats settled, headers checked, bad records to dead letters."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import window

from transforms import counters
from transforms.bigquery import ReadBigQueryRows
from transforms.config import InferenceConfig, ParameterError
from transforms.dead_letters import dead_letter
from transforms.file_records import BrokenCsvRecord, UnreadableFile, csv_records, lines, open_input, tfrecords
from transforms.records import Record, RecordError, csv_fields, parse_fields, parse_record
from transforms.rows import row_json

PARSE_STAGE = "parse"
READ_STAGE = "read"
DEAD_LETTERS = "dead_letters"
_EXTENSIONS = {
    ".tfrecord": "tfrecord",
    ".tfrecords": "tfrecord",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def format_of(path: str) -> str | None:
    """tfrecord, csv or jsonl from a file name (compressed .gz/.bz2/.zst/.deflate too), or None."""
    name = path.lower()
    for suffix in (".gz", ".bz2", ".zst", ".deflate"):
        name = name.removesuffix(suffix)
    for extension, kind in _EXTENSIONS.items():
        if name.endswith(extension):
            return kind
    return None


@dataclass(frozen=True)
class InputPlan:
    """What the source will read: a file pattern, its format and, for CSV, the header every file shares."""

    pattern: str
    format: str
    files: tuple[str, ...]
    header: tuple[str, ...] = ()


def _header_record(path: str) -> bytes:
    with open_input(path) as stream:
        first = next(csv_records(stream), b"")
    if isinstance(first, BrokenCsvRecord):
        raise ParameterError(f"the header of CSV file {path} is broken: {first.message()}")
    return first


def _csv_header(files: Iterable[str], key_field: str) -> tuple[str, ...]:
    header, header_file = None, None
    for path in files:
        try:
            columns = tuple(csv_fields(_header_record(path)))
        except UnreadableFile as error:
            raise ParameterError(f"CSV file {path} has no readable header row: {error}") from None
        except RecordError as error:
            raise ParameterError(f"CSV file {path} has a header row that cannot be read: {error}") from None
        if not columns:
            continue  # an empty file has no records to read
        if header is None:
            header, header_file = columns, path
        elif columns != header:
            raise ParameterError(
                f"CSV file {path} has header {','.join(columns)} but {header_file} has {','.join(header)}; "
                "every file of --input must share one header"
            )
    if header is None:
        return ()
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise ParameterError(f"CSV header of {header_file} repeats column(s) {', '.join(duplicates)}")
    if not [c for c in header if c != key_field]:
        raise ParameterError(f"CSV header of {header_file} has no feature column besides the key {key_field!r}")
    return header


def plan_input(config: InferenceConfig) -> InputPlan:
    """Match --input, settle its format and read CSV headers, failing before the pipeline is built."""
    try:
        matches = FileSystems.match([config.input])[0].metadata_list
    except Exception as error:
        raise ParameterError(f"--input={config.input} cannot be listed: {error}") from None
    files = tuple(sorted(m.path for m in matches))
    if not files:
        raise ParameterError(f"no files match --input={config.input}")
    kind = config.input_format or format_of(config.input)
    if kind is None:
        kinds = {format_of(path) for path in files}
        if len(kinds) != 1 or None in kinds:
            raise ParameterError(
                f"cannot tell the format of --input={config.input} from its file names "
                f"(e.g. {files[0]}); name them .tfrecord, .csv or .jsonl (optionally .gz) or pass --input_format"
            )
        kind = kinds.pop()
    header = _csv_header(files, config.key_field) if kind == "csv" else ()
    return InputPlan(config.input, kind, files, header)


class RawRecord(NamedTuple):
    """A record as read, before parsing: where from, its bytes, and what the transport says of it.

    A table row also has its `fields` (column name -> value); `data` is then the row as JSON.
    """

    source: str
    data: bytes
    id: str | None = None
    key: str | None = None
    fields: dict | None = None


def file_record(element: tuple[str, bytes]) -> RawRecord:
    filename, data = element
    return RawRecord(filename, data)


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


class _ParseRecords(beam.DoFn):
    def __init__(self, unpack, kind: str, config: InferenceConfig, header: tuple[str, ...] = ()):
        self._unpack = unpack
        self._kind = kind
        self._header = header
        self._key_field = config.key_field
        self._types = config.feature_types
        self._requires_key = config.requires_key
        self._records_read = counters.counter(counters.RECORDS_READ)

    def process(self, element) -> Iterable:
        self._records_read.inc()
        raw = self._unpack(element)
        try:
            if raw.fields is None:
                parsed = parse_record(self._kind, raw.data, self._key_field, self._types, self._header)
            else:
                parsed = parse_fields(raw.fields, self._key_field, self._types)
            key, features, model_input = parsed
            key = raw.key or key
            if self._requires_key and key is None:
                raise RecordError(f"record has no key field {self._key_field!r}, which --pattern=keyed needs")
        except Exception as error:  # every bad record becomes a dead letter, whatever broke on it
            key = raw.key or getattr(error, "key", None)  # a key read before the error still identifies the record
            letter = dead_letter(PARSE_STAGE, error, raw.data, raw.source, key=key, record_id=raw.id)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
            return
        yield Record(raw.id or uuid.uuid4().hex, key, features, raw.data, raw.source, model_input)


_READERS = {"tfrecord": tfrecords, "jsonl": lines, "csv": csv_records}


class _ReadFile(beam.DoFn):
    """(file name, raw record) for each record of a matched file; an unreadable rest becomes a dead letter."""

    def __init__(self, kind: str):
        self._kind = kind
        self._records_read = counters.counter(counters.RECORDS_READ)

    def process(self, readable: fileio.ReadableFile) -> Iterable:
        path = readable.metadata.path
        try:
            with open_input(path) as stream:
                records = _READERS[self._kind](stream)
                if self._kind == "csv":
                    next(records, None)  # the header, checked when the pipeline was planned
                for record in records:
                    if isinstance(record, BrokenCsvRecord):
                        self._records_read.inc()  # counted here: it never reaches the parser
                        letter = dead_letter(PARSE_STAGE, RecordError(record.message()), record.raw, path)
                        yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
                    else:
                        yield path, record
        except UnreadableFile as error:
            self._records_read.inc()  # the unreadable rest counts as one record
            message = f"{path} cannot be read past byte {error.offset}: {error}; the rest of the file was skipped"
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead_letter(READ_STAGE, ValueError(message), b"", path))


class ReadRecords(beam.PTransform):
    """Records from the input files, and a dead letter for each line or record that cannot be read or parsed.

    Files are matched, spread over workers and read whole, each as one stream: a corrupt or truncated
    file then costs only its unreadable rest, never the job.
    """

    def __init__(self, plan: InputPlan, config: InferenceConfig):
        super().__init__()
        self._plan = plan
        self._config = config

    def expand(self, pbegin: beam.pvalue.PBegin) -> tuple[beam.PCollection, beam.PCollection]:
        raw, unreadable = (
            pbegin
            | "Files" >> beam.Create(self._plan.files)
            | "Spread" >> beam.Reshuffle()
            | "Match" >> fileio.MatchAll()
            | "Open" >> fileio.ReadMatches()
            | "Read" >> beam.ParDo(_ReadFile(self._plan.format)).with_outputs(DEAD_LETTERS, main="raw")
        )
        parse = _ParseRecords(file_record, self._plan.format, self._config, self._plan.header)
        records, bad = raw | "Parse" >> beam.ParDo(parse).with_outputs(DEAD_LETTERS, main="records")
        return records, (unreadable, bad) | "DeadLetters" >> beam.Flatten()


class ReadPubSubRecords(beam.PTransform):
    """Records from a Pub/Sub subscription (an unbounded source: the pipeline streams), and dead letters.

    Records are windowed by publish time into --window_seconds windows: RunInference batches within a
    window (a batch goes out at the end of each bundle, never waiting for its window to close), and file
    sinks write one set of files per window. Topics and tables get each row as soon as it is made.
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
        parse = _ParseRecords(PubsubRecord(subscription, self._config.key_attribute), kind, self._config)
        return messages | "Parse" >> beam.ParDo(parse).with_outputs(DEAD_LETTERS, main="records")


class ReadTableRecords(beam.PTransform):
    """Records from a BigQuery table or query (batch), and dead letters for rows that cannot be model input."""

    def __init__(self, config: InferenceConfig):
        super().__init__()
        self._config = config

    def expand(self, pbegin: beam.pvalue.PBegin) -> tuple[beam.PCollection, beam.PCollection]:
        rows = pbegin | "Rows" >> ReadBigQueryRows(self._config)
        parse = _ParseRecords(table_record, "row", self._config)
        return rows | "Parse" >> beam.ParDo(parse).with_outputs(DEAD_LETTERS, main="records")


def source_transform(config: InferenceConfig, plan: InputPlan | None) -> beam.PTransform:
    """The source the parameters name: files, a BigQuery table or query, or a Pub/Sub subscription."""
    if config.input_subscription:
        return ReadPubSubRecords(config)
    if config.input_table or config.input_query:
        return ReadTableRecords(config)
    return ReadRecords(plan, config)
