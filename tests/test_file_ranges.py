"""Files read in byte ranges: every range starts at a true record, and ranges give what one whole read gives."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import apache_beam as beam
import pytest
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
    _CsvRange,
    _summarize,
    _WholeFile,
    ranges_offered,
)
from transforms.reading.file_records import lines
from transforms.reading.sources import ReadRecords, plan_input
from transforms.records.parsing import csv_fields, parse_record

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


def ranged_read(tmp_path: Path, pattern: str, range_bytes: int, *options: str) -> tuple[list[str], int, int]:
    """What ReadRecords parses from byte ranges of `range_bytes`: the records, the ranges read, the dead letters."""
    config = inference_config(pattern)
    out = tmp_path / "out"
    pipeline = beam.Pipeline(options=PipelineOptions(list(options)))
    records, dead_letters = pipeline | ReadRecords(plan_input(config), config, range_bytes)
    _ = (
        records
        | "Records" >> beam.FlatMap(lambda batch: [json.dumps([record.key, record.features]) for record in batch])
        | "WriteRecords" >> beam.io.WriteToText(str(out / "records"))
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
    return got, sum(c.committed for c in ranges), len(letters)


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_small_ranges_with_quoted_line_breaks_at_every_boundary_give_the_whole_reads_records(tmp_path, kind):
    path = tmp_path / f"input.{kind}"
    write_records(path, kind, 600_000, boundaries=16 << 10)
    got, ranges, letters = ranged_read(tmp_path, str(path), 16 << 10)
    assert got == whole_read(path, kind, inference_config(str(path)))
    assert ranges >= 30 and letters == 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_file_of_hundreds_of_mb_is_read_as_several_ranges_by_two_workers(tmp_path, kind):
    """Default 64 MiB ranges, two worker processes: exactly the rows of one reader from byte 0."""
    path = tmp_path / f"large.{kind}"
    write_records(path, kind, 200 << 20, boundaries=64 << 20)
    options = ("--direct_num_workers=2", "--direct_running_mode=multi_processing")
    got, ranges, letters = ranged_read(tmp_path, str(path), 64 << 20, *options)
    assert ranges >= 3, "200 MiB in ranges of 64 MiB (a last short one may join the one before)"
    assert got == whole_read(path, kind, inference_config(str(path)))
    assert letters == 0


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


def test_a_gigabyte_of_text_is_offered_as_sixteen_ranges_and_a_compressed_file_as_one():
    assert ranges_offered("big.csv", 1 << 30, "csv") == 16
    assert ranges_offered("big.jsonl", 1 << 30, "jsonl") == 16
    assert ranges_offered("big.csv.gz", 1 << 30, "csv") == 1
    assert ranges_offered("big.tfrecord", 1 << 30, "tfrecord") == 1
    assert ranges_offered("small.csv", 1000, "csv") == 1


def test_a_file_that_cannot_be_summarised_is_read_whole_by_one_reader(tmp_path):
    """Gone between the match and the summaries: one range, whose reader then says what is wrong."""
    missing = str(tmp_path / "gone.csv")
    chunks = [(_Chunk(missing, 300, i, 100 * i, 100 * (i + 1)), None) for i in range(3)]
    assert _anchored_ranges((missing, chunks)) == [(FileMetadata(missing, 300), _CsvRange(0, 300, 0))]
    assert _summarize(chunks[1][0]) == (missing, (chunks[1][0], None))
