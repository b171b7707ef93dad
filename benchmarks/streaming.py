"""Streaming latency: messages published to the Pub/Sub emulator at a fixed rate for a fixed time, through the
keyed pattern in streaming mode, and the time from each publish to its row's arrival at a subscriber.

    python -m benchmarks.streaming [--rate 200] [--seconds 60]

Latency is measured from just before `publish` to the moment the streaming-pull subscriber receives the row,
both on this machine's monotonic clock, so it includes the emulator's two hops.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tools.pubsub_emulator import pubsub_emulator

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "bench-project"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Arrivals:
    """Rows received by a streaming-pull subscriber: record_id -> arrival time."""

    def __init__(self):
        self.times: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, message) -> None:
        with self._lock:
            self.times.setdefault(message.attributes["record_id"], time.monotonic())
        message.ack()


def _topics(publisher, subscriber, *roles: str) -> dict[str, tuple[str, str]]:
    names = {}
    for role in roles:
        topic = f"projects/{PROJECT}/topics/bench-{role}"
        subscription = f"projects/{PROJECT}/subscriptions/bench-{role}"
        publisher.create_topic(name=topic)
        subscriber.create_subscription(name=subscription, topic=topic)
        names[role] = (topic, subscription)
    return names


def _publish_at_rate(publisher, topic: str, rate: float, seconds: float, sent: dict[str, float]) -> None:
    """`rate` messages a second for `seconds`, each stamped at its publish time (by message id)."""
    futures = []
    start = time.monotonic()
    for i in range(int(rate * seconds)):
        due = start + i / rate
        time.sleep(max(0.0, due - time.monotonic()))
        stamped = time.monotonic()
        future = publisher.publish(topic, json.dumps({"key": f"device-{i % 1000}", "x": float(i % 100)}).encode())
        futures.append((future, stamped))
    for future, stamped in futures:
        sent[future.result(timeout=60)] = stamped


def measure(model: Path, rate: float, seconds: float, host: str) -> dict:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=1, max_latency=0.001)
    )
    subscriber = pubsub_v1.SubscriberClient()
    names = _topics(publisher, subscriber, "input", "rows", "dead")
    pipeline = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "--pattern=keyed",
            f"--model_uris={model}",
            f"--input_subscription={names['input'][1]}",
            f"--output_topic={names['rows'][0]}",
            f"--dead_letter_topic={names['dead'][0]}",
        ],
        env={**os.environ, "PUBSUB_EMULATOR_HOST": host},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    arrivals = Arrivals()
    streaming_pull = subscriber.subscribe(names["rows"][1], arrivals)
    try:
        warm_up: dict[str, float] = {}
        _publish_at_rate(publisher, names["input"][0], 10, 1, warm_up)
        deadline = time.monotonic() + 120
        while not warm_up.keys() <= arrivals.times.keys() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not warm_up.keys() <= arrivals.times.keys():
            raise RuntimeError("the streaming pipeline did not answer within 120 s")
        sent: dict[str, float] = {}
        started = time.monotonic()
        _publish_at_rate(publisher, names["input"][0], rate, seconds, sent)
        publish_seconds = time.monotonic() - started
        deadline = time.monotonic() + 60
        while not sent.keys() <= arrivals.times.keys() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        streaming_pull.cancel()
        pipeline.send_signal(signal.SIGTERM)
        pipeline.wait(timeout=120)
    latencies = [arrivals.times[i] - sent[i] for i in sent if i in arrivals.times]
    if not latencies:
        raise RuntimeError("no row arrived during the measurement")
    return {
        "rate": rate,
        "seconds": seconds,
        "published": len(sent),
        "achieved_publish_rate": len(sent) / publish_seconds,
        "received": len(latencies),
        "p50_ms": 1000 * percentile(latencies, 0.50),
        "p95_ms": 1000 * percentile(latencies, 0.95),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "max_ms": 1000 * max(latencies),
        "latencies_ms": sorted(round(1000 * latency, 2) for latency in latencies),
    }


def streaming_latency(model: Path, rate: float, seconds: float) -> dict:
    with pubsub_emulator() as host:
        return measure(model, rate, seconds, host)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streaming", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200, help="messages per second")
    parser.add_argument("--seconds", type=float, default=60, help="how long to publish")
    parser.add_argument("--model", type=Path, default=ROOT / "demo" / "models" / "multiply_by_5")
    args = parser.parse_args()
    result = streaming_latency(args.model, args.rate, args.seconds)
    print(json.dumps({k: v for k, v in result.items() if k != "latencies_ms"}, indent=2))


if __name__ == "__main__":
    main()
