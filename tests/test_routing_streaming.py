"""A routed stream (Pub/Sub emulator): a route added to the table serves within two refresh periods, its earlier
records having gone to the default route's model, and a route's new version serves while the others keep theirs."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from tools.route_models import write_route_root

pytestmark = pytest.mark.slow

REFRESH_SECONDS = 3
REGIONS = ("x1", "x2", "x3")


class RegionStream:
    """Publishes a record every `every` seconds, regions in turn, remembering when each message id went out."""

    def __init__(self, pubsub, topic: str, every: float = 0.05):
        self._pubsub, self._topic, self._every = pubsub, topic, every
        self.published: dict[str, tuple[float, str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(self._every):
            region, x = REGIONS[i % len(REGIONS)], float(i % 50)
            record = {"key": f"r-{i}", "region": region, "x": x}
            message_id = self._pubsub.publish(self._topic, json.dumps(record).encode())
            self.published[message_id] = (time.time(), region, x)
            i += 1

    def __enter__(self) -> RegionStream:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


def _pull_until(pubsub, subscription, process, messages: list, done, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        messages += pubsub.pull(subscription, 500, seconds=1)
        if done(messages):
            return
    process.kill()
    _, stderr = process.communicate(timeout=60)
    raise AssertionError(f"waited up to {seconds} s; {len(messages)} rows so far; main.py said:\n{stderr[-6000:]}")


def _served(messages: list) -> list[tuple[str, dict]]:
    return [(m.attributes["record_id"], json.loads(m.data)["predictions"][0]) for m in messages]


def test_a_route_added_to_the_table_serves_within_two_refresh_periods(pubsub, start_main, tmp_path):
    root = tmp_path / "models"
    write_route_root(root, {"x1": 1.0, "x2": 2.0, "fallback": -1.0})
    topic, subscription = pubsub.topic_with_subscription("routes-input")
    output_topic, output_subscription = pubsub.topic_with_subscription("routes-rows")
    dead_topic, dead_subscription = pubsub.topic_with_subscription("routes-dead")
    process = start_main(
        "--pattern=keyed",
        f"--model_uris={root}",
        "--route_field=region",
        "--default_route=fallback",
        f"--input_subscription={subscription}",
        f"--output_topic={output_topic}",
        f"--dead_letter_topic={dead_topic}",
        f"--model_refresh_seconds={REFRESH_SECONDS}",
        env=pubsub.env,
    )
    rows: list = []

    def served_by(model: str, version: str = "1") -> bool:
        return any(p["model"] == model and p["version"] == version for _, p in _served(rows))

    with RegionStream(pubsub, topic) as stream:
        _pull_until(pubsub, output_subscription, process, rows, lambda m: len(m) >= 30, seconds=180)
        # A new tenant: its model written beside the root, then renamed into it, as a copy should land.
        write_route_root(tmp_path / "staging", {"x3": 3.0})
        x3_added = time.time()
        (tmp_path / "staging" / "x3").rename(root / "x3")
        _pull_until(pubsub, output_subscription, process, rows, lambda m: served_by("x3"), seconds=60)
        # A new version of one route's model: x1 now multiplies by 100; x2 keeps its version.
        write_route_root(tmp_path / "staging", {"x1": 100.0}, version="2")
        (tmp_path / "staging" / "x1" / "2").rename(root / "x1" / "2")
        _pull_until(pubsub, output_subscription, process, rows, lambda m: served_by("x1", "2"), seconds=60)
        time.sleep(2)
    published = dict(stream.published)
    _pull_until(pubsub, output_subscription, process, rows, lambda m: len(m) >= len(published), seconds=60)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr

    served = _served(rows)
    assert sorted(record_id for record_id, _ in served) == sorted(published), "every message exactly once"
    assert not pubsub.pull(dead_subscription, 10, seconds=2), "with a default route no record is a dead letter"
    factors = {("x1", "1"): 1.0, ("x1", "2"): 100.0, ("x2", "1"): 2.0, ("x3", "1"): 3.0, ("fallback", "1"): -1.0}
    x3_by_fallback, x3_by_x3 = [], []
    for record_id, prediction in served:
        published_at, region, x = published[record_id]
        model, version = prediction["model"], prediction["version"]
        assert prediction["outputs"]["y"] == [factors[(model, version)] * x], (region, prediction)
        if region == "x3":
            assert model in ("fallback", "x3")
            (x3_by_x3 if model == "x3" else x3_by_fallback).append(published_at - x3_added)
        else:
            assert model == region, "a listed route is always served by its own model"
    assert x3_by_fallback and x3_by_x3, "x3's records went to the default until its model was in the table"
    late = [t for t in x3_by_fallback if t > 2 * REFRESH_SECONDS]
    assert not late, f"x3's records published {late} s after its model arrived still went to the default"
    assert "new route 'x3' serves" in stderr
    assert {p["version"] for _, p in served if p["model"] == "x2"} == {"1"}, "x2 keeps its version"
    assert "routing on field region: 3 routes from" in stdout
