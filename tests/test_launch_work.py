"""The launcher's work does not grow with the number of input files, and the job still reads every one."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

pytestmark = pytest.mark.slow

BUCKET = "launch-work"
# Cloud Storage's JSON API returns at most this many objects per list call, with a nextPageToken for the rest
# (objects.list, maxResults: "The service will use this parameter or 1,000 items, whichever is smaller",
# https://cloud.google.com/storage/docs/json_api/v1/objects/list). gcp-storage-emulator returns every object in
# one answer, so the proxy pages them: a launch that read past the first page would make a second list call.
PAGE = 1000


class CountingProxy:
    """A loopback HTTP proxy in front of the GCS emulator that records every request and pages object lists."""

    def __init__(self, target: str):
        self.target = urlsplit(target).netloc
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # the test reads the counts, not a log
                pass

            def _forward(self):
                path, _, query = self.path.partition("?")
                params = parse_qs(query)
                proxy.requests.append((self.command, unquote(path), params))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream = http.client.HTTPConnection(proxy.target, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                if self.command == "GET" and path == f"/storage/v1/b/{BUCKET}/o" and answer.status == 200:
                    data = _page(data, params)
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def listings(self, prefix: str) -> int:
        """List calls on the bucket whose prefix starts with `prefix`, each page counted."""
        return sum(
            command == "GET"
            and path == f"/storage/v1/b/{BUCKET}/o"
            and params.get("prefix", [""])[0].startswith(prefix)
            for command, path, params in self.requests
        )

    def object_requests(self, folder: str) -> int:
        """Requests naming one object under `folder`: a read fetches the object's metadata here, then downloads from
        the mediaLink the emulator wrote at upload time, which names the emulator itself."""
        return sum(f"/b/{BUCKET}/o/{folder}/" in path for _, path, _ in self.requests)


def _page(listing: bytes, params: dict[str, list[str]]) -> bytes:
    """One page of a full object listing, as Cloud Storage would answer; the page token is the offset."""
    answer = json.loads(listing)
    items = answer.get("items", [])
    start = int(params.get("pageToken", ["0"])[0])
    size = min(int(params.get("maxResults", [PAGE])[0]), PAGE)
    answer["items"] = items[start : start + size]
    if start + size < len(items):
        answer["nextPageToken"] = str(start + size)
    return json.dumps(answer).encode()


@contextmanager
def counting_proxy(target: str) -> Iterator[CountingProxy]:
    proxy = CountingProxy(target)
    thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()


@pytest.fixture(scope="module")
def inputs(gcs, demo_models) -> dict[str, int]:
    """Two input folders of one-record CSV files: a few, and thousands."""
    bucket = gcs.client.create_bucket(BUCKET)
    gcs.upload_tree(demo_models["multiply_by_5"], BUCKET, "models/multiply_by_5")
    counts = {"few": 3, "many": 2000}
    for folder, count in counts.items():
        for i in range(count):
            bucket.blob(f"{folder}/part-{i:05d}.csv").upload_from_string(f"key,x\n{folder}-{i},{i}\n")
    return counts


def _launch(run_main, gcs, folder: str, proxy: CountingProxy, tmp_path) -> None:
    """main.py as the Flex Template launcher runs it: DataflowRunner, writing the job file instead of submitting."""
    run = run_main(
        "--pattern=keyed",
        f"--model_uris=gs://{BUCKET}/models/multiply_by_5",
        f"--input=gs://{BUCKET}/{folder}/*.csv",
        "--runner=DataflowRunner",
        "--project=local-project",
        "--region=us-central1",
        f"--job_name=launch-{folder}",
        f"--temp_location=gs://{BUCKET}/temp",
        f"--staging_location=gs://{BUCKET}/staging",
        "--sdk_container_image=us-central1-docker.pkg.dev/p/r/template@sha256:" + "0" * 64,
        f"--template_location=gs://{BUCKET}/staging/template_launches/{folder}/job_object",
        output=f"gs://{BUCKET}/out/{folder}",
        env={**gcs.env, "STORAGE_EMULATOR_HOST": proxy.url},
    )
    assert run.returncode == 0, run.stderr
    assert "written for DataflowRunner as the job file" in run.stdout


def test_the_launch_makes_the_same_requests_for_three_files_as_for_two_thousand(run_main, gcs, inputs, tmp_path):
    reads = {}
    for folder in inputs:
        with counting_proxy(gcs.env["STORAGE_EMULATOR_HOST"]) as proxy:
            _launch(run_main, gcs, folder, proxy, tmp_path)
        # One list call (to refuse a pattern that matches nothing and settle the format), even with two pages to list.
        assert proxy.listings(f"{folder}/") == 1, proxy.requests
        reads[folder] = proxy.object_requests(folder)
    assert reads["many"] == reads["few"] == 1, reads


def test_the_job_reads_every_one_of_two_thousand_files(run_main, gcs, inputs):
    run = run_main(
        "--pattern=keyed",
        f"--model_uris=gs://{BUCKET}/models/multiply_by_5",
        f"--input=gs://{BUCKET}/many/*.csv",
        output=f"gs://{BUCKET}/out/many-direct",
        env=gcs.env,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr
    keys = sorted(row["key"] for row in gcs.read_jsonl(BUCKET, "out/many-direct"))
    assert keys == sorted(f"many-{i}" for i in range(inputs["many"]))
    assert "reconciled               yes" in run.stdout
