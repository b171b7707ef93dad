"""Kill a streaming run while messages flow, restart it, and account for every published message.

What holds on the DirectRunner, shown here exactly: its Pub/Sub reader acknowledges each pull before the
messages are processed (Beam's `_PubSubReadEvaluator`), so the messages a killed run had pulled but not yet
written are lost to the restarted run; everything else arrives. Dataflow acknowledges only after a message is
durably checkpointed, so there nothing is lost, and a redelivered message keeps its Pub/Sub message id, which is
the output's `record_id`: duplicates are found by it, and carry identical rows.
"""

from __future__ import annotations

import json
import signal
import time

import pytest
from test_streaming import stop

pytestmark = pytest.mark.slow


def publish_batch(pubsub, topic: str, name: str, count: int) -> dict[str, str]:
    """`count` records (every fifth one bad), published; message id -> key."""
    ids = {}
    for i in range(count):
        key = f"{name}-{i}"
        x = "not a number" if i % 5 == 4 else float(i)
        ids[pubsub.publish(topic, json.dumps({"key": key, "x": x}).encode())] = key
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


def test_kill_and_restart_accounts_for_every_message(pubsub, start_main, models_for):
    topic, subscription = pubsub.topic_with_subscription("restart-input")
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

    in_flight = publish_batch(pubsub, topic, "in-flight", 40)
    found.update(outcomes(pubsub, sinks, set(list(in_flight)[:1]), seconds=60))  # kill it mid-flow
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    while_down = publish_batch(pubsub, topic, "while-down", 20)

    second = start_main(*arguments, env=pubsub.env)
    wanted = set(in_flight) | set(while_down)
    later = outcomes(pubsub, sinks, set(while_down), seconds=120)
    later.update(outcomes(pubsub, sinks, wanted - later.keys(), seconds=10))  # stragglers, duplicates
    stop(second)
    for record_id, arrived in later.items():
        found.setdefault(record_id, []).extend(arrived)

    published = {**done_before_kill, **in_flight, **while_down}
    assert found.keys() <= published.keys(), "every output belongs to a published message"
    assert set(done_before_kill) | set(while_down) <= found.keys(), "nothing handled or published while down is lost"
    lost = set(in_flight) - found.keys()
    duplicates = sum(len(arrived) - 1 for arrived in found.values())
    print(f"in flight: {len(in_flight)}, lost to the DirectRunner's early acks: {len(lost)}, duplicates: {duplicates}")
    for record_id, arrived in found.items():
        rows = [outcome for outcome in arrived if "stage" not in outcome]
        assert all(row == rows[0] for row in rows), "a duplicate is the same row, found by its record_id"
        assert all(outcome["key"] == published[record_id] for outcome in arrived), "keys intact"
