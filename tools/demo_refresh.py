"""Model refresh demo: stream records through a base of numbered versions, add version 2 while they flow, and
watch each prediction name the version that made it (5x, then 10x), with no record lost or doubled.

    make demo-refresh
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from tools.demo_stream import demo_topics, pull_bodies, start_keyed_stream
from tools.pubsub_emulator import missing_tools, pubsub_emulator

ROOT = Path(__file__).resolve().parent.parent
REFRESH_SECONDS = 2


def add_version(model: Path, base: Path, version: int) -> None:
    """Copied beside the base, then renamed into place: a watcher never sees a version half copied."""
    staging = base / f".copying-{version}"
    shutil.copytree(model, staging)
    staging.rename(base / str(version))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo_refresh", description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "demo" / "models", help="where make models built them")
    parser.add_argument("--records", type=int, default=300, help="how many records to stream, 10 a second")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    missing = missing_tools()
    if missing:
        print("make demo-refresh needs:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    with pubsub_emulator() as host, tempfile.TemporaryDirectory() as folder:
        return _refresh(host, args.models, Path(folder) / "serving" / "demo", args.records)


def _refresh(host: str, models: Path, base: Path, count: int) -> int:
    from google.cloud import pubsub_v1

    base.mkdir(parents=True)
    add_version(models / "multiply_by_5", base, 1)
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    names = demo_topics(publisher, subscriber)
    print(f"Pub/Sub emulator on {host}; base {base} holds version 1 (5x); refreshing every {REFRESH_SECONDS} s")
    pipeline = start_keyed_stream(host, names, str(base), f"--model_refresh_seconds={REFRESH_SECONDS}")

    # The last two thirds are published only once version 2 is in the base: on a busy machine the stream could
    # otherwise have every record in hand, all scored by version 1, before the next refresh looks.
    version_2_added = threading.Event()

    def publish() -> None:
        for i in range(count):
            if i == count // 3:
                version_2_added.wait(timeout=240)
            publisher.publish(names["records"][0], json.dumps({"key": f"r-{i:04d}", "x": float(i)}).encode())
            time.sleep(0.1)

    try:
        publishing = threading.Thread(target=publish, daemon=True)
        publishing.start()
        seen, rows, deadline = set(), 0, time.monotonic() + 240
        while len(seen) < count and time.monotonic() < deadline:
            if len(seen) >= count // 3 and not version_2_added.is_set():  # version 1 has been serving for a while
                add_version(models / "multiply_by_10", base, 2)
                version_2_added.set()
                print(f"  ---- version 2 (10x) added to {base} ----")
            for row in pull_bodies(subscriber, names["predictions"][1]):
                (prediction,) = row["predictions"]
                seen.add(row["key"])
                rows += 1
                x, y = row["input"]["x"], prediction["outputs"]["y"][0]
                ratio = y / x if x else 0.0
                print(f"  {row['key']}  version {prediction['version']}  x={x:>7.1f}  y={y:>8.1f}  y/x={ratio:>4.1f}")
        publishing.join()
        print(f"{len(seen)} of {count} records came out, {rows - len(seen)} of them twice; stopping")
        return 0 if len(seen) == rows == count else 1
    finally:
        pipeline.send_signal(signal.SIGTERM)
        pipeline.wait(timeout=120)


if __name__ == "__main__":
    sys.exit(main())
