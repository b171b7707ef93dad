"""Records travel in batches, and a bad record still costs only itself at every stage: parse, encode, write."""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from transforms import counters
from transforms.config import config_from_args
from transforms.dead_letters import DeadLetter
from transforms.inference.batches import Batch
from transforms.inference.patterns import ENCODE_STAGE, RecordExamples, batched, encode
from transforms.parameters import build_parser
from transforms.reading.sources import ReadRecords, file_batch, parse, plan_input
from transforms.records.examples import decode_example, encode_example
from transforms.records.parsing import Record
from transforms.writing.sinks import write_results


def batch_config(tmp_path: Path, *extra: str):
    args = ["--pattern=postprocess", "--model_uris=m", "--input=in.jsonl", f"--output={tmp_path / 'out'}", *extra]
    return config_from_args(build_parser().parse_args(args))


def letter_fields(letter: DeadLetter) -> tuple:
    return letter.stage, letter.error, letter.message, letter.raw, letter.source, letter.key


def test_bad_json_lines_in_a_batch_are_one_dead_letter_each_and_the_rest_stay_batched(tmp_path):
    config = batch_config(tmp_path)
    lines = [b'{"key": "k%d", "x": %d}' % (i, i) for i in range(10)]
    lines[2] = b'{"key": "k2", "x": '
    lines[7] = b'{"key": "k7", "x": "seven"}'
    with beam.Pipeline() as pipeline:
        # Batches of four as the file reader emits them: (file name, [raw record, ...]).
        file_batches = [("in.jsonl", lines[start : start + 4]) for start in (0, 4, 8)]
        raw = pipeline | beam.Create(file_batches, reshuffle=False)
        batches, dead_letters = parse(raw, file_batch, "jsonl", config)
        sizes = batches | "Sizes" >> beam.Map(len)
        assert_that(sizes, equal_to([3, 3, 2]), label="BatchesOfFourLessTheirBadRecords")
        records = batches | beam.FlatMap(lambda batch: [(r.key, r.features["x"], r.raw) for r in batch])
        good = [(f"k{i}", float(i), lines[i]) for i in range(10) if i not in (2, 7)]
        assert_that(records, equal_to(good), label="GoodRecords")
        assert_that(
            dead_letters | beam.Map(letter_fields),
            equal_to(
                [
                    (
                        "parse",
                        "RecordError",
                        "line is not valid JSON: Expecting value: line 1 column 20 (char 19)",
                        lines[2],
                        "in.jsonl",
                        None,
                    ),
                    (
                        "parse",
                        "RecordError",
                        "feature 'x' should be a number (float feature), got \"seven\"",
                        lines[7],
                        "in.jsonl",
                        "k7",
                    ),
                ]
            ),
            label="OneDeadLetterEach",
        )


def test_a_tfrecord_batch_with_garbage_inside_is_split_and_only_the_garbage_is_dead(tmp_path):
    config = batch_config(tmp_path)
    raws = [encode_example({"key": f"k{i}", "x": float(i)}) for i in range(8)]
    raws[5] = b"\x00 not an Example"
    with beam.Pipeline() as pipeline:
        raw = pipeline | beam.Create([("in.tfrecord", raws)], reshuffle=False)
        batches, dead_letters = parse(raw, file_batch, "tfrecord", config)
        records = batches | beam.FlatMap(
            lambda batch: [(r.key, r.features, decode_example(r.model_input)) for r in batch]
        )
        good = [(f"k{i}", {"x": float(i)}, {"x": float(i)}) for i in range(8) if i != 5]
        assert_that(records, equal_to(good), label="GoodRecords")
        assert_that(
            dead_letters | beam.Map(lambda letter: (letter.stage, letter.raw)),
            equal_to([("parse", raws[5])]),
            label="OneDeadLetter",
        )


class _ExamplesOrFail(RecordExamples):
    """Each record's Example, or a ValueError for a negative x: a record whose input cannot be built."""

    def one(self, batch: Batch, position: int) -> bytes:
        x = batch.records[position].features["x"]
        if x < 0:
            raise ValueError(f"x is negative: {x}")
        return super().one(batch, position)

    def batch(self, batch: Batch) -> list[bytes]:
        return [self.one(batch, position) for position in range(len(batch))]


def _keyed_examples(feed) -> list[tuple]:
    return [
        (record.key, decode_example(example)["x"])
        for record, example in zip(feed.batch.records, feed.inputs, strict=True)
    ]


def test_a_record_that_cannot_be_encoded_costs_only_itself():
    records = [Record(f"id{i}", f"k{i}", {"x": float(i if i != 3 else -1)}, b"raw%d" % i, "src") for i in range(6)]
    with beam.Pipeline() as pipeline:
        batches = pipeline | beam.Create([records[:4], records[4:]]) | beam.Map(batched)
        feeds, dead_letters = encode(batches, "Encode", ENCODE_STAGE, _ExamplesOrFail())
        assert_that(
            feeds | beam.FlatMap(_keyed_examples),
            equal_to([(f"k{i}", float(i)) for i in range(6) if i != 3]),
            label="Encoded",
        )
        assert_that(
            dead_letters | beam.Map(letter_fields),
            equal_to([("encode", "ValueError", "x is negative: -1.0", b"raw3", "src", "k3")]),
            label="OneDeadLetter",
        )


def test_a_batch_of_rows_is_written_as_one_line_per_record_and_counted_once_each(tmp_path):
    config = batch_config(tmp_path)
    batches = [
        Batch([Record(f"id{i}", f"k{i}", {"x": float(i)}, b"", "src") for i in range(start, start + 3)])
        for start in (0, 3, 6)
    ]
    pipeline = beam.Pipeline()
    _ = pipeline | beam.Create(batches) | write_results(config)
    result = pipeline.run()
    result.wait_until_finish()
    lines = [line for path in tmp_path.glob("out*") for line in path.read_text().splitlines()]
    assert sorted(json.loads(line)["key"] for line in lines) == [f"k{i}" for i in range(9)]
    written = result.metrics().query(beam.metrics.MetricsFilter().with_name(counters.ROWS_WRITTEN))["counters"]
    assert sum(c.committed for c in written) == 9


def test_a_row_that_cannot_be_encoded_is_one_dead_letter_and_its_batch_mates_are_written(tmp_path):
    config = batch_config(tmp_path)
    records = [Record(f"id{i}", f"k{i}", {"x": float(i)}, b"raw%d" % i, "src") for i in range(3)]
    records[1] = Record("id1", "k1", {"x": "\ud800"}, b"raw1", "src")  # a lone surrogate: no JSON holds it
    pipeline = beam.Pipeline()
    letters = pipeline | beam.Create([Batch(records)]) | write_results(config)
    assert_that(
        letters | beam.Map(lambda letter: (letter.stage, letter.raw, letter.key)),
        equal_to([("postprocess", b"raw1", "k1")]),
    )
    result = pipeline.run()
    result.wait_until_finish()
    lines = [line for path in tmp_path.glob("out*") for line in path.read_text().splitlines()]
    assert sorted(json.loads(line)["key"] for line in lines) == ["k0", "k2"]
    written = result.metrics().query(beam.metrics.MetricsFilter().with_name(counters.ROWS_WRITTEN))["counters"]
    assert sum(c.committed for c in written) == 2


def test_the_file_reader_emits_batches_of_max_batch_size_and_a_bad_record_costs_only_itself(tmp_path):
    path = tmp_path / "in.jsonl"
    lines = [b'{"key": "k%d", "x": %d}' % (i, i) for i in range(10)]
    lines[5] = b"not JSON"
    path.write_bytes(b"\n".join(lines) + b"\n")
    config = batch_config(tmp_path, f"--input={path}", "--max_batch_size=4")
    with beam.Pipeline() as pipeline:
        batches, dead_letters = pipeline | ReadRecords(plan_input(config), config)
        assert_that(batches | "Sizes" >> beam.Map(len), equal_to([4, 3, 2]), label="ReadInFoursLessTheBadOne")
        assert_that(
            dead_letters | beam.Map(lambda letter: (letter.stage, letter.raw, letter.source)),
            equal_to([("parse", b"not JSON", str(path))]),
            label="OneDeadLetter",
        )
