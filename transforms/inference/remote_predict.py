"""Remote inference on a Vertex AI endpoint: a batch's instances sent as requests within the endpoint's limits,
retried through the faults remote calls bring, and the predictions mapped back to their records by position.

A batch is cut into requests of at most --remote_instances_per_request instances and 1.5 MiB of body (public
endpoints refuse more: "Request payload size exceeds the limit: 1572864 bytes."); an instance too big to go alone
is its record's dead letter, never sent. The requests go out together through the worker process's pool of
--remote_requests_in_flight threads, which every batch of the process shares, so the process never has more in
flight, whatever Beam's threads do. A request answered 429 (quota), 502, 503 or 504, or not answered within
--remote_timeout_seconds, is sent again after an exponential, jittered back-off for up to
--remote_retry_seconds; one answered 400 or 500 with several instances is halved until the instance the endpoint
fails on stands alone (as a local model's poison example does); every other failure is final. A record whose
request still fails is an `inference` dead letter with the endpoint's status and message. An endpoint splitting
its traffic answers one request from one deployed model and the next from another: each record's row names the
deployed model that answered it, as its version.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
import requests
from apache_beam.ml.inference.base import ModelHandler
from google.api_core import exceptions
from google.api_core.retry import exponential_sleep_generator
from google.cloud.aiplatform_v1.types import PredictRequest, PredictResponse
from google.protobuf import json_format

from transforms.config import ModelSpec, RemoteCalls, endpoint_resource
from transforms.inference.batches import InferenceFailure, ModelAnswer, ModelFeed, ModelOutputs
from transforms.inference.coders import input_size
from transforms.inference.endpoints import api_endpoint, prediction_client, service_error
from transforms.inference.instances import Instance, instance_bytes, request_bytes
from transforms.inference.model_refresh import SERVED, count_model_event, model_metrics_namespace
from transforms.inference.prediction_logs import serialized_tensor_prediction_logs
from transforms.inference.signatures import PREDICTION
from transforms.records.coders import sampled_size

# Responses worth asking again: quota (429), an overloaded or restarting server (502, 503), a deadline (504).
_RETRIED = (exceptions.TooManyRequests, exceptions.BadGateway, exceptions.ServiceUnavailable, exceptions.GatewayTimeout)
# A request that fails on its content may fail on one instance: its halves are tried.
_HALVED = (exceptions.BadRequest, exceptions.InternalServerError)
_FIRST_DELAY_SECONDS = 0.5
_MAX_DELAY_SECONDS = 30.0
RETRIES = "remote_retries"
REQUESTS = "remote_requests"


class RemoteFailure(Exception):
    """A request that failed for good: the endpoint's status and message, or why no answer came."""


def request_slices(sizes: Sequence[int], max_bytes: int, max_instances: int) -> tuple[list[range], list[int]]:
    """Consecutive slices of instances, each request within both limits, and the positions too big to go alone.

    `sizes` are each instance's bytes in a request body (`instance_bytes`); a slice is cut before the instance
    that would take its body past `max_bytes`.
    """
    envelope = request_bytes([])
    slices, oversized = [], []
    start, body = None, 0
    for position, size in enumerate(sizes):
        if envelope + size > max_bytes:
            oversized.append(position)
            if start is not None:
                slices.append(range(start, position))
            start, body = None, 0
            continue
        if start is not None and (position - start >= max_instances or body + 2 + size > max_bytes):
            slices.append(range(start, position))
            start = None
        if start is None:
            start, body = position, envelope + size
        else:
            body += 2 + size
    if start is not None:
        slices.append(range(start, len(sizes)))
    return slices, oversized


def prediction_arrays(predictions: list[Any], count: int) -> dict[str, np.ndarray]:
    """The endpoint's predictions as output arrays, a row per instance; RemoteFailure when they cannot be.

    JSON objects give an array per key (every prediction must have the same keys); plain values one array,
    PREDICTION. Numbers come back as doubles (protobuf Values), text as UTF-8 bytes (as a SavedModel's strings).
    """
    if len(predictions) != count:
        raise RemoteFailure(f"the endpoint answered {len(predictions)} predictions for {count} instances")
    if all(isinstance(prediction, dict) for prediction in predictions):
        keys = set(predictions[0]) if predictions else set()
        if any(set(prediction) != keys for prediction in predictions):
            raise RemoteFailure("the endpoint's predictions are JSON objects with different keys")
        columns = {key: [prediction[key] for prediction in predictions] for key in sorted(keys)}
    else:
        columns = {PREDICTION: predictions}
    return {alias: _array(alias, values) for alias, values in columns.items()}


def _array(alias: str, values: list[Any]) -> np.ndarray:
    try:
        array = np.asarray(values)
    except ValueError:
        raise RemoteFailure(f"the endpoint's output {alias!r} has predictions of different shapes") from None
    if array.dtype.kind == "U":
        return np.char.encode(array, "utf-8").astype(object)
    if array.dtype.kind not in "fib":
        raise RemoteFailure(f"the endpoint's output {alias!r} mixes numbers, text or objects: {str(values)[:80]}")
    return array


def _status(error: Exception) -> str:
    """The endpoint's answer as a dead letter quotes it: `429 RESOURCE_EXHAUSTED: Quota exceeded ...`."""
    if isinstance(error, exceptions.GoogleAPICallError):
        status, message = service_error(error)
        return f"{error.code} {status}: {message}"
    return f"{type(error).__name__}: {error}"


def _retried(error: Exception) -> bool:
    return isinstance(error, (*_RETRIED, requests.Timeout, requests.ConnectionError))


class VertexEndpoint:
    """An endpoint as a worker process holds it: the client, and the pool that bounds the requests in flight.

    RunInference shares the loaded model among the process's threads, and so this one pool.
    """

    def __init__(self, resource: str, calls: RemoteCalls):
        self.resource = resource
        self._calls = calls
        self._client = prediction_client(api_endpoint(resource, calls.api_endpoint))
        self._pool = ThreadPoolExecutor(calls.requests_in_flight, thread_name_prefix="vertex-predict")

    def submit(self, call: Callable[..., Any], *args: Any) -> Future:
        """`call(*args)` on one of the pool's threads: while it runs, it holds one of the requests in flight."""
        return self._pool.submit(call, *args)

    def predict(self, instances: list[Instance], namespace: str) -> tuple[str | None, list[Any]]:
        """The deployed model that answered and its predictions, after retries; RemoteFailure when none came."""
        request = json_format.ParseDict({"instances": instances}, PredictRequest.pb(PredictRequest()))
        request.endpoint = self.resource
        deadline = time.monotonic() + self._calls.retry_seconds
        delays = exponential_sleep_generator(_FIRST_DELAY_SECONDS, _MAX_DELAY_SECONDS)
        for attempt in itertools.count(1):
            beam.metrics.Metrics.counter(namespace, REQUESTS).inc()
            try:
                response = self._client.predict(request=request, timeout=self._calls.timeout_seconds)
            except Exception as error:
                delay = next(delays)
                if not _retried(error) or time.monotonic() + delay > deadline:
                    message = f"Vertex AI endpoint {self.resource}: {_status(error)}{_tries(attempt)}"
                    raise RemoteFailure(message) from error
                logging.warning("Vertex AI endpoint %s: %s; again in %.1f s", self.resource, _status(error), delay)
                beam.metrics.Metrics.counter(namespace, RETRIES).inc()
                time.sleep(delay)
                continue
            answer = json_format.MessageToDict(PredictResponse.pb(response))
            return answer.get("deployedModelId") or None, answer.get("predictions", [])


def _tries(attempts: int) -> str:
    return "" if attempts == 1 else f" (after {attempts} attempts)"


@dataclass
class _Part:
    """The records of one request (or of a halved request's part) and what came of them."""

    positions: range
    version: str | None = None
    arrays: dict[str, np.ndarray] | None = None
    failure: Exception | None = None


def _answered(endpoint: VertexEndpoint, instances: list[Instance], positions: range, namespace: str) -> list[_Part]:
    """One request's parts: its answer, or, when it fails on its content, its halves' answers, and so on down."""
    try:
        version, predictions = endpoint.predict([instances[p] for p in positions], namespace)
    except RemoteFailure as failure:
        if not isinstance(failure.__cause__, _HALVED) or len(positions) == 1:
            return [_Part(positions, failure=failure)]
    else:
        try:
            return [_Part(positions, version, prediction_arrays(predictions, len(positions)))]
        except RemoteFailure as failure:
            return [_Part(positions, failure=RemoteFailure(f"Vertex AI endpoint {endpoint.resource}: {failure}"))]
    middle = positions.start + len(positions) // 2
    head = _answered(endpoint, instances, range(positions.start, middle), namespace)
    return head + _answered(endpoint, instances, range(middle, positions.stop), namespace)


class EndpointModelHandler(ModelHandler):
    """Each element is a batch the source made (a ModelFeed) of JSON instances; its answers come out, one per
    deployed model that answered, and one more holding the records whose requests failed.

    With `prediction_logs` each record's answer is its serialized PredictionLog: the request holds the record's
    features as tensors, the response's model_spec names the endpoint and, as its version, the deployed model.
    """

    def __init__(self, model: ModelSpec, calls: RemoteCalls, prediction_logs: bool = False):
        super().__init__()
        self._model = model
        self._resource = endpoint_resource(model.uri)
        self._calls = calls
        self._prediction_logs = prediction_logs

    def should_skip_batching(self) -> bool:
        return True

    def load_model(self) -> VertexEndpoint:
        return VertexEndpoint(self._resource, self._calls)

    def run_inference(self, feed: ModelFeed, endpoint: VertexEndpoint, inference_args=None) -> list[ModelAnswer]:
        namespace = model_metrics_namespace(self._model.name)
        sizes = [instance_bytes(instance) for instance in feed.inputs]
        slices, oversized = request_slices(sizes, self._calls.max_request_bytes, self._calls.instances_per_request)
        pending = [endpoint.submit(_answered, endpoint, feed.inputs, s, namespace) for s in slices]
        parts = [part for request in pending for part in request.result()]
        failures = {
            position: InferenceFailure(
                f"its instance takes {sizes[position]} bytes of a request, over the endpoint's limit of "
                f"{self._calls.max_request_bytes}: it cannot be sent"
            )
            for position in oversized
        }
        by_version: dict[str | None, list[_Part]] = {}
        for part in parts:
            if part.failure is not None:
                failures.update({position: InferenceFailure(str(part.failure)) for position in part.positions})
            else:
                by_version.setdefault(part.version, []).append(part)
        answers = [self._answer(feed, version, served, failures) for version, served in by_version.items()]
        answers = [answer for answer in answers if answer is not None]
        if failures:
            failed = sorted(failures)
            numbered = tuple((index, failures[position]) for index, position in enumerate(failed))
            answers.append(ModelAnswer(feed.batch.take(failed), None, numbered))
        return answers

    def _answer(self, feed: ModelFeed, version: str | None, parts: list[_Part], failures: dict) -> ModelAnswer | None:
        """The records one deployed model answered, with its outputs; a part whose outputs differ fails instead."""
        aliases = set(parts[0].arrays)
        for part in parts[1:]:
            if set(part.arrays) != aliases:
                message = (
                    f"Vertex AI endpoint {self._resource} answered outputs {sorted(part.arrays)} here and "
                    f"{sorted(aliases)} for other records of the batch, from the same deployed model {version}"
                )
                failures.update({position: InferenceFailure(message) for position in part.positions})
        parts = [part for part in parts if set(part.arrays) == aliases]
        positions = [position for part in parts for position in part.positions]
        arrays = {alias: np.concatenate([part.arrays[alias] for part in parts]) for alias in sorted(aliases)}
        count_model_event(_served_by(self._model, version), SERVED, len(positions))
        batch = feed.batch.take(positions)
        logs = None
        if self._prediction_logs:
            features = [record.features for record in batch.records]
            logs = tuple(remote_prediction_logs(features, arrays, self._resource, version))
            arrays = {}
        return ModelAnswer(batch, ModelOutputs(self._model.name, version, arrays, logs))

    def get_num_bytes(self, feed: ModelFeed) -> int:
        # RunInference's batch-size metric only: the coder's estimate, not a second JSON encoding of every instance.
        return sampled_size(feed.inputs, input_size)


def _served_by(model: ModelSpec, version: str | None) -> ModelSpec:
    return ModelSpec(model.uri, model.name, version=version)


def _tensor(value: Any) -> np.ndarray:
    """A feature's value as the request tensor of its PredictionLog, shape [1, ...]: text as UTF-8 bytes."""
    values = np.asarray([value])
    if values.dtype.kind == "U":
        return np.char.encode(values, "utf-8").astype(object)
    return values


def remote_prediction_logs(
    features: list[dict[str, Any]], arrays: dict[str, np.ndarray], resource: str, version: str | None
) -> list[bytes]:
    """One serialized PredictionLog per record: its features as the request's tensors, its predictions as the
    response's, the response's model_spec naming the endpoint and the deployed model that answered."""
    logs = []
    for position, record_features in enumerate(features):
        inputs = {name: _tensor(value) for name, value in record_features.items()}
        outputs = {alias: values[position : position + 1] for alias, values in arrays.items()}
        logs += serialized_tensor_prediction_logs(inputs, outputs, "", version, model_name=resource)
    return logs
