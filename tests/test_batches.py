"""Records travel in batches, and a bad record still costs only itself at every stage: parse, encode, write."""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.testing.util import assert_that, equal_to

from transforms import counters
from transforms.config import config_from_args
from transforms.dead_letters import DeadLetter
from transforms.inference.batches import Batch, ModelOutputs, joined
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


def test_a_models_outputs_are_taken_by_position_with_their_logs():
    outputs = ModelOutputs("m", "2", {"y": np.array([[0.0], [5.0], [10.0]])}, (b"log0", b"log1", b"log2"))
    taken = outputs.take([2, 0])
    assert (taken.model, taken.version, taken.logs) == ("m", "2", (b"log2", b"log0"))
    assert taken.arrays["y"].tolist() == [[10.0], [0.0]]
    none = outputs.take([])  # every record of the batch failed
    assert none.logs == () and none.arrays["y"].shape == (0, 1)
    assert ModelOutputs("m", None, {"y": np.array([1, 2])}).take([1]).logs is None


def test_answers_for_a_batchs_parts_join_in_order():
    first = ModelOutputs("m", "2", {"y": np.array([1.0, 2.0]), "c": np.array([b"a", b"b"])}, (b"log1", b"log2"))
    second = ModelOutputs("m", "2", {"y": np.array([3.0]), "c": np.array([b"c"])}, (b"log3",))
    whole = joined([first, second])
    assert (whole.model, whole.version, whole.logs) == ("m", "2", (b"log1", b"log2", b"log3"))
    assert {alias: values.tolist() for alias, values in whole.arrays.items()} == {
        "y": [1.0, 2.0, 3.0],
        "c": [b"a", b"b", b"c"],
    }
    assert joined([first]) is first and joined([]) is None
    assert joined([first._replace(logs=None), second._replace(logs=None)]).logs is None


def test_a_batch_gains_outputs_and_examples_and_equals_a_batch_of_the_same_values():
    records = [Record(f"id{i}", f"k{i}", {"x": float(i)}, b"", "src") for i in range(2)]
    m5 = ModelOutputs("m5", None, {"y": np.array([0.0, 5.0])})
    m10 = ModelOutputs("m10", "3", {"y": np.array([0.0, 50.0])}, (b"log0", b"log1"))
    batch = Batch(records, (m5,), [b"e0", b"e1"])
    answered = batch.answered(m10)
    assert answered.records is records and answered.outputs == (m5, m10) and answered.examples == [b"e0", b"e1"]
    examples = Batch(records, (m5,)).with_examples([b"x0", b"x1"])
    assert examples.records is records and examples.outputs == (m5,) and examples.examples == [b"x0", b"x1"]
    same = Batch(list(records), (m5._replace(arrays={"y": np.array([0.0, 5.0])}),), [b"e0", b"e1"])
    assert batch == same
    assert batch != Batch(records, (m5._replace(arrays={"y": np.array([0.0, 6.0])}),), [b"e0", b"e1"])
    assert batch != Batch(records, (m5._replace(version="1"),), [b"e0", b"e1"])
    assert batch != Batch(records, (m5,), [b"e0", b"e2"])
    assert batch != Batch(records[:1], (m5,), [b"e0", b"e1"])
    assert answered != Batch(records, (m5, m10._replace(logs=(b"log0", b"other"))), [b"e0", b"e1"])
    assert batch != records


def test_a_batch_taken_by_position_keeps_each_records_example():
    records = [Record(f"id{i}", f"k{i}", {"x": float(i)}, b"", "src") for i in range(3)]
    taken = Batch(records, (), [b"e0", b"e1", b"e2"]).take([2, 0])
    assert (taken.records, taken.examples) == ([records[2], records[0]], [b"e2", b"e0"])
    assert Batch(records).take([1]).examples is None
