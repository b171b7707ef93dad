"""A local stand-in of Vertex AI endpoints on loopback: the real google-cloud-aiplatform client's REST requests
answered by running SavedModels, with the faults a test or a benchmark asks for.

    python -m tools.vertex_endpoint --port 8470 \\
        --endpoint projects/p/locations/us-central1/endpoints/5=1001:demo/models/x5[+1002:demo/models/x5_v2]

The client is pointed here with `client_options.api_endpoint="http://127.0.0.1:PORT"` (the template's
--vertex_api_endpoint), which its REST transport honours. Each endpoint serves one deployed model, or several
taking turns request by request (a traffic split). POST /stand-in/faults sets the faults of the requests that
follow; GET /stand-in/stats tells what came in; POST /stand-in/reset clears both.

Where each behaviour comes from:
- `GET /v1/{name=projects/*/locations/*/endpoints/*}` answering the Endpoint (name, displayName, deployedModels
  with id, model, displayName; trafficSplit) and `POST /v1/{endpoint=...}:predict` taking `{"instances": [...]}`
  and answering `{"predictions": [...], "deployedModelId", "model", "modelDisplayName", "modelVersionId"}`: the
  Vertex AI v1 REST reference, and the routes in google-cloud-aiplatform's own REST transport
  (aiplatform_v1/services/{endpoint,prediction}_service/transports/rest_base.py);
- errors as `{"error": {"code", "message", "status"}}`, which google-api-core maps to its exceptions: the Google
  API error model (cloud.google.com/apis/design/errors) and google-api-core's `format_http_response_error`;
- instances in TF Serving's row format, a prediction per instance, bare values when the model has one output
  and an object per instance when it has several, and `{"b64": ...}` for binary values: the TF Serving REST API
  ("If the output of the model contains only one named tensor, we omit the name"), which Vertex AI's prebuilt
  TensorFlow containers serve;
- 404 NOT_FOUND "Endpoint `...` not found." for an unknown endpoint, and 403 PERMISSION_DENIED "Permission
  'aiplatform.endpoints.get' denied on resource ..." for a caller without the role: the messages Vertex AI
  gives, as quoted in public reports (googleapis/python-aiplatform issues);
- 429 RESOURCE_EXHAUSTED "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model
  ...": the message and status quoted in public reports of Vertex AI quota errors (cline/cline#651,
  google-cloud-japan/sa-ml-workshop#48); 503 UNAVAILABLE when replicas are overloaded: the error model's
  UNAVAILABLE;
- 400 INVALID_ARGUMENT "Request payload size exceeds the limit: 1572864 bytes." for a body over 1.5 MiB: the
  message quoted in ageron/handson-ml2#205 and GoogleCloudPlatform/python-docs-samples#1247, and gcloud's `ai
  endpoints predict` reference ("the payload limit size (currently, 1.5MB)");
- a model failing on a request as 400 "Failed to handle request. endpoint_id: E, deployed_model_id: D with
  error: ...": the message quoted in googleapis/python-aiplatform#190. TF Serving fails a whole request when one
  instance fails.
Modelled, no public source: a slow answer (`delay_seconds`) and fewer predictions than instances
(`drop_predictions`), which a custom container can give; the real service's own answers are never short.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tools.pubsub_emulator import free_port

PAYLOAD_LIMIT = 1_572_864
_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_MESSAGES = {
    429: "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model with base model: "
    "{model}. Please submit a quota increase request.",
    503: "The service is currently unavailable.",
    500: "Internal error encountered.",
}


class Failure(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Deployed:
    """One deployed model: its id, the SavedModel it runs, and that model's serving signature."""

    id: str
    path: str
    signature: Any = None

    @property
    def display_name(self) -> str:
        return Path(self.path).name

    def load(self) -> None:
        self.signature = tf.saved_model.load(self.path).signatures["serving_default"]

    def predict(self, instances: list[Any], endpoint: str) -> list[Any]:
        inputs = self.signature.structured_input_signature[1]
        if len(inputs) == 1 and not all(isinstance(instance, dict) for instance in instances):
            instances = [{next(iter(inputs)): instance} for instance in instances]
        feeds = {}
        for name, spec in inputs.items():
            try:
                values = [_decoded(instance[name]) for instance in instances]
            except (KeyError, TypeError):
                raise Failure(400, f"JSON object: does not have named input: {name}") from None
            feeds[name] = tf.constant(np.asarray(values, dtype=spec.dtype.as_numpy_dtype))
        try:
            outputs = {name: value.numpy() for name, value in self.signature(**feeds).items()}
        except Exception as error:  # the model's own failure, as Vertex AI reports it
            lines = [line.strip() for line in str(error).splitlines()]
            kept = [line for line in lines if line and line != "Graph execution error:" and not line.startswith("[[")]
            message = " ".join(kept) or type(error).__name__
            raise Failure(
                400,
                f"Failed to handle request. endpoint_id: {endpoint.rsplit('/', 1)[-1]}, deployed_model_id: "
                f"{self.id} with error: `{message}`",
            ) from None
        if len(outputs) == 1:
            return [_plain(row) for row in next(iter(outputs.values()))]
        return [{name: _plain(values[i]) for name, values in outputs.items()} for i in range(len(instances))]


def _decoded(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    return value


def _plain(value: np.ndarray) -> Any:
    value = value.tolist() if isinstance(value, np.ndarray) else value.item() if hasattr(value, "item") else value
    return value.decode("utf-8") if isinstance(value, bytes) else value


@dataclass
class Faults:
    """What the next requests meet. `fail`: [{"status": 429, "times": 2}, ...], used up in order."""

    fail: list[dict] = field(default_factory=list)
    delay_seconds: float = 0.0
    drop_predictions: int = 0
    deny: bool = False
    limit_bytes: int = PAYLOAD_LIMIT


@dataclass
class Stats:
    requests: int = 0
    predict_requests: int = 0
    body_bytes: list[int] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    instances: int = 0
    in_flight: int = 0
    max_in_flight: int = 0


class StandIn:
    """The endpoints, their faults and what they have seen; thread-safe."""

    def __init__(self, endpoints: dict[str, list[Deployed]]):
        self.endpoints = endpoints
        self._turns = {name: itertools.cycle(models) for name, models in endpoints.items()}
        self._lock = threading.Lock()
        self.faults = Faults()
        self.stats = Stats()

    def reset(self) -> None:
        with self._lock:
            self.faults, self.stats = Faults(), Stats()

    def set_faults(self, faults: dict) -> None:
        with self._lock:
            self.faults = Faults(**faults)

    def endpoint(self, name: str) -> dict:
        self._check_access(name, "get")
        models = self.endpoints[name]
        share = 100 // len(models)
        return {
            "name": name,
            "displayName": name.rsplit("/", 1)[-1],
            "deployedModels": [
                {"id": m.id, "model": _model_name(name, m), "displayName": m.display_name} for m in models
            ],
            "trafficSplit": {m.id: share + (100 - share * len(models) if i == 0 else 0) for i, m in enumerate(models)},
        }

    def _check_access(self, name: str, verb: str) -> None:
        if self.faults.deny:
            raise Failure(
                403,
                f"Permission 'aiplatform.endpoints.{verb}' denied on resource '//aiplatform.googleapis.com/{name}' "
                "(or it may not exist).",
            )
        if name not in self.endpoints:
            raise Failure(404, f"Endpoint `{name}` not found.")

    def predict(self, name: str, body: bytes) -> dict:
        self._check_access(name, "predict")
        with self._lock:
            faults = self.faults
            self.stats.predict_requests += 1
            self.stats.body_bytes.append(len(body))
            failure = None
            if faults.fail:
                failure = faults.fail[0]
                failure["times"] -= 1
                if failure["times"] <= 0:
                    faults.fail.pop(0)
            deployed = next(self._turns[name])
        if faults.delay_seconds:
            time.sleep(faults.delay_seconds)
        if failure is not None:
            code = failure["status"]
            raise Failure(code, failure.get("message") or _MESSAGES.get(code, "").format(model=deployed.id))
        if len(body) > faults.limit_bytes:
            raise Failure(400, f"Request payload size exceeds the limit: {faults.limit_bytes} bytes.")
        instances = json.loads(body)["instances"]
        with self._lock:
            self.stats.instances += len(instances)
        predictions = deployed.predict(instances, name)
        if faults.drop_predictions:
            predictions = predictions[: max(len(predictions) - faults.drop_predictions, 0)]
        return {
            "predictions": predictions,
            "deployedModelId": deployed.id,
            "model": _model_name(name, deployed),
            "modelDisplayName": deployed.display_name,
            "modelVersionId": "1",
        }

    def started(self) -> None:
        with self._lock:
            self.stats.requests += 1
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)

    def finished(self, status: int) -> None:
        with self._lock:
            self.stats.in_flight -= 1
            self.stats.statuses.append(status)


def _model_name(endpoint: str, deployed: Deployed) -> str:
    return endpoint.split("/endpoints/")[0] + f"/models/{deployed.display_name}"


def handler_for(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # the tests read stats, not an access log
            pass

        def _send(self, code: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _answer(self, work) -> None:
            stand_in.started()
            code = 200
            try:
                payload = work()
            except Failure as failure:
                code = failure.code
                payload = {"error": {"code": code, "message": str(failure), "status": _STATUS.get(code, "UNKNOWN")}}
            finally:
                stand_in.finished(code)
            self._send(code, payload)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/stand-in/stats":
                self._send(200, stand_in.stats.__dict__)
            elif path.startswith("/v1/"):
                self._answer(lambda: stand_in.endpoint(path[len("/v1/") :]))
            else:
                self._send(404, {"error": {"code": 404, "message": f"no route {path}", "status": "NOT_FOUND"}})

        def do_POST(self) -> None:
            path = self.path.split("?")[0]
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if path == "/stand-in/faults":
                stand_in.set_faults(json.loads(body))
                self._send(200, {})
            elif path == "/stand-in/reset":
                stand_in.reset()
                self._send(200, {})
            elif path.startswith("/v1/") and path.endswith(":predict"):
                self._answer(lambda: stand_in.predict(path[len("/v1/") : -len(":predict")], body))
            else:
                self._send(404, {"error": {"code": 404, "message": f"no route {path}", "status": "NOT_FOUND"}})

    return Handler


def export_instance_model(path: str, outputs) -> str:
    """A SavedModel as Vertex AI's TensorFlow containers serve one: a named float input `x` of shape [None] (a
    number per instance) and `outputs(x)`, a dict of named outputs."""

    class Served(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return outputs(x)

    module = Served()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def parse_endpoint(text: str) -> tuple[str, list[Deployed]]:
    """`RESOURCE=ID:DIR[+ID:DIR...]`."""
    name, _, models = text.partition("=")
    deployed = []
    for item in models.split("+"):
        model_id, _, path = item.partition(":")
        deployed.append(Deployed(model_id, path))
    return name, deployed


@contextlib.contextmanager
def running(endpoints: list[str], log: Path) -> Iterator[str]:
    """The stand-in in a process of its own, serving `endpoints` (`RESOURCE=ID:DIR`); yields its address."""
    port = free_port()
    command = [sys.executable, "-m", "tools.vertex_endpoint", f"--port={port}"]
    with open(log, "w") as output:
        process = subprocess.Popen(
            command + [f"--endpoint={endpoint}" for endpoint in endpoints],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            while process.poll() is None:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.2)
            else:
                raise RuntimeError(f"the Vertex AI stand-in exited with code {process.returncode}; see {log}")
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--endpoint", action="append", required=True, help="RESOURCE=ID:DIR[+ID:DIR...]")
    args = parser.parse_args(argv)
    endpoints = dict(parse_endpoint(text) for text in args.endpoint)
    for models in endpoints.values():
        for deployed in models:
            deployed.load()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(StandIn(endpoints)))
    server.daemon_threads = True
    print(f"Vertex AI stand-in on http://127.0.0.1:{args.port}: {', '.join(endpoints)}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
