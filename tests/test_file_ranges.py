"""Files read in byte ranges: every range starts at a true record, and ranges give what one whole read gives."""

from __future__ import annotations

import gzip
import json
import os
import random
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.options.pipeline_options import PipelineOptions

from transforms import counters
from transforms.config import config_from_args
from transforms.parameters import build_parser
from transforms.reading.csv_records import csv_records
from transforms.reading.file_ranges import (
    ReadFileRanges,
    _anchored_ranges,
    _Chunk,
    _ChunkCsvFiles,
    _CsvRange,
    _summarize,
    _WholeFile,
    csv_header,
    ranges_offered,
)
from transforms.reading.file_records import lines
from transforms.reading.sources import ReadRecords, plan_input
from transforms.records.parsing import RecordError, csv_fields, parse_record

NOTE_WITH_BREAKS = 'two\nlines, a "quote"\r\nand a closing break\n'


def inference_config(pattern: str):
    args = ["--pattern=keyed", "--model_uris=m", f"--input={pattern}", "--output=o", "--feature_types=note:bytes"]
    return config_from_args(build_parser().parse_args(args))


def write_records(path: Path, kind: str, size: int, boundaries: int, seed: int = 7) -> None:
    """About `size` bytes of records; a note with quoted line breaks crosses every multiple of `boundaries`."""
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        written = f.write("key,x,note\n") if kind == "csv" else 0
        i = 0
        while written < size:
            near = (written + 300) // boundaries != written // boundaries
            note = NOTE_WITH_BREAKS * rng.randint(1, 6) if near or rng.random() < 0.1 else "plain " * rng.randint(1, 60)
            if kind == "csv":
                line = f'k{i},{i % 97},"{note.replace(chr(34), chr(34) * 2)}"\n'
            else:
                line = json.dumps({"key": f"k{i}", "x": i % 97, "note": note}) + "\n"
            written += len(line.encode())
            f.write(line)
            i += 1


def whole_read(path: Path, kind: str, config) -> list[str]:
    """What one reader from byte 0 parses, without Beam."""
    header = ()
    with open(path, "rb") as stream:
        records = [record for _, record in (csv_records(stream) if kind == "csv" else lines(stream))]
    if kind == "csv":
        header, records = tuple(csv_fields(records[0])), records[1:]
    return sorted(
        json.dumps(parse_record(kind, r, config.key_field, config.feature_types, header)[:2]) for r in records
    )


class RangedRead(NamedTuple):
    """What ReadRecords parsed from byte ranges, and who read it: the process id of each reader, with its count."""

    records: list[str]
    ranges: int
    dead_letters: int
    records_by_reader: Counter


def ranged_read(tmp_path: Path, pattern: str, range_bytes: int, *options: str) -> RangedRead:
    """What ReadRecords parses from byte ranges of `range_bytes`: the records, the ranges read, the dead letters,
    and how many records each worker process read (the count is taken in the read's own fused stage)."""
    config = inference_config(pattern)
    out = tmp_path / "out"
    pipeline = beam.Pipeline(options=PipelineOptions(list(options)))
    records, dead_letters = pipeline | ReadRecords(plan_input(config), config, range_bytes)
    _ = (
        records
        | "Records" >> beam.FlatMap(lambda batch: [json.dumps([record.key, dict(record.features)]) for record in batch])
        | "WriteRecords" >> beam.io.WriteToText(str(out / "records"))
    )
    _ = (
        records
        | "Readers" >> beam.Map(lambda batch: f"{os.getpid()} {len(batch)}")
        | "WriteReaders" >> beam.io.WriteToText(str(out / "readers"))
    )
    _ = (
        dead_letters
        | "Messages" >> beam.Map(lambda letter: letter.message)
        | "WriteDeadLetters" >> beam.io.WriteToText(str(out / "dead_letters"))
    )
    result = pipeline.run()
    result.wait_until_finish()
    ranges = result.metrics().query(beam.metrics.MetricsFilter().with_name(counters.INPUT_RANGES))["counters"]
    got = sorted(line for path in out.glob("records*") for line in path.read_text().splitlines())
    letters = [line for path in out.glob("dead_letters*") for line in path.read_text().splitlines()]
    readers = Counter()
    for path in out.glob("readers*"):
        for line in path.read_text().splitlines():
            pid, count = line.split()
            readers[int(pid)] += int(count)
    return RangedRead(got, sum(c.committed for c in ranges), len(letters), readers)


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_small_ranges_with_quoted_line_breaks_at_every_boundary_give_the_whole_reads_records(tmp_path, kind):
    path = tmp_path / f"input.{kind}"
    write_records(path, kind, 600_000, boundaries=16 << 10)
    read = ranged_read(tmp_path, str(path), 16 << 10)
    assert read.records == whole_read(path, kind, inference_config(str(path)))
    assert read.ranges >= 30 and read.dead_letters == 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_file_of_hundreds_of_mb_is_read_as_several_ranges_by_two_workers(tmp_path, kind):
    """Default 64 MiB ranges, two worker processes: exactly the rows of one reader from byte 0, and both read."""
    path = tmp_path / f"large.{kind}"
    write_records(path, kind, 200 << 20, boundaries=64 << 20)
    options = ("--direct_num_workers=2", "--direct_running_mode=multi_processing")
    read = ranged_read(tmp_path, str(path), 64 << 20, *options)
    assert read.ranges >= 3, "200 MiB in ranges of 64 MiB (a last short one may join the one before)"
    assert read.records == whole_read(path, kind, inference_config(str(path)))
    assert read.dead_letters == 0
    readers = read.records_by_reader
    assert len(readers) == 2 and os.getpid() not in readers, f"two worker processes read records: {readers}"
    assert sum(readers.values()) == len(read.records)


def test_a_range_split_while_it_runs_hands_on_exactly_the_records_it_did_not_read(tmp_path):
    """Dynamic work rebalancing: the running range stops at the split, the rest starts at the next true record.

    Records go out in batches: the batch being gathered when the split comes holds only records claimed
    before it, and goes out when the range ends.
    """
    path = tmp_path / "input.csv"
    write_records(path, "csv", 200_000, boundaries=1 << 10)
    size = path.stat().st_size
    read = ReadFileRanges("csv", ("key", "x", "note"), str(path), batch_size=7)
    element = (FileMetadata(str(path), size), _CsvRange(0, size, 0))
    tracker = OffsetRestrictionTracker(_CsvRange(0, size, 0))
    first, residual = [], None
    for filename, batch in read.process(element, tracker):
        assert filename == str(path) and 0 < len(batch) <= 7
        first += batch
        if len(first) == 49:
            _, residual = tracker.try_split(0.5)
            assert isinstance(residual, _CsvRange) and residual.anchor == 0
    rest = [record for _, batch in read.process(element, OffsetRestrictionTracker(residual)) for record in batch]
    with open(path, "rb") as stream:
        whole = [record for offset, record in csv_records(stream) if offset]
    assert len(first) > 49 and rest and first + rest == whole


def test_every_line_of_a_json_lines_file_belongs_to_exactly_one_range(tmp_path):
    path = tmp_path / "input.jsonl"
    path.write_bytes(b"".join(b'{"key": "k%d", "x": %d}\n' % (i, i) for i in range(500)) + b'{"key": "last", "x": 1}')
    size = path.stat().st_size
    read = ReadFileRanges("jsonl", batch_size=4)
    file = FileMetadata(str(path), size)
    got = []
    for start in range(0, size, 333):
        restriction = OffsetRange(start, min(start + 333, size))
        for _, batch in read.process((file, restriction), OffsetRestrictionTracker(restriction)):
            assert 0 < len(batch) <= 4
            got += batch
    assert got == path.read_bytes().splitlines()


def test_a_damaged_file_gives_the_batches_read_before_the_damage_then_one_read_dead_letter(tmp_path):
    """The batch being gathered when the damage is found is not lost: it goes out before the dead letter."""
    path = tmp_path / "input.jsonl.gz"
    whole = gzip.compress(b"".join(b'{"key": "k%d", "x": %d}\n' % (i, i) for i in range(1000)))
    path.write_bytes(whole[: len(whole) - 20])  # cut: the end-of-stream marker and the last lines are gone
    size = path.stat().st_size
    read = ReadFileRanges("jsonl", batch_size=64)
    outputs = list(
        read.process(
            (FileMetadata(str(path), size), _WholeFile(0, size)), OffsetRestrictionTracker(_WholeFile(0, size))
        )
    )
    *batches, letter = outputs
    records = [record for _, batch in batches for record in batch]
    assert 900 < len(records) < 1000
    assert records == [b'{"key": "k%d", "x": %d}' % (i, i) for i in range(len(records))]
    assert letter.tag == "dead_letters" and letter.value.stage == "read"
    assert "cannot be read past byte" in letter.value.message


def test_a_file_named_as_another_format_than_the_names_gave_is_one_read_dead_letter(tmp_path):
    """Past the first page of a listing, which the launch checks, a file may be named otherwise."""
    path = tmp_path / "late.jsonl"
    path.write_text('{"key": "k", "x": 1}\n')
    size = path.stat().st_size
    read = ReadFileRanges("csv", ("key", "x"), str(tmp_path / "first.csv"), names_format=True)
    (letter,) = read.process(
        (FileMetadata(str(path), size), _CsvRange(0, size, 0)), OffsetRestrictionTracker(_CsvRange(0, size, 0))
    )
    assert letter.tag == "dead_letters" and letter.value.stage == "read"
    assert "late.jsonl is named as a jsonl file, but --input is read as csv" in letter.value.message


def read_whole(path: Path, kind: str, header: tuple[str, ...] = (), size: int | None = None) -> list:
    """What ReadFileRanges gives for a file read whole (compressed, or TFRecords), matched at `size` bytes."""
    size = path.stat().st_size if size is None else size
    read = ReadFileRanges(kind, header, "first.csv", batch_size=2)
    return list(
        read.process(
            (FileMetadata(str(path), size), _WholeFile(0, size)), OffsetRestrictionTracker(_WholeFile(0, size))
        )
    )


def test_a_whole_file_gives_its_records_in_batches_without_a_csv_header(tmp_path):
    records = [b"\x00 one", b"two", b"three"]
    with tf.io.TFRecordWriter(str(tmp_path / "in.tfrecord")) as writer:
        for record in records:
            writer.write(record)
    assert read_whole(tmp_path / "in.tfrecord", "tfrecord") == [
        (str(tmp_path / "in.tfrecord"), records[:2]),
        (str(tmp_path / "in.tfrecord"), records[2:]),
    ]
    path = tmp_path / "in.csv.gz"
    path.write_bytes(gzip.compress(b"key,x\nk1,1\nk2,2\n"))
    assert read_whole(path, "csv", ("key", "x")) == [(str(path), [b"k1,1", b"k2,2"])]


def test_a_file_gone_before_it_is_read_is_one_read_dead_letter_naming_it(tmp_path):
    path = tmp_path / "gone.jsonl.gz"
    (letter,) = read_whole(path, "jsonl", size=100)  # matched at 100 bytes, deleted since
    assert letter.tag == "dead_letters"
    assert (letter.value.stage, letter.value.source, letter.value.raw) == ("read", str(path), b"")
    assert letter.value.message.startswith(f"{path} cannot be read at all: ")
    assert letter.value.message.endswith("; the rest of the file was skipped")


def test_a_gigabyte_of_text_is_offered_as_sixteen_ranges_and_a_compressed_file_as_one():
    assert ranges_offered("two.csv", 65 << 20, "csv") == 2
    assert ranges_offered("big.csv", 1 << 30, "csv") == 16
    assert ranges_offered("big.jsonl", 1 << 30, "jsonl") == 16
    assert ranges_offered("big.csv.gz", 1 << 30, "csv") == 1
    assert ranges_offered("big.tfrecord", 1 << 30, "tfrecord") == 1
    assert ranges_offered("small.csv", 1000, "csv") == 1


def test_a_csv_file_in_chunks_is_read_in_ranges_from_each_chunks_first_true_record(tmp_path):
    """Chunks of 10 bytes; the lines `b"` (byte 19) and `e"` (byte 43) start inside quoted fields: no range starts
    there."""
    path = tmp_path / "input.csv"
    path.write_bytes(b'key,x,note\nk1,1,"a\nb"\nk2,2,plain\nk3,3,"c\nd\ne"\n')  # records at 0, 11, 22 and 33; 46 bytes
    file = FileMetadata(str(path), 46)
    chunks = list(_ChunkCsvFiles("csv", 10).process(file))
    assert chunks == [_Chunk(str(path), 46, i, start, min(start + 10, 46)) for i, start in enumerate(range(0, 46, 10))]
    summaries = [_summarize(chunk) for chunk in reversed(chunks)]  # grouped by file, in no particular order
    assert {name for name, _ in summaries} == {str(path)}
    ranges = [(0, 11), (11, 22), (22, 33), (33, 46)]  # the last chunk holds no record start: no range
    got = _anchored_ranges((str(path), [pair for _, pair in summaries]))
    # Compared field by field: an OffsetRange's equality leaves out the anchor.
    assert [(f, type(r), r.start, r.stop, r.anchor) for f, r in got] == [(file, _CsvRange, a, b, a) for a, b in ranges]


def test_a_csv_header_is_its_first_record_none_for_an_empty_file_and_a_broken_one_is_refused(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    assert csv_header(str(tmp_path / "empty.csv")) == ()
    (tmp_path / "keys.csv").write_bytes(b'key,"x\ny"\nk1,1\n')
    assert csv_header(str(tmp_path / "keys.csv")) == ("key", "x\ny")
    (tmp_path / "broken.csv").write_bytes(b'key,"x\nk1,1\n')
    with pytest.raises(RecordError) as broken:
        csv_header(str(tmp_path / "broken.csv"))
    assert str(broken.value) == (
        "its header is broken: CSV record starting at byte 0 has a quoted field that is never closed before the end "
        "of the file"
    )


def test_a_csv_range_split_keeps_its_anchor_on_both_sides():
    first, second = _CsvRange(100, 500, 40).split_at(300)
    assert [(r.start, r.stop, r.anchor) for r in (first, second)] == [(100, 300, 40), (300, 500, 40)]


def test_a_file_that_cannot_be_summarised_is_read_whole_by_one_reader(tmp_path):
    """Gone between the match and the summaries: one range, whose reader then says what is wrong."""
    missing = str(tmp_path / "gone.csv")
    chunks = [(_Chunk(missing, 300, i, 100 * i, 100 * (i + 1)), None) for i in range(3)]
    ((file, whole),) = _anchored_ranges((missing, chunks))
    assert (file, type(whole), whole.start, whole.stop, whole.anchor) == (
        FileMetadata(missing, 300),
        _CsvRange,
        0,
        300,
        0,
    )
    assert _summarize(chunks[1][0]) == (missing, (chunks[1][0], None))
