"""Streaming demo: start the Pub/Sub emulator, stream the keyed pattern, publish the demo records, watch
predictions arrive, stop everything.

    make demo-stream
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PROJECT = "demo-project"
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the Pub/Sub emulator did not listen on 127.0.0.1:{port} within {seconds} s")


def _missing_tools() -> list[str]:
    missing = []
    if shutil.which("gcloud") is None:
        missing.append("gcloud (the Google Cloud CLI, with `gcloud components install beta pubsub-emulator`)")
    if shutil.which("java") is None:
        missing.append("Java 11+ for the emulator (e.g. `apt-get install default-jre-headless`)")
    return missing


def main() -> int:
    missing = _missing_tools()
    if missing:
        print("make demo-stream needs:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    port = _free_port()
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{port}"}
    os.environ["PUBSUB_EMULATOR_HOST"] = env["PUBSUB_EMULATOR_HOST"]
    from google.cloud import pubsub_v1

    emulator = subprocess.Popen(
        ["gcloud", "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    pipeline = None
    try:
        _wait_for_port(port)
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        names = {}
        for role in ("records", "predictions", "dead-letters"):
            topic = f"projects/{PROJECT}/topics/demo-{role}"
            subscription = f"projects/{PROJECT}/subscriptions/demo-{role}"
            publisher.create_topic(name=topic)
            subscriber.create_subscription(name=subscription, topic=topic)
            names[role] = (topic, subscription)
        print(f"Pub/Sub emulator on 127.0.0.1:{port}; starting the keyed pattern in streaming mode")
        pipeline = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "main.py"),
                "--pattern=keyed",
                f"--model_uris={ROOT / 'demo' / 'models' / 'multiply_by_5'}",
                f"--input_subscription={names['records'][1]}",
                f"--output_topic={names['predictions'][0]}",
                f"--dead_letter_topic={names['dead-letters'][0]}",
            ],
            env=env,
        )
        lines = (ROOT / "demo" / "data" / "with_bad_records.jsonl").read_bytes().splitlines()
        for line in lines:
            publisher.publish(names["records"][0], line).result(timeout=30)
        print(f"published {len(lines)} records (4 of them bad); waiting for them to come out")
        seen, deadline = 0, time.monotonic() + 180
        while seen < len(lines) and time.monotonic() < deadline:
            for role in ("predictions", "dead-letters"):
                subscription = names[role][1]
                response = subscriber.pull(subscription=subscription, max_messages=50, timeout=5)
                for received in response.received_messages:
                    seen += 1
                    body = json.loads(received.message.data)
                    if role == "predictions":
                        y = body["predictions"][0]["outputs"]["y"][0]
                        print(f"  prediction  {body['key']:<10} x={body['input']['x']:>9.2f}  5x={y:>10.2f}")
                    else:
                        print(f"  dead letter {body['stage']:<10} {body['message']}")
                if response.received_messages:
                    subscriber.acknowledge(
                        subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages]
                    )
        print(f"{seen} of {len(lines)} records came out; stopping")
        return 0 if seen == len(lines) else 1
    finally:
        if pipeline is not None:
            pipeline.send_signal(signal.SIGTERM)
            pipeline.wait(timeout=120)
        os.killpg(emulator.pid, signal.SIGTERM)
        emulator.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
