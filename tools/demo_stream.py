"""Streaming demo: start the Pub/Sub emulator, stream the keyed pattern, publish the demo records, watch
predictions arrive, stop everything.

    make demo-stream
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tools.pubsub_emulator import missing_tools, pubsub_emulator

PROJECT = "demo-project"
ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo_stream", description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "demo" / "models", help="where make models built them")
    parser.add_argument("--data", type=Path, default=ROOT / "demo" / "data", help="where make data built it")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # lines in the order they happen, beside the pipeline's summary
    missing = missing_tools()
    if missing:
        print("make demo-stream needs:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    with pubsub_emulator() as host:
        return _stream(host, args.models, args.data)


def demo_topics(publisher, subscriber) -> dict[str, tuple[str, str]]:
    """The demo's topics and subscriptions, made on the emulator: role -> (topic, subscription)."""
    names = {}
    for role in ("records", "predictions", "dead-letters"):
        topic = f"projects/{PROJECT}/topics/demo-{role}"
        subscription = f"projects/{PROJECT}/subscriptions/demo-{role}"
        publisher.create_topic(name=topic)
        subscriber.create_subscription(name=subscription, topic=topic)
        names[role] = (topic, subscription)
    return names


def start_keyed_stream(host: str, names: dict[str, tuple[str, str]], model_uris: str, *extra: str) -> subprocess.Popen:
    """main.py's keyed pattern streaming from the demo's records topic to its predictions and dead-letter topics."""
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "--pattern=keyed",
            f"--model_uris={model_uris}",
            *extra,
            f"--input_subscription={names['records'][1]}",
            f"--output_topic={names['predictions'][0]}",
            f"--dead_letter_topic={names['dead-letters'][0]}",
        ],
        env={**os.environ, "PUBSUB_EMULATOR_HOST": host},
    )


def pull_bodies(subscriber, subscription: str) -> list[dict]:
    """Up to 50 messages of a subscription, acknowledged, their JSON bodies (waits at most 5 s for any)."""
    response = subscriber.pull(subscription=subscription, max_messages=50, timeout=5)
    if response.received_messages:
        subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages])
    return [json.loads(received.message.data) for received in response.received_messages]


def _stream(host: str, models: Path, data: Path) -> int:
    from google.cloud import pubsub_v1

    pipeline = None
    try:
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        names = demo_topics(publisher, subscriber)
        print(f"Pub/Sub emulator on {host}; starting the keyed pattern in streaming mode")
        pipeline = start_keyed_stream(host, names, str(models / "multiply_by_5"))
        lines = (data / "with_bad_records.jsonl").read_bytes().splitlines()
        for line in lines:
            publisher.publish(names["records"][0], line).result(timeout=30)
        print(f"published {len(lines)} records (4 of them bad); waiting for them to come out")
        seen, deadline = 0, time.monotonic() + 180
        while seen < len(lines) and time.monotonic() < deadline:
            for role in ("predictions", "dead-letters"):
                for body in pull_bodies(subscriber, names[role][1]):
                    seen += 1
                    if role == "predictions":
                        y = body["predictions"][0]["outputs"]["y"][0]
                        print(
                            f"  prediction  {body['key']:<10} x={body['input']['x']:>9.2f}  5x={y:>10.2f}", flush=True
                        )
                    else:
                        print(f"  dead letter {body['stage']:<10} {body['message']}")
        print(f"{seen} of {len(lines)} records came out; stopping")
        return 0 if seen == len(lines) else 1
    finally:
        if pipeline is not None:
            pipeline.send_signal(signal.SIGTERM)
            pipeline.wait(timeout=120)


if __name__ == "__main__":
    sys.exit(main())
