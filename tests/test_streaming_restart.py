"""Kill a streaming run while messages flow, restart it, force a redelivery, and account for every message.

What holds on the DirectRunner, shown here exactly: its Pub/Sub reader acknowledges each pull (up to 100
messages, transforms/runner.py) before the messages are processed (Beam's `_PubSubReadEvaluator`), so a killed
run can lose what it had pulled but not yet written, a fraction of a second of input; everything else arrives.
Dataflow acknowledges only after a message is durably checkpointed, so there nothing is lost. A redelivered
message keeps its Pub/Sub message id, which is the output's `record_id`: duplicates are found by it, and carry
identical rows.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
from google.protobuf import timestamp_pb2
from test_streaming import stop

pytestmark = pytest.mark.slow


def record(name: str, i: int) -> dict:
    """Every fifth record is bad (a dead letter), the others score."""
    return {"key": f"{name}-{i}", "x": "not a number" if i % 5 == 4 else float(i)}


def publish_batch(pubsub, topic: str, name: str, count: int, per_second: float | None = None) -> dict[str, str]:
    """`count` records, published (at `per_second` when given); message id -> key."""
    ids = {}
    for i in range(count):
        ids[pubsub.publish(topic, json.dumps(record(name, i)).encode())] = f"{name}-{i}"
        if per_second:
            time.sleep(1 / per_second)
    return ids


def outcomes(pubsub, subscriptions: list[str], wanted: set[str], seconds: float) -> dict[str, list]:
    """record_id -> every row or dead letter that arrived for it, until all of `wanted` arrived or time ran out."""
    found: dict[str, list] = {}
    deadline = time.monotonic() + seconds
    while not wanted <= found.keys() and time.monotonic() < deadline:
        for subscription in subscriptions:
            for message in pubsub.pull(subscription, 100, seconds=2):
                found.setdefault(message.attributes["record_id"], []).append(json.loads(message.data))
    return found


def merge(found: dict[str, list], more: dict[str, list]) -> None:
    for record_id, arrived in more.items():
        found.setdefault(record_id, []).extend(arrived)


def any_in_flight(found: dict[str, list]) -> bool:
    return any(outcome["key"].startswith("in-flight-") for arrived in found.values() for outcome in arrived)


def without_timestamp(outcome: dict) -> dict:
    """A row as it is; a dead letter without the time it was made (each delivery makes its own)."""
    return {name: value for name, value in outcome.items() if name != "timestamp"}


def test_kill_restart_and_redelivery_account_for_every_message(pubsub, start_main, models_for):
    topic, _ = pubsub.topic_with_subscription("restart-input")
    subscription = f"projects/{pubsub.project}/subscriptions/restart-input-retained"
    # Acknowledged messages are kept, so that a seek can redeliver them to the restarted run.
    pubsub.subscriber.create_subscription(request={"name": subscription, "topic": topic, "retain_acked_messages": True})
    rows_topic, rows_subscription = pubsub.topic_with_subscription("restart-rows")
    dead_topic, dead_subscription = pubsub.topic_with_subscription("restart-dead")
    arguments = [
        "--pattern=keyed",
        f"--model_uris={models_for('keyed')}",
        f"--input_subscription={subscription}",
        f"--output_topic={rows_topic}",
        f"--dead_letter_topic={dead_topic}",
    ]
    sinks = [rows_subscription, dead_subscription]

    first = start_main(*arguments, env=pubsub.env)
    done_before_kill = publish_batch(pubsub, topic, "before", 20)
    found = outcomes(pubsub, sinks, set(done_before_kill), seconds=120)
    assert set(done_before_kill) <= found.keys(), "the first run handles its messages"

    # 300 messages, at most 60 a second; the run is killed as soon as the first of them comes out.
    in_flight: dict[str, str] = {}
    publisher = threading.Thread(target=lambda: in_flight.update(publish_batch(pubsub, topic, "in-flight", 300, 60)))
    publisher.start()
    deadline = time.monotonic() + 60
    while not any_in_flight(found) and time.monotonic() < deadline:
        for sink in sinks:
            for message in pubsub.pull(sink, 100, seconds=1):
                found.setdefault(message.attributes["record_id"], []).append(json.loads(message.data))
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    publisher.join()
    out_at_kill = set(in_flight) & found.keys()
    assert 0 < len(out_at_kill) < len(in_flight), "the kill landed mid-flow: some in-flight messages were out, not all"

    seek_to = timestamp_pb2.Timestamp()
    seek_to.GetCurrentTime()
    time.sleep(1)  # publish times are the emulator's clock: keep the seek point clearly before them
    while_down = publish_batch(pubsub, topic, "while-down", 20)

    second = start_main(*arguments, env=pubsub.env)
    merge(found, outcomes(pubsub, sinks, set(while_down), seconds=120))
    merge(found, outcomes(pubsub, sinks, set(in_flight) - found.keys(), seconds=10))  # stragglers
    assert set(while_down) <= found.keys(), "messages published while the pipeline was down all come out"

    # Force a redelivery of everything published while the pipeline was down: same message ids, so same record ids.
    pubsub.subscriber.seek(request={"subscription": subscription, "time": seek_to})
    redelivered: dict[str, list] = {}
    deadline = time.monotonic() + 120
    while not set(while_down) <= redelivered.keys() and time.monotonic() < deadline:
        merge(redelivered, outcomes(pubsub, sinks, set(while_down), seconds=5))
    stop(second)
    assert redelivered.keys() == set(while_down), "the seek redelivers exactly the messages published after it"
    for record_id, again in redelivered.items():
        first_time = found[record_id]
        assert [without_timestamp(o) for o in again] == [without_timestamp(o) for o in first_time], (
            "a redelivered message makes the same row (or dead letter), found by its record_id"
        )
    merge(found, redelivered)

    published = {**done_before_kill, **in_flight, **while_down}
    assert found.keys() <= published.keys(), "every output belongs to a published message"
    assert set(done_before_kill) | set(while_down) <= found.keys(), "nothing handled or published while down is lost"
    # Only what the killed run held, pulled (so acknowledged) but not yet written, is lost: the messages
    # published in the last moments before the kill. A message is held for less than 0.7 s (the streaming
    # benchmark's slowest, publish to row, was 657 ms at 200 messages/s: README), and the publisher above sends
    # at most 60 a second (it sleeps 1/60 s after each acknowledged publish): 0.7 s x 60/s = 42 at most. A run
    # that lost everything it had pulled would lose the seconds of publishing before the kill (about 80 messages
    # in a run timed while writing this; 9 were lost).
    lost = set(in_flight) - found.keys()
    assert len(lost) <= 42, f"{len(lost)} lost: more than the 0.7 s of publishing a killed DirectRunner holds"
    duplicates = {record_id for record_id, arrived in found.items() if len(arrived) > 1}
    assert set(while_down) <= duplicates, "each redelivered message came out twice"
    for record_id, arrived in found.items():
        assert all(outcome["key"] == published[record_id] for outcome in arrived), "keys intact"
        expected_stage = "parse" if int(published[record_id].rsplit("-", 1)[1]) % 5 == 4 else None
        assert all(outcome.get("stage") == expected_stage for outcome in arrived), "rows and dead letters as published"
        kinds = {json.dumps(without_timestamp(outcome), sort_keys=True) for outcome in arrived}
        assert len(kinds) == 1, "duplicates, however they arose, are identical"
