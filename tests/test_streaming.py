"""Streaming from Pub/Sub, end to end against the emulator: every pattern, rows and dead letters out,
keys intact, record ids carried, and a clean stop with the counts reconciled."""

from __future__ import annotations

import json
import re
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from expect import assert_close
from tensorflow_serving.apis import prediction_log_pb2

from transforms.records.examples import encode_example

pytestmark = pytest.mark.slow

PATTERNS = ["predict", "postprocess", "keyed", "multi_parallel", "multi_sequence"]
FACTOR = {"predict": 5, "postprocess": 5, "keyed": 5, "multi_parallel": 10, "multi_sequence": 50}


@dataclass(frozen=True)
class Stream:
    """A streaming run's topics: records published in, rows and dead letters pulled out."""

    input_topic: str
    output_subscription: str
    dead_subscription: str
    arguments: tuple[str, ...]  # main.py's --input_subscription, --output_topic and --dead_letter_topic


def stream(pubsub, name: str) -> Stream:
    input_topic, input_subscription = pubsub.topic_with_subscription(f"{name}-input")
    output_topic, output_subscription = pubsub.topic_with_subscription(f"{name}-rows")
    dead_topic, dead_subscription = pubsub.topic_with_subscription(f"{name}-dead")
    arguments = (
        f"--input_subscription={input_subscription}",
        f"--output_topic={output_topic}",
        f"--dead_letter_topic={dead_topic}",
    )
    return Stream(input_topic, output_subscription, dead_subscription, arguments)


def stop(process) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    return stdout, stderr


@pytest.mark.parametrize("pattern", PATTERNS)
def test_each_pattern_streams_rows_and_dead_letters(pubsub, start_main, models_for, pattern):
    name = pattern.replace("_", "-")
    topics = stream(pubsub, name)
    ids = {}
    for i in range(12):
        ids[pubsub.publish(topics.input_topic, json.dumps({"key": f"dev-{i}", "x": float(i)}).encode())] = f"dev-{i}"
    bad = [b'{"key": "dev-bad", "x": ', b'{"key": "dev-text", "x": "seven"}', b"\xff\xfe"]
    for data in bad:
        pubsub.publish(topics.input_topic, data)

    process = start_main(
        f"--pattern={pattern}",
        f"--model_uris={models_for(pattern)}",
        *topics.arguments,
        env=pubsub.env,
    )
    rows = pubsub.pull(topics.output_subscription, 12, seconds=120)
    letters = pubsub.pull(topics.dead_subscription, 3, seconds=30)
    stdout, _ = stop(process)

    assert len(rows) == 12 and len(letters) == 3, "every message became a row or a dead letter"
    assert {m.attributes["record_id"]: m.attributes["key"] for m in rows} == ids, "record id = Pub/Sub message id"
    for message in rows:
        if pattern == "predict":
            log = prediction_log_pb2.PredictionLog.FromString(message.data)
            x = float(message.attributes["key"].split("-")[1])
            assert_close(log.predict_log.response.outputs["y"].float_val[0], 5 * x)
        else:
            row = json.loads(message.data)
            assert row["key"] == message.attributes["key"]
            assert_close(row["predictions"][-1]["outputs"]["y"][0], FACTOR[pattern] * row["input"]["x"])
    assert sorted(json.loads(m.data)["stage"] for m in letters) == ["parse"] * 3
    assert f"pattern {pattern} finished" in stdout, "a stopped streaming run prints its summary"


def test_a_named_tensor_model_streams_keyed_rows_and_encode_dead_letters(pubsub, start_main, demo_models):
    """The Keras 3 export of the demo (float, int and string inputs) under a running stream of JSON messages."""
    from tools.demo import WEATHER, delivery_minutes

    topics = stream(pubsub, "named")
    orders = {f"order-{i}": {"km": 0.5 + i, "items": i % 7, "weather": WEATHER[i % 3]} for i in range(12)}
    for key, order in orders.items():
        pubsub.publish(topics.input_topic, json.dumps({"key": key, **order}).encode())
    pubsub.publish(
        topics.input_topic, json.dumps({"key": "order-half", "km": 2.0, "items": 3.7, "weather": "rain"}).encode()
    )

    process = start_main(
        "--pattern=keyed",
        f"--model_uris={demo_models['delivery_minutes']}",
        "--input_features=distance_km:km",
        "--feature_types=weather:bytes",
        *topics.arguments,
        env=pubsub.env,
    )
    rows = pubsub.pull(topics.output_subscription, 12, seconds=120)
    letters = pubsub.pull(topics.dead_subscription, 1, seconds=30)
    stop(process)

    assert sorted(m.attributes["key"] for m in rows) == sorted(orders)
    for message in rows:
        row = json.loads(message.data)
        order = orders[row["key"]]
        (prediction,) = row["predictions"]
        expected = delivery_minutes(order["km"], order["items"], order["weather"])
        assert abs(prediction["outputs"]["minutes"][0] - expected) < 0.5
    (letter,) = (json.loads(m.data) for m in letters)
    assert (letter["key"], letter["stage"], letter["model"]) == ("order-half", "encode", "delivery_minutes")
    assert "items" in letter["message"]


def test_example_messages_with_the_key_in_an_attribute(pubsub, start_main, models_for):
    topics = stream(pubsub, "examples")
    for i in range(5):
        pubsub.publish(topics.input_topic, encode_example({"x": float(i)}), device=f"sensor-{i}")
    pubsub.publish(topics.input_topic, b"\xff\xfe not an Example", device="sensor-bad")
    process = start_main(
        "--pattern=keyed",
        f"--model_uris={models_for('keyed')}",
        "--message_format=example",
        "--key_attribute=device",
        *topics.arguments,
        env=pubsub.env,
    )
    rows = [json.loads(m.data) for m in pubsub.pull(topics.output_subscription, 5, seconds=120)]
    letters = [json.loads(m.data) for m in pubsub.pull(topics.dead_subscription, 1, seconds=30)]
    stop(process)
    assert sorted(row["key"] for row in rows) == [f"sensor-{i}" for i in range(5)]
    assert [(d["key"], d["stage"], d["raw_encoding"]) for d in letters] == [("sensor-bad", "parse", "base64")]
    assert "not a serialized tf.train.Example" in letters[0]["message"]
    for row in rows:
        assert_close(row["predictions"][0]["outputs"]["y"][0], 5 * row["input"]["x"])


def test_a_batch_run_can_publish_its_rows_and_dead_letters(pubsub, run_main, models_for, demo_data, tmp_path):
    output_topic, output_subscription = pubsub.topic_with_subscription("batch-rows")
    dead_topic, dead_subscription = pubsub.topic_with_subscription("batch-dead")
    source = tmp_path / "mixed.jsonl"
    source.write_text((demo_data / "numbers.jsonl").read_text() + '{"key": "bad", "x": null}\n')
    run = run_main(
        "--pattern=multi_sequence",
        f"--model_uris={models_for('multi_sequence')}",
        f"--input={source}",
        f"--output_topic={output_topic}",
        f"--dead_letter_topic={dead_topic}",
        output=None,
        env=pubsub.env,
    )
    assert run.returncode == 0, run.stderr
    rows = [json.loads(m.data) for m in pubsub.pull(output_subscription, 100, seconds=60)]
    letters = [json.loads(m.data) for m in pubsub.pull(dead_subscription, 1, seconds=30)]
    assert sorted(row["key"] for row in rows) == [f"device-{i:03d}" for i in range(100)]
    for row in rows:
        assert_close(row["predictions"][1]["outputs"]["y"][0], 50 * row["input"]["x"])
    assert [(d["key"], d["stage"]) for d in letters] == [("bad", "parse")]
    assert "reconciled               yes" in run.stdout


@pytest.mark.parametrize("pattern", ["keyed", "predict"])
def test_streaming_writes_a_set_of_files_per_window(pubsub, start_main, models_for, tmp_path, pattern):
    topic, subscription = pubsub.topic_with_subscription(f"windowed-{pattern}")
    ids = {pubsub.publish(topic, json.dumps({"key": f"w-{i}", "x": float(i)}).encode()): f"w-{i}" for i in range(10)}
    pubsub.publish(topic, b'{"key": "w-bad", "x": "ten"}')
    output, dead_letter = tmp_path / "out" / "rows", tmp_path / "out" / "dead"
    process = start_main(
        f"--pattern={pattern}",
        f"--model_uris={models_for(pattern)}",
        f"--input_subscription={subscription}",
        f"--output={output}",
        f"--dead_letter={dead_letter}",
        "--window_seconds=2",
        env=pubsub.env,
    )
    suffix = ".tfrecord" if pattern == "predict" else ".jsonl"
    records = wait_for_records(f"{output}-*{suffix}", 10, read_tfrecords if pattern == "predict" else read_lines)
    letters = wait_for_records(f"{dead_letter}-*.jsonl", 1, read_lines)
    stop(process)
    if pattern == "predict":
        logs = [prediction_log_pb2.PredictionLog.FromString(record) for record in records]
        outputs = sorted(log.predict_log.response.outputs["y"].float_val[0] for log in logs)
        for output_value, x in zip(outputs, range(10), strict=True):
            assert_close(output_value, 5.0 * x)
    else:
        rows = [json.loads(record) for record in records]
        assert sorted(row["key"] for row in rows) == sorted(ids.values())
        for row in rows:
            assert_close(row["predictions"][0]["outputs"]["y"][0], 5 * row["input"]["x"])
    assert [(json.loads(d)["key"], json.loads(d)["stage"]) for d in letters] == [("w-bad", "parse")]
    names = [path.name for path in output.parent.glob(f"rows-*{suffix}")]
    assert names and all(name.endswith(f"-00000-of-00001{suffix}") for name in names), names


def read_lines(path) -> list[bytes]:
    return path.read_bytes().splitlines()


def read_tfrecords(path) -> list[bytes]:
    from transforms.reading.file_records import tfrecords

    with open(path, "rb") as stream:
        return list(tfrecords(stream))


def wait_for_records(pattern: str, count: int, read, seconds: float = 120) -> list[bytes]:
    """The records of the files matching `pattern` once there are `count` of them (windows close as time passes)."""
    records, deadline = [], time.monotonic() + seconds
    while len(records) < count and time.monotonic() < deadline:
        time.sleep(1)
        records = [record for path in sorted(Path("/").glob(pattern.lstrip("/"))) for record in read(path)]
    return records


def window_of(seconds: float, length: int) -> tuple[str, str]:
    """The (start, end) of the fixed window holding `seconds`, as the file names write them."""
    start = int(seconds // length) * length
    return tuple(datetime.fromtimestamp(t, UTC).replace(tzinfo=None).isoformat() for t in (start, start + length))


def publish_in_one_window(pubsub, topic: str, name: str, length: int) -> tuple[tuple[str, str], set[str]]:
    """4 good records and a bad one, published early in the next window; that window, and the keys."""
    time.sleep(length - time.time() % length + 0.2)
    started = time.time()
    keys = {f"{name}-{i}" for i in range(4)}
    for key in sorted(keys):
        pubsub.publish(topic, json.dumps({"key": key, "x": float(key[-1])}).encode())
    pubsub.publish(topic, json.dumps({"key": f"{name}-bad", "x": "ten"}).encode())
    window = window_of(started, length)
    assert window_of(time.time(), length) == window, "published within one window"
    return window, keys


def records_by_window(prefix: Path, suffix: str) -> dict[tuple[str, str], list[dict]]:
    """The JSON records of the windowed files under `prefix`, by the window their file name gives."""
    by_window: dict[tuple[str, str], list[dict]] = {}
    for path in prefix.parent.glob(f"{prefix.name}-*{suffix}"):
        start, end = re.fullmatch(
            rf"{prefix.name}-(\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d)-(\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d)-00000-of-00001{suffix}",
            path.name,
        ).groups()
        by_window.setdefault((start, end), []).extend(json.loads(line) for line in read_lines(path))
    return by_window


def test_each_window_files_hold_the_records_published_in_it(pubsub, start_main, models_for, tmp_path):
    length = 4
    topic, subscription = pubsub.topic_with_subscription("two-windows")
    first, first_keys = publish_in_one_window(pubsub, topic, "early", length)
    second, second_keys = publish_in_one_window(pubsub, topic, "late", length)
    output, dead_letter = tmp_path / "out" / "rows", tmp_path / "out" / "dead"
    process = start_main(
        "--pattern=keyed",
        f"--model_uris={models_for('keyed')}",
        f"--input_subscription={subscription}",
        f"--output={output}",
        f"--dead_letter={dead_letter}",
        f"--window_seconds={length}",
        env=pubsub.env,
    )
    wait_for_records(f"{output}-*.jsonl", 8, read_lines)
    wait_for_records(f"{dead_letter}-*.jsonl", 2, read_lines)
    stop(process)
    rows = records_by_window(output, ".jsonl")
    assert {window: sorted(row["key"] for row in found) for window, found in rows.items()} == {
        first: sorted(first_keys),
        second: sorted(second_keys),
    }, "each window's files hold exactly the rows published in it"
    letters = records_by_window(dead_letter, ".jsonl")
    assert {window: [d["key"] for d in found] for window, found in letters.items()} == {
        first: ["early-bad"],
        second: ["late-bad"],
    }
    for row in rows[first] + rows[second]:
        assert_close(row["predictions"][0]["outputs"]["y"][0], 5 * row["input"]["x"])
