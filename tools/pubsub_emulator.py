"""The gcloud Pub/Sub emulator on a loopback port, for `make demo-stream` and the streaming benchmark."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the Pub/Sub emulator did not listen on 127.0.0.1:{port} within {seconds} s")


def missing_tools() -> list[str]:
    """What the emulator needs and this machine lacks, each with how to install it."""
    missing = []
    if shutil.which("gcloud") is None:
        missing.append("gcloud (the Google Cloud CLI, with `gcloud components install beta pubsub-emulator`)")
    if shutil.which("java") is None:
        missing.append("Java 11+ for the emulator (e.g. `apt-get install default-jre-headless`)")
    return missing


@contextlib.contextmanager
def pubsub_emulator() -> Iterator[str]:
    """A running emulator; PUBSUB_EMULATOR_HOST is set to it in this process while it runs. Yields the host."""
    port = free_port()
    host = f"127.0.0.1:{port}"
    emulator = subprocess.Popen(
        ["gcloud", "beta", "emulators", "pubsub", "start", f"--host-port={host}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    try:
        wait_for_port(port)
        yield host
    finally:
        if previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous
        os.killpg(emulator.pid, signal.SIGTERM)
        emulator.wait(timeout=30)
