"""Shared fixtures: demo models and data built once per session, and a runner for main.py as users run it."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def skipped_under_ci(config: pytest.Config) -> int:
    """How many tests skipped, when CI=true (on the controlling process only); 0 otherwise."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if os.environ.get("CI") != "true" or hasattr(config, "workerinput") or reporter is None:
        return 0
    return len(reporter.stats.get("skipped", []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI, a skipped test fails the run: every skip here means a missing tool, and CI must prove it all."""
    if skipped_under_ci(session.config) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if skipped := skipped_under_ci(config):
        terminalreporter.write_sep("=", f"CI=true: {skipped} skipped test(s) fail the run; install what they name")


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory) -> dict[str, str]:
    """The demo models, trained once per session, or read from DEMO_MODELS when it names a directory of them:
    `make mutation` runs each mutant in a session of its own and trains them once for all."""
    from tools.demo import build_models

    built = os.environ.get("DEMO_MODELS")
    paths = sorted(Path(built).iterdir()) if built else build_models(tmp_path_factory.mktemp("models"))
    return {path.name: str(path) for path in paths}


@pytest.fixture(scope="session")
def models_for(demo_models):
    """The --model_uris value for a pattern: x5 alone, or x5 then x10 for the multi_ patterns."""

    def models(pattern: str) -> str:
        if pattern.startswith("multi"):
            return f"{demo_models['multiply_by_5']},{demo_models['multiply_by_10']}"
        return demo_models["multiply_by_5"]

    return models


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    from tools.demo import build_data

    path = tmp_path_factory.mktemp("data")
    build_data(path)
    return path


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    output: str
    dead_letter: str

    def rows(self) -> list[dict]:
        return read_jsonl(self.output)

    def dead_letters(self) -> list[dict]:
        return read_jsonl(self.dead_letter)


def read_jsonl(prefix: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(f"{prefix}-*-of-*.jsonl")):
        with open(path) as f:
            rows.extend(json.loads(line) for line in f)
    return rows


@pytest.fixture
def run_main(tmp_path):
    """Run main.py in a subprocess with the given arguments; --output defaults to a fresh folder."""

    def run(*args: str, output: str | None = "", timeout: int = 300, env: dict | None = None) -> Run:
        """`output=None` runs without --output (the arguments name another sink)."""
        output = str(tmp_path / "out" / "result") if output == "" else output
        command = [sys.executable, str(ROOT / "main.py"), *args, *([f"--output={output}"] if output else [])]
        environment = {**os.environ, **(env or {})}
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=environment)
        return Run(done.returncode, done.stdout, done.stderr, output or "", f"{output}_dead_letter")

    return run


@pytest.fixture(scope="session")
def float_input_model(tmp_path_factory) -> str:
    """A SavedModel whose serving signature takes a float tensor, not serialized Examples."""
    import tensorflow as tf

    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def serve(self, x):
            return {"y": 2 * x}

    path = str(tmp_path_factory.mktemp("float_model") / "doubler")
    module = Doubler()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen | None, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {seconds} s")


@dataclass
class Gcs:
    """A running gcp-storage-emulator: its env for main.py, and a client to set up and read back objects."""

    env: dict
    client: object
    disk: Path

    def upload_tree(self, local: Path, bucket: str, prefix: str) -> None:
        for path in sorted(Path(local).rglob("*")):
            if path.is_file():
                self.client.bucket(bucket).blob(f"{prefix}/{path.relative_to(local)}").upload_from_filename(str(path))

    def read_jsonl(self, bucket: str, prefix: str) -> list[dict]:
        rows = []
        for blob in self.client.list_blobs(bucket, prefix=prefix):
            if blob.name.endswith(".jsonl"):
                rows.extend(json.loads(line) for line in blob.download_as_text().splitlines())
        return rows


@contextlib.contextmanager
def background_server(command: list[str], port: int, what: str, log_path: Path, env: dict | None = None):
    """A local server in its own process group, up when entered and stopped (with its children) on exit."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})}
        )
        try:
            wait_for_port(port, process, what)
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextlib.contextmanager
def emulated_environment(env: dict):
    """`env` set for this process too, and google.auth.default answering with anonymous credentials."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.setattr(google.auth, "default", lambda *args, **kwargs: (AnonymousCredentials(), "test-project"))
        yield


@pytest.fixture(scope="session")
def gcs(tmp_path_factory):
    """gcp-storage-emulator on a loopback port, started and stopped by the tests themselves."""
    from google.cloud import storage

    port = free_port()
    folder = tmp_path_factory.mktemp("gcs")
    command = [str(Path(sys.executable).parent / "gcp-storage-emulator"), "start", "--host=127.0.0.1"]
    command += [f"--port={port}"]
    env = {
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}",
        "TFX_INFERENCE_TEST_ANONYMOUS": "1",
        "PYTHONPATH": str(ROOT / "tests" / "emulators"),
        "TFX_INFERENCE_MODEL_CACHE": str(folder / "model-cache"),
    }
    # Objects are kept on disk, under folder/.cloudstorage/BUCKET/NAME, where the BigQuery emulator reads loads from.
    with (
        background_server(
            command, port, "gcp-storage-emulator", folder / "emulator.log", {"STORAGE_BASE": str(folder)}
        ),
        emulated_environment(env),
    ):
        yield Gcs(env, storage.Client.create_anonymous_client(), folder / ".cloudstorage")


@dataclass
class BigQuery:
    """A running bqemulator: its env for main.py, and a client to make datasets and tables and to query them."""

    env: dict
    project: str = "test-project"

    def __post_init__(self):
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        self.client = bigquery.Client(
            project=self.project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.env["BIGQUERY_EMULATOR_HOST"]),
        )

    def dataset(self, name: str) -> str:
        """A new, empty dataset (tests keep their data in throwaway datasets)."""
        self.client.create_dataset(f"{self.project}.{name}")
        return name

    def table(self, dataset: str, name: str, fields: list[dict], rows: list[dict]) -> str:
        """A table of these fields holding `rows`; returns its PROJECT:DATASET.TABLE spec."""
        from google.cloud import bigquery

        table = bigquery.Table(
            f"{self.project}.{dataset}.{name}", [bigquery.SchemaField.from_api_repr(f) for f in fields]
        )
        self.client.create_table(table)
        if rows:
            errors = self.client.insert_rows_json(table, rows)
            assert not errors, errors
        return f"{self.project}:{dataset}.{name}"

    def rows(self, table: str) -> list[dict]:
        project_dataset_table = table.replace(":", ".")
        return [dict(row) for row in self.client.query(f"SELECT * FROM `{project_dataset_table}`").result()]


@pytest.fixture(scope="session")
def bigquery(gcs, tmp_path_factory):
    """bqemulator (REST and Storage Read gRPC) on loopback ports, reading load files from the GCS emulator's disk."""
    executable = ROOT / ".venv-bqemulator" / "bin" / "bqemulator"
    if not executable.exists():
        pytest.skip("the BigQuery tests need bqemulator: run `make bqemulator` (make test does)")
    rest, grpc_port = free_port(), free_port()
    folder = tmp_path_factory.mktemp("bigquery")
    command = [str(executable), "start", f"--rest-port={rest}", f"--grpc-port={grpc_port}", "--project=test-project"]
    command += ["--log-level=warning"]
    env = {
        **gcs.env,
        "BIGQUERY_EMULATOR_HOST": f"http://127.0.0.1:{rest}",
        "TFX_INFERENCE_TEST_BIGQUERY_GRPC": f"127.0.0.1:{grpc_port}",
    }
    server_env = {"BQEMU_GCS_LOCAL_ROOT": str(gcs.disk)}
    with (
        background_server(command, rest, "bqemulator", folder / "emulator.log", server_env),
        emulated_environment(env),
    ):
        wait_for_port(grpc_port, None, "bqemulator's gRPC port")
        yield BigQuery(env)


@dataclass
class PubSub:
    """A running Pub/Sub emulator: its env for main.py, and clients to make topics, publish and pull."""

    env: dict
    project: str = "test-project"

    def __post_init__(self):
        from google.cloud import pubsub_v1

        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()

    def topic_with_subscription(self, name: str) -> tuple[str, str]:
        topic = f"projects/{self.project}/topics/{name}"
        subscription = f"projects/{self.project}/subscriptions/{name}-sub"
        self.publisher.create_topic(name=topic)
        self.subscriber.create_subscription(name=subscription, topic=topic)
        return topic, subscription

    def publish(self, topic: str, data: bytes, **attributes: str) -> str:
        return self.publisher.publish(topic, data, **attributes).result(timeout=30)

    def pull(self, subscription: str, count: int, seconds: float) -> list:
        """Up to `count` messages, acknowledged, waiting at most `seconds` for them."""
        messages, deadline = [], time.monotonic() + seconds
        while len(messages) < count and time.monotonic() < deadline:
            response = self.subscriber.pull(subscription=subscription, max_messages=count, timeout=5)
            if response.received_messages:
                self.subscriber.acknowledge(
                    subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages]
                )
            messages += [m.message for m in response.received_messages]
        return messages


@pytest.fixture(scope="session")
def pubsub(tmp_path_factory):
    """The gcloud Pub/Sub emulator on a loopback port, started and stopped by the tests themselves."""
    gcloud = shutil.which("gcloud")
    if gcloud is None or shutil.which("java") is None:
        pytest.skip("the Pub/Sub emulator needs gcloud (with the beta and pubsub-emulator components) and Java")
    port = free_port()
    folder = tmp_path_factory.mktemp("pubsub")
    command = [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{port}", f"--data-dir={folder}"]
    env = {
        "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{port}",
        "TFX_INFERENCE_TEST_ANONYMOUS": "1",
        "PYTHONPATH": str(ROOT / "tests" / "emulators"),
    }
    with background_server(command, port, "Pub/Sub emulator", folder / "emulator.log"), emulated_environment(env):
        yield PubSub(env)


@pytest.fixture
def start_main(tmp_path):
    """Start main.py in the background (a streaming run); stop it with SIGTERM when the test ends."""
    started = []

    def start(*args: str, env: dict) -> subprocess.Popen:
        command = [sys.executable, str(ROOT / "main.py"), *args]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env={**os.environ, **env}
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def add_model_version(model_dir: str, base: str | Path, version: int, half_written: bool = False) -> Path:
    """Copy a SavedModel into base/<version>: whole (copied beside it, then renamed into place, so a watcher never
    sees a file half copied), or `half_written`, stopped before the variables' data shard as a copy caught midway.
    """
    target = Path(base) / str(version)
    if not half_written:
        staging = Path(base) / f".copying-{version}"
        shutil.copytree(model_dir, staging)
        staging.rename(target)
    else:
        (target / "variables").mkdir(parents=True)
        shutil.copy(Path(model_dir) / "saved_model.pb", target / "saved_model.pb")
        shutil.copy(Path(model_dir) / "variables" / "variables.index", target / "variables" / "variables.index")
    return target
