"""Reading matched files in byte ranges that workers share: a splittable DoFn over each file's offsets.

An uncompressed CSV or JSON Lines file is cut into ranges of RANGE_BYTES, and a range still unread can be
split again while it runs (Dataflow's dynamic work rebalancing), so one large file is read by many workers.
Each range owns the records that start inside it: it begins at the first record boundary at or after its
start, as a reader from the file's start would find it (for CSV, see csv_records and FileRangesOf), and reads
on past its end to finish its last record. Compressed files and TFRecords cannot be entered mid-stream: each
is one range.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker, UnsplittableRestrictionTracker

from transforms import counters
from transforms.dead_letters import dead_letter
from transforms.progress import BYTES_READ, ProgressCounts
from transforms.reading.csv_records import (
    BrokenCsvRecord,
    ChunkSummary,
    chunk_exit,
    chunk_summary,
    csv_records,
    first_start_at_or_after,
)
from transforms.reading.file_records import UnreadableFile, lines, open_input, read_line, tfrecords
from transforms.records.parsing import RecordError, csv_fields

# Beam's own text reading splits files into bundles of this size on Dataflow.
RANGE_BYTES = 64 << 20
READ_STAGE = "read"
PARSE_STAGE = "parse"
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


class _WholeFile(OffsetRange):
    """A file that must be read from its start to its end in one go: compressed, or TFRecords."""


class _CsvRange(OffsetRange):
    """Record starts in [start, stop) of a CSV file, found on the path of a reader at the record start `anchor`.

    Split again while it runs, both parts keep the anchor: the second finds its first record from there.
    """

    def __init__(self, start: int, stop: int, anchor: int):
        super().__init__(start, stop)
        self.anchor = anchor

    def split_at(self, split_pos: int) -> tuple[_CsvRange, _CsvRange]:
        return _CsvRange(self.start, split_pos, self.anchor), _CsvRange(split_pos, self.stop, self.anchor)

    def __reduce__(self):
        return _CsvRange, (self.start, self.stop, self.anchor)


def splittable(path: str, kind: str) -> bool:
    """Whether a file can be read from any byte offset: uncompressed text."""
    return kind in ("csv", "jsonl") and CompressionTypes.detect_compression_type(path) == CompressionTypes.UNCOMPRESSED


class _Chunk(NamedTuple):
    path: str
    size: int
    index: int
    start: int
    stop: int


class _ChunkCsvFiles(beam.DoFn):
    """A CSV file larger than one range as chunks to summarise; any other file as its readable range, at once."""

    READY = "ready"

    def __init__(self, kind: str, range_bytes: int):
        self._kind = kind
        self._range_bytes = range_bytes

    def process(self, file: FileMetadata) -> Iterator:
        size = file.size_in_bytes
        if not splittable(file.path, self._kind):
            yield beam.pvalue.TaggedOutput(self.READY, (file, _WholeFile(0, size)))
        elif self._kind != "csv":
            yield beam.pvalue.TaggedOutput(self.READY, (file, OffsetRange(0, size)))
        elif size <= self._range_bytes:
            yield beam.pvalue.TaggedOutput(self.READY, (file, _CsvRange(0, size, 0)))
        else:
            for index, start in enumerate(range(0, size, self._range_bytes)):
                yield _Chunk(file.path, size, index, start, min(start + self._range_bytes, size))


def _summarize(chunk: _Chunk) -> tuple[str, tuple[_Chunk, ChunkSummary | None]]:
    """A chunk's summary; None when the file cannot be read now (its reader will say why, as a dead letter)."""
    try:
        with FileSystems.open(chunk.path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
            return chunk.path, (chunk, chunk_summary(stream, chunk.start, chunk.stop))
    except (OSError, UnreadableFile):
        return chunk.path, (chunk, None)


def _anchored_ranges(file: tuple[str, Iterable[tuple[_Chunk, ChunkSummary | None]]]) -> list:
    """Each chunk's range from its first record start to the next chunk's: the summaries chained from byte 0.

    A file that could not be summarised is one range, read from its start by one worker.
    """
    path, chunks = file
    chunks = sorted(chunks, key=lambda pair: pair[0].index)
    metadata = FileMetadata(path, chunks[0][0].size)
    whole = [(metadata, _CsvRange(0, metadata.size_in_bytes, 0))]
    if any(summary is None for _, summary in chunks):
        return whole
    ranges, entry = [], 0
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
            for _, summary in chunks:
                leave = chunk_exit(stream, entry, summary)
                if leave > entry:
                    ranges.append((metadata, _CsvRange(entry, leave, entry)))
                entry = leave
    except (OSError, UnreadableFile):
        return whole
    return ranges


def ranges_offered(path: str, size: int, kind: str, range_bytes: int = RANGE_BYTES) -> int:
    """How many byte ranges a file is read in before any dynamic split (Dataflow may split running ones)."""
    file = FileMetadata(path, size)
    elements = list(_ChunkCsvFiles(kind, range_bytes).process(file))
    if len(elements) > 1:
        return len(elements)  # CSV chunks, each read as one range
    _, restriction = elements[0].value
    return sum(1 for _ in FileRanges(range_bytes).split(None, restriction))


class FileRangesOf(beam.PTransform):
    """Matched files as (file, byte range) elements for ReadFileRanges to read and split further.

    A large CSV file costs one extra pass, in parallel over its chunks, before it is read: the record a
    chunk starts with depends on every byte before it (see csv_records), found by chaining the chunks'
    summaries. JSON Lines ranges start at the first line start in them; other files are read whole.
    """

    def __init__(self, kind: str, range_bytes: int = RANGE_BYTES):
        super().__init__()
        self._kind = kind
        self._range_bytes = range_bytes

    def expand(self, files: beam.PCollection) -> beam.PCollection:
        chunks, ready = files | "Chunk" >> beam.ParDo(_ChunkCsvFiles(self._kind, self._range_bytes)).with_outputs(
            _ChunkCsvFiles.READY, main="chunks"
        )
        anchored = (
            chunks
            | "SpreadChunks" >> beam.Reshuffle()
            | "Summarize" >> beam.Map(_summarize)
            | "ByFile" >> beam.GroupByKey()
            | "Anchor" >> beam.FlatMap(_anchored_ranges)
        )
        return (ready, anchored) | "Ranges" >> beam.Flatten()


class FileRanges(beam.transforms.core.RestrictionProvider):
    """The byte range an element names; a JSON Lines range split further into ranges of `range_bytes`."""

    def __init__(self, range_bytes: int = RANGE_BYTES):
        self._range_bytes = range_bytes

    def initial_restriction(self, element: tuple[FileMetadata, OffsetRange]) -> OffsetRange:
        return element[1]

    def split(self, element, restriction: OffsetRange) -> Iterator[OffsetRange]:
        if type(restriction) is OffsetRange:
            yield from restriction.split(self._range_bytes, self._range_bytes // 4)
        else:
            yield restriction

    def create_tracker(self, restriction: OffsetRange):
        tracker = OffsetRestrictionTracker(restriction)
        return UnsplittableRestrictionTracker(tracker) if isinstance(restriction, _WholeFile) else tracker

    def restriction_size(self, element, restriction: OffsetRange) -> int:
        return restriction.size()


def _first_record(path: str) -> bytes | BrokenCsvRecord:
    with open_input(path) as stream:
        return next(csv_records(stream), (0, b""))[1]


def csv_header(path: str) -> tuple[str, ...]:
    """A CSV file's header: the fields of its first record (empty for an empty file)."""
    first = _first_record(path)
    if isinstance(first, BrokenCsvRecord):
        raise RecordError(f"its header is broken: {first.message()}")
    return tuple(csv_fields(first))


class ReadFileRanges(beam.DoFn, FileRanges):
    """(file name, [raw record, ...]) for the records starting in a range of a matched file, and dead letters.

    Records go out in batches of at most `batch_size`, each batch one element: Beam's cost per element (and
    the batching step the parser would otherwise need) is paid once per batch. A batch holds only records
    whose start this range claimed; when a claim fails (the range was split while it ran), the records
    claimed so far go out and the range ends there.

    An unreadable rest of a file (corrupt, truncated) is one `read` dead letter and counts as one record
    read; so is a file whose records are not read at all: named as another format than the input's, or
    a CSV file whose header differs from the input's.
    """

    def __init__(
        self,
        kind: str,
        header: tuple[str, ...] = (),
        header_file: str = "",
        names_format: bool = False,
        range_bytes: int = RANGE_BYTES,
        progress: ProgressCounts | None = None,
        batch_size: int = 512,
    ):
        beam.DoFn.__init__(self)
        FileRanges.__init__(self, range_bytes)  # this DoFn is its own restriction provider
        self._kind = kind
        self._header = header
        self._header_file = header_file
        self._names_format = names_format
        self._batch_size = batch_size
        self._records_read = counters.Count(counters.RECORDS_READ, progress)
        self._ranges_read = counters.counter(counters.INPUT_RANGES)
        self._bytes_read = counters.Count(BYTES_READ, progress)

    def process(self, element: tuple[FileMetadata, OffsetRange], tracker=beam.DoFn.RestrictionParam()) -> Iterable:
        file = element[0]
        restriction = tracker.current_restriction()
        if restriction.start == restriction.stop:
            return
        self._ranges_read.inc()
        refusal = self._refusal(file.path)
        if refusal is not None or isinstance(restriction, _WholeFile):
            tracker.try_claim(restriction.start)
            if refusal is None:
                yield from self._read_whole(file.path)
            elif restriction.start == 0:
                yield self._dead_letter(READ_STAGE, refusal, file.path)
            self._bytes_read.inc(restriction.size())
        else:
            yield from self._read_range(file.path, restriction, tracker)
        tracker.try_claim(file.size_in_bytes)  # past every record start: the range holds nothing more

    def _read_whole(self, path: str) -> Iterator:
        try:
            with open_input(path) as stream:
                if self._kind == "tfrecord":
                    records = tfrecords(stream)
                else:
                    records = (record for offset, record in self._records(stream, 0) if offset or self._kind != "csv")
                yield from self._batches(path, records)
        except (UnreadableFile, OSError) as error:
            yield self._unreadable(path, error)

    def _read_range(self, path: str, restriction: OffsetRange, tracker) -> Iterator:
        claimed = restriction.start - 1

        def claimed_records(stream: BinaryIO) -> Iterator[bytes | BrokenCsvRecord]:
            nonlocal claimed
            for offset, record in self._text(stream, restriction):
                if not tracker.try_claim(offset):
                    return
                self._bytes_read.inc(offset - max(claimed, restriction.start))
                claimed = offset
                if offset or self._kind != "csv":  # a CSV file's header is compared, not read
                    yield record

        try:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
                yield from self._batches(path, claimed_records(stream))
        except (UnreadableFile, OSError) as error:
            if tracker.try_claim(max(getattr(error, "offset", 0), claimed + 1)):  # else the next range has it
                yield self._unreadable(path, error)

    def _batches(self, path: str, records: Iterable[bytes | BrokenCsvRecord]) -> Iterator:
        """(path, [record, ...]) batches of `records`, and a dead letter for each broken CSV record among them.

        When reading fails, the batch read before the damage goes out before the error is raised again.
        """
        batch: list[bytes] = []
        try:
            for record in records:
                if isinstance(record, BrokenCsvRecord):
                    yield self._dead_letter(PARSE_STAGE, RecordError(record.message()), path, record.raw)
                    continue
                batch.append(record)
                if len(batch) == self._batch_size:
                    yield path, batch
                    batch = []
        except (UnreadableFile, OSError):
            if batch:
                yield path, batch
            raise
        if batch:
            yield path, batch

    def _text(self, stream: BinaryIO, restriction: OffsetRange) -> Iterator[tuple[int, bytes | BrokenCsvRecord]]:
        """(offset, record) from the first record starting in the range of a text file."""
        start = restriction.start
        if isinstance(restriction, _CsvRange) and start != restriction.anchor:
            start = first_start_at_or_after(stream, restriction.anchor, start)
        elif self._kind == "jsonl" and start:
            stream.seek(start - 1)
            start = start - 1 + len(read_line(stream, start - 1))  # the first line starting in the range
        stream.seek(start)
        return self._records(stream, start)

    def _records(self, stream: BinaryIO, start: int) -> Iterator[tuple[int, bytes | BrokenCsvRecord]]:
        return csv_records(stream, start) if self._kind == "csv" else lines(stream, start)

    def _unreadable(self, path: str, error: Exception):
        where = f"past byte {error.offset}" if isinstance(error, UnreadableFile) else "at all"
        message = f"{path} cannot be read {where}: {error}; the rest of the file was skipped"
        return self._dead_letter(READ_STAGE, ValueError(message), path)

    def _refusal(self, path: str) -> Exception | None:
        """Why a file is not read at all: a name of another format, or a CSV header unlike the input's."""
        named = format_of(path)
        if self._names_format and named not in (None, self._kind):
            return ValueError(f"{path} is named as a {named} file, but --input is read as {self._kind}")
        if self._kind != "csv":
            return None
        try:
            header = csv_header(path)
        except (UnreadableFile, RecordError, OSError) as error:
            return ValueError(f"CSV file {path} has no readable header: {error}")
        if header and header != self._header:
            return ValueError(
                f"CSV file {path} has header {','.join(header)} but {self._header_file} has "
                f"{','.join(self._header)}; every file of --input must share one header, so its records were not read"
            )
        return None

    def _dead_letter(self, stage: str, error: Exception, path: str, raw: bytes = b""):
        self._records_read.inc()  # counted here: it never reaches the parser
        return beam.pvalue.TaggedOutput(DEAD_LETTERS, dead_letter(stage, error, raw, path))
