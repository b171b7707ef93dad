"""A bad record costs only itself at every stage, inside full batches: main.py run as a user runs it on 1,500
records with bad ones at known places in its batches of --max_batch_size (first of a batch, last, first of the
next, two adjacent, the very last record) gives one dead letter per bad record, with its stage, key, raw input and
what was wrong, one row per good record with the models' right answers, and counts that reconcile.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from test_end_to_end import read_prediction_logs
from test_patterns import export_exact_multipliers, export_strict_models

from tools.demo import WEATHER, delivery_minutes
from transforms.parameters import build_parser

pytestmark = pytest.mark.slow

BATCH = 512  # --max_batch_size's default: the largest batch the file reader and RunInference form
RECORDS = 1500  # three batches: 512, 512 and 476
# First of the first batch, two adjacent mid-batch, the last of a batch and the first of the next, mid-batch,
# the last of the second batch, and the last record read (the end of the short third batch).
BAD_POSITIONS = (0, 300, 301, BATCH - 1, BATCH, BATCH + 200, 2 * BATCH - 1, RECORDS - 1)
# The models of each pattern, in order, and the factor each multiplies what it is fed by.
MULTIPLIERS = {
    "predict": (("multiply_by_5", 5),),
    "postprocess": (("multiply_by_5", 5),),
    "keyed": (("multiply_by_5", 5),),
    "multi_parallel": (("multiply_by_5", 5), ("multiply_by_10", 10)),
    "multi_sequence": (("multiply_by_5", 5), ("multiply_by_10", 10)),
}
PATTERNS = tuple(MULTIPLIERS)


@pytest.fixture(scope="module")
def strict_models(tmp_path_factory) -> dict[str, str]:
    """tests/test_patterns.py's models: x10 that fails on x >= 1000, and two that cannot chain for x >= 512."""
    return export_strict_models(tmp_path_factory.mktemp("splitting_models"))


@pytest.fixture(scope="module")
def exact_models(tmp_path_factory) -> dict[str, str]:
    """tests/test_patterns.py's x5 and x10 that answer exactly, named as the demo's."""
    return export_exact_multipliers(tmp_path_factory.mktemp("exact_models"))


def model_uris(models: dict[str, str], pattern: str) -> str:
    """The --model_uris value of a pattern's MULTIPLIERS."""
    return ",".join(models[name] for name, _ in MULTIPLIERS[pattern])


@dataclass(frozen=True)
class BadRecord:
    """A record that must fail at `stage`, as written to the input, and what its one dead letter must say."""

    raw: bytes
    stage: str
    key: str | None
    message: str
    model: str | None = None


@dataclass(frozen=True)
class Input:
    """An input of RECORDS records: the good ones by position and the bad ones in their places."""

    path: Path
    good: dict[int, dict]
    bad: dict[int, BadRecord]


def key(position: int) -> str:
    return f"k{position}"


def record(position: int) -> dict:
    """A good record: x = position / 8 is exact in float32, unique, and below 200, where every model here answers."""
    return {"key": key(position), "x": position / 8}


def planted(path: Path, bad_record: Callable[[int], BadRecord], good: Callable[[int], dict] = record) -> Input:
    """RECORDS records for `path`: `good(position)` everywhere but at BAD_POSITIONS, where `bad_record(position)`."""
    goods = {p: good(p) for p in range(RECORDS) if p not in BAD_POSITIONS}
    return Input(path, goods, {p: bad_record(p) for p in BAD_POSITIONS})


def in_order(source: Input, encode: Callable[[dict], bytes]) -> list[bytes]:
    return [source.bad[p].raw if p in source.bad else encode(source.good[p]) for p in range(RECORDS)]


def json_line(good: dict) -> bytes:
    return json.dumps(good).encode()


def csv_line(good: dict) -> bytes:
    return f"{good['key']},{good['x']}".encode()


def example(good: dict) -> bytes:
    feature = {
        "key": tf.train.Feature(bytes_list=tf.train.BytesList(value=[good["key"].encode()])),
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[good["x"]])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_lines(source: Input, line: Callable[[dict], bytes] = json_line, header: bytes = b"") -> Input:
    """A text input, JSON Lines unless told otherwise, one record a line."""
    source.path.write_bytes(header + b"".join(raw + b"\n" for raw in in_order(source, line)))
    return source


def write_tfrecords(source: Input) -> Input:
    with tf.io.TFRecordWriter(str(source.path)) as writer:
        for raw in in_order(source, example):
            writer.write(raw)
    return source


def letter_raw(letter: dict) -> bytes:
    if letter["raw_encoding"] == "base64":
        return base64.b64decode(letter["raw"])
    return letter["raw"].encode("utf-8")


def summary_count(stdout: str, line: str) -> int:
    return int(re.search(rf"^\s*{line}\s+(\d+)", stdout, re.MULTILINE)[1])


def model_batches(stdout: str, model: str) -> int:
    """The batches `model` was called on, from the summary's RunInference table."""
    return int(re.search(rf"^\s*{model}\s+\d+\s+(\d+)\s", stdout, re.MULTILINE)[1])


def check_dead_letters(run, source: Input) -> None:
    """Exactly one dead letter per bad record, saying where, what and which record."""
    letters = run.dead_letters()
    raws = [letter_raw(letter) for letter in letters]
    assert sorted(raws) == sorted(bad.raw for bad in source.bad.values()), "one dead letter per bad record, no more"
    by_raw = dict(zip(raws, letters, strict=True))
    for position, bad in source.bad.items():
        letter = by_raw[bad.raw]
        assert (letter["stage"], letter["key"], letter["model"]) == (bad.stage, bad.key, bad.model), position
        assert bad.message in letter["message"], (position, letter["message"])
        assert letter["source"] == str(source.path)
    stages = Counter(bad.stage for bad in source.bad.values())
    by_stage = ", ".join(f"{stage} {count}" for stage, count in sorted(stages.items()))
    assert f"dead letters               {len(source.bad)}  ({by_stage})" in run.stdout


def check_rows(run, source: Input, check_predictions: Callable[[dict, dict], None]) -> None:
    """One row per good record, its input as read and `check_predictions(row, record)` true of its answers."""
    rows = run.rows()
    assert Counter(row["key"] for row in rows) == Counter(r["key"] for r in source.good.values())
    records = {r["key"]: r for r in source.good.values()}
    for row in rows:
        good = records[row["key"]]
        assert row["input"] == {name: value for name, value in good.items() if name != "key"}
        check_predictions(row, good)


def check_reconciled(run) -> None:
    assert summary_count(run.stdout, "records read") == RECORDS
    written = summary_count(run.stdout, "rows written")
    assert written + summary_count(run.stdout, "dead letters") == RECORDS
    assert "reconciled               yes" in run.stdout


def check_split(run, source: Input, check_good: Callable[[], None], first_model: str | None = None) -> None:
    """What every stage asks: a clean exit, one dead letter per bad record, the good records' results
    (`check_good`), with `first_model` the records around the bad ones sent on in 3 batches, and counts reconciled.
    """
    assert run.returncode == 0, run.stderr
    check_dead_letters(run, source)
    check_good()
    if first_model:
        assert model_batches(run.stdout, first_model) == 3, "the records around the bad ones went on in 3 batches"
    check_reconciled(run)


def answers(pattern: str, factors: tuple[tuple[str, float], ...], x: float) -> list[float]:
    """Each model's y for a record's x, as float32 computes it: multi_sequence feeds a model the y before it."""
    ys, fed = [], np.float32(x)
    for _, factor in factors:
        ys.append(np.float32(factor) * fed)
        if pattern == "multi_sequence":
            fed = ys[-1]
    return [float(y) for y in ys]


def times(pattern: str, factors: tuple[tuple[str, float], ...]) -> Callable[[dict, dict], None]:
    """A row's predictions, model by model, exactly: (model name, what it multiplies what it is fed by)."""

    def check(row: dict, good: dict) -> None:
        assert [p["model"] for p in row["predictions"]] == [model for model, _ in factors]
        assert [p["outputs"]["y"] for p in row["predictions"]] == [[y] for y in answers(pattern, factors, good["x"])]

    return check


def check_prediction_logs(run, source: Input, factors: tuple[tuple[str, float], ...]) -> None:
    """predict writes no rows but PredictionLogs, keyless: one per good record, told apart by its x."""
    logs = read_prediction_logs(run.output)
    xs = []
    for log in logs:
        example = tf.train.Example.FromString(log.predict_log.request.inputs["examples"].string_val[0])
        assert "key" not in example.features.feature, "the key must never reach the model"
        x = example.features.feature["x"].float_list.value[0]
        assert list(log.predict_log.response.outputs["y"].float_val) == answers("predict", factors, x), x
        xs.append(x)
    assert sorted(xs) == sorted(r["x"] for r in source.good.values())


def check_results(run, source: Input, pattern: str, factors: tuple[tuple[str, float], ...]) -> None:
    """The good records' results, as rows or (for predict) as PredictionLogs, each model's y exactly."""
    if pattern == "predict":
        check_prediction_logs(run, source, factors)
    else:
        check_rows(run, source, times(pattern, factors))


def test_the_bad_records_sit_inside_full_batches_of_the_default_max_batch_size():
    assert build_parser().get_default("max_batch_size") == BATCH
    assert math.ceil(RECORDS / BATCH) == 3 and RECORDS % BATCH != 0, "two full batches and a short one"


def test_float32_answers_every_record_here_exactly():
    """So the rows are compared exactly: each answer is x times its factors, with nothing rounded away."""
    for x in (record(position)["x"] for position in range(RECORDS)):
        assert answers("multi_sequence", MULTIPLIERS["multi_sequence"], x) == [5 * x, 50 * x]
        assert answers("multi_parallel", MULTIPLIERS["multi_parallel"], x) == [5 * x, 10 * x]


def failing_in_turn(failures: tuple[tuple[bytes, bool, str], ...], stage: str) -> Callable[[int], BadRecord]:
    """Bad records of each kind in turn: (raw record with %d for its position, whether its key is read, message)."""

    def bad_record(position: int) -> BadRecord:
        raw, keyed, message = failures[BAD_POSITIONS.index(position) % len(failures)]
        return BadRecord(raw % position, stage, key(position) if keyed else None, message)

    return bad_record


JSONL_PARSE_FAILURES = (
    (b'{"key": "k%d", "x": ', False, "line is not valid JSON"),
    (b'{"key": "k%d", "x": "seven"}', True, "feature 'x' should be a number (float feature), got \"seven\""),
    (b'{"key": "k%d", "x": null}', True, "feature 'x' is null"),
    (b'{"key": "k%d", "x": NaN}', True, "feature 'x' is not a finite number: nan"),
    (b"[%d, 2, 3]", False, "line is JSON but not an object: list"),
    (b'{"key": "k%d", "x": "\xe9"}', False, "line is not valid UTF-8"),  # Latin-1: kept as base64
)
CSV_PARSE_FAILURES = (
    (b"k%d,seven", True, "feature 'x' should be a number (float feature), got 'seven'"),
    (b"k%d,", True, "feature 'x' is empty"),
    (b"k%d,1,extra", False, "record has 3 columns, the header has 2"),
)
TFRECORD_PARSE_FAILURES = (
    (b"\x00 not an Example %d", False, "record is not a serialized tf.train.Example"),
    (b"\xff\xfe %d garbage", False, "record is not a serialized tf.train.Example"),  # not UTF-8: kept as base64
)


PARSE_INPUTS = {
    "jsonl": lambda path: write_lines(planted(path, failing_in_turn(JSONL_PARSE_FAILURES, "parse"))),
    "csv": lambda path: write_lines(
        planted(path, failing_in_turn(CSV_PARSE_FAILURES, "parse")), csv_line, header=b"key,x\n"
    ),
    "tfrecord": lambda path: write_tfrecords(planted(path, failing_in_turn(TFRECORD_PARSE_FAILURES, "parse"))),
}


@pytest.mark.parametrize(
    "source_format, pattern", [("jsonl", "postprocess"), ("csv", "keyed"), ("tfrecord", "predict")]
)
def test_a_record_that_cannot_be_parsed_costs_only_itself(run_main, exact_models, tmp_path, source_format, pattern):
    source = PARSE_INPUTS[source_format](tmp_path / f"in.{source_format}")
    run = run_main(
        f"--pattern={pattern}", f"--model_uris={model_uris(exact_models, pattern)}", f"--input={source.path}"
    )
    check_split(run, source, lambda: check_results(run, source, pattern, MULTIPLIERS[pattern]), "multiply_by_5")


@pytest.mark.parametrize("pattern", PATTERNS)
def test_features_that_cannot_become_an_example_cost_only_their_record(run_main, exact_models, tmp_path, pattern):
    # A JSON \ud800 escape reads as a lone surrogate, which no tf.train.Example bytes feature (UTF-8) can hold.
    def bad_record(position: int) -> BadRecord:
        raw = json.dumps({"key": key(position), "x": position / 8, "name": "\ud800"}).encode()
        model = None if pattern == "multi_parallel" else "multiply_by_5"  # its one Example feeds every model
        return BadRecord(raw, "encode", key(position), "surrogates not allowed", model)

    source = write_lines(planted(tmp_path / "in.jsonl", bad_record, lambda p: {**record(p), "name": f"sensor {p}"}))
    run = run_main(
        f"--pattern={pattern}",
        f"--model_uris={model_uris(exact_models, pattern)}",
        f"--input={source.path}",
        "--feature_types=name:bytes",
    )
    check_split(run, source, lambda: check_results(run, source, pattern, MULTIPLIERS[pattern]), "multiply_by_5")


def order(position: int) -> dict:
    """A good order for the demo's delivery model, whose named inputs are a float, an int and a string."""
    return {
        "key": key(position),
        "distance_km": position % 20 + 0.25,
        "items": position % 29 + 1,
        "weather": WEATHER[position % len(WEATHER)],
    }


def test_features_that_cannot_become_named_tensors_cost_only_their_record(run_main, demo_models, tmp_path):
    # The delivery model's `items` input is an int64 tensor: 3.7 items cannot be fed to it.
    def bad_record(position: int) -> BadRecord:
        raw = json.dumps({**order(position), "items": 3.7}).encode()
        return BadRecord(raw, "encode", key(position), "takes whole numbers", "delivery_minutes")

    def minutes_by_the_delivery_rule(row: dict, good: dict) -> None:
        [prediction] = row["predictions"]
        expected = delivery_minutes(good["distance_km"], good["items"], good["weather"])
        assert prediction["model"] == "delivery_minutes" and abs(prediction["outputs"]["minutes"][0] - expected) < 0.5

    source = write_lines(planted(tmp_path / "in.jsonl", bad_record, order))
    model = demo_models["delivery_minutes"]
    run = run_main(
        "--pattern=keyed", f"--model_uris={model}", f"--input={source.path}", "--feature_types=weather:bytes"
    )
    check_split(run, source, lambda: check_rows(run, source, minutes_by_the_delivery_rule), "delivery_minutes")


def test_an_output_that_cannot_feed_the_next_model_costs_only_its_record(run_main, strict_models, tmp_path):
    # The first model's uint64 output x * 2^54 fits the next model's int64 Example feature only for x < 512
    # (and from x = 1024 it wraps around 2^64, so the bad records' x stay below that).
    def bad_record(position: int) -> BadRecord:
        raw = json.dumps({"key": key(position), "x": 512.0 + position % 512}).encode()
        return BadRecord(raw, "chain", key(position), "cannot be feature 'x' of a tf.train.Example", "halved")

    def chained(row: dict, good: dict) -> None:
        first, second = row["predictions"]
        assert (first["model"], second["model"]) == ("unsigned", "halved")
        assert first["outputs"]["y"] == [int(good["x"]) * 2**54]
        assert second["outputs"]["y"] == [int(good["x"]) * 2**53]

    source = write_lines(planted(tmp_path / "in.jsonl", bad_record, lambda p: {"key": key(p), "x": float(p % 512)}))
    models = f"{strict_models['unsigned']},{strict_models['halved']}"
    run = run_main("--pattern=multi_sequence", f"--model_uris={models}", f"--input={source.path}")
    check_split(run, source, lambda: check_rows(run, source, chained), "unsigned")


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_record_the_model_fails_on_costs_only_itself(run_main, exact_models, strict_models, tmp_path, pattern):
    # below_1000 is x10 with a tf.debugging assertion: a batch holding x >= 1000 fails as a whole, and is split.
    # The multi_ patterns run it second: after x5 answered the record (multi_sequence feeds it 5x).
    def bad_record(position: int) -> BadRecord:
        raw = json.dumps({"key": key(position), "x": 1000.0 + position}).encode()
        return BadRecord(raw, "inference", key(position), "x must be below 1000", "below_1000")

    source = write_lines(planted(tmp_path / "in.jsonl", bad_record))
    if pattern.startswith("multi"):
        models = f"{exact_models['multiply_by_5']},{strict_models['below_1000']}"
        factors = (("multiply_by_5", 5), ("below_1000", 10))
    else:
        models, factors = strict_models["below_1000"], (("below_1000", 10),)
    run = run_main(f"--pattern={pattern}", f"--model_uris={models}", f"--input={source.path}")
    check_split(run, source, lambda: check_results(run, source, pattern, factors))


@pytest.mark.parametrize("pattern", [pattern for pattern in PATTERNS if pattern != "predict"])
def test_a_result_that_cannot_become_a_row_costs_only_itself(run_main, exact_models, tmp_path, pattern):
    # A JSON \udc00 escape reads as a lone surrogate: the models score the record, but no UTF-8 row holds its key.
    def bad_record(position: int) -> BadRecord:
        lone_surrogate = chr(0xDC00 + BAD_POSITIONS.index(position))
        raw = json.dumps({"key": lone_surrogate, "x": position / 8}).encode()
        return BadRecord(raw, "postprocess", lone_surrogate, "surrogates not allowed")

    source = write_lines(planted(tmp_path / "in.jsonl", bad_record))
    run = run_main(
        f"--pattern={pattern}", f"--model_uris={model_uris(exact_models, pattern)}", f"--input={source.path}"
    )
    check_split(run, source, lambda: check_results(run, source, pattern, MULTIPLIERS[pattern]), "multiply_by_5")
