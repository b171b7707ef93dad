"""Remote inference on Vertex AI endpoints, against the local stand-in (tools/vertex_endpoint.py) that the real
google-cloud-aiplatform client calls: every pattern, a local model feeding a remote one, each injected fault with
its documented outcome, and the launch refusing an endpoint that cannot serve."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass

import pytest
import tensorflow as tf
from conftest import ROOT, background_server, free_port, read_jsonl
from google.cloud.aiplatform_v1.types import PredictRequest
from google.protobuf import json_format
from tensorflow_serving.apis import prediction_log_pb2
from test_patterns import export_exact_multipliers

from tools.vertex_endpoint import export_instance_model
from transforms.config import ModelSpec, RemoteCalls
from transforms.inference.batches import Batch, ModelFeed
from transforms.inference.instances import RecordInstances, request_bytes
from transforms.inference.remote_predict import (
    PREDICTION,
    EndpointModelHandler,
    RemoteFailure,
    prediction_arrays,
    request_slices,
)
from transforms.records.parsing import Record

PROJECT = "projects/test-project/locations/us-central1/endpoints"
X5, X10, SPLIT, TWO, STRICT = (f"{PROJECT}/{name}" for name in ("5", "10", "split", "two", "strict"))


# --- pure pieces -------------------------------------------------------------------------------------------------


def test_a_job_without_endpoints_never_imports_the_vertex_ai_client():
    # google-cloud-aiplatform's clients cost every process 77 MB and a second of imports: only endpoints pay them.
    probe = "import sys, main, transforms.pipeline; print(sorted(m for m in sys.modules if 'aiplatform' in m))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "instances",
    [
        [{"x": 1.5}],
        [{"x": 1.0, "name": "é ü \u4e2d", "flag": True}, {"x": [0.1, 2.5, 1e20, -3.0]}],
        [{"grid": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "blob": {"b64": "AAEC"}}] * 3,
        [{}],
    ],
)
def test_request_bytes_is_the_body_the_rest_transport_sends(instances):
    request = json_format.ParseDict({"instances": instances}, PredictRequest.pb(PredictRequest()))
    body = json_format.MessageToJson(request, use_integers_for_enums=True)  # as the REST transport writes it
    assert request_bytes(instances) == len(body.encode())


def test_instances_carry_features_as_the_wire_does_and_refuse_what_it_cannot():
    build = RecordInstances({"dense_input": "x"})
    assert build({"x": 2, "note": "a", "raw": b"\x00\xff", "v": [1, 2.5]}) == {
        "dense_input": 2.0,
        "note": "a",
        "raw": {"b64": "AP8="},
        "v": [1.0, 2.5],
    }
    with pytest.raises(ValueError, match=r"feature 'id' is 9007199254740993, which a JSON instance cannot carry"):
        build({"id": 2**53 + 1})
    assert build({"id": 2**53}) == {"id": float(2**53)}
    with pytest.raises(ValueError, match="feature 'x' is nan, which a JSON instance cannot hold"):
        build({"x": float("nan")})


def test_request_slices_keep_each_request_within_both_limits():
    envelope = request_bytes([])
    sizes = [100] * 10
    slices, oversized = request_slices(sizes, max_bytes=envelope + 3 * 100 + 2 * 2, max_instances=64)
    assert slices == [range(0, 3), range(3, 6), range(6, 9), range(9, 10)] and oversized == []
    slices, _ = request_slices(sizes, max_bytes=10**6, max_instances=4)
    assert slices == [range(0, 4), range(4, 8), range(8, 10)]
    slices, oversized = request_slices([100, 10**6, 100, 100], max_bytes=envelope + 500, max_instances=64)
    assert slices == [range(0, 1), range(2, 4)] and oversized == [1], "an instance too big alone is never sent"
    slices, oversized = request_slices([envelope], max_bytes=2 * envelope, max_instances=1)
    assert slices == [range(0, 1)] and oversized == []


def test_prediction_arrays_map_answers_to_instances_by_position():
    arrays = prediction_arrays([1.0, 2.0, 3.0], 3)
    assert list(arrays) == [PREDICTION] and arrays[PREDICTION].tolist() == [1.0, 2.0, 3.0]
    arrays = prediction_arrays([{"y": [1.0], "label": "a"}, {"y": [2.0], "label": "b"}], 2)
    assert arrays["y"].tolist() == [[1.0], [2.0]] and arrays["label"].tolist() == [b"a", b"b"]
    with pytest.raises(RemoteFailure, match="answered 2 predictions for 3 instances"):
        prediction_arrays([1.0, 2.0], 3)
    with pytest.raises(RemoteFailure, match="JSON objects with different keys"):
        prediction_arrays([{"y": 1.0}, {"z": 1.0}], 2)
    with pytest.raises(RemoteFailure, match="predictions of different shapes"):
        prediction_arrays([[1.0], [1.0, 2.0]], 2)


# --- against the stand-in ----------------------------------------------------------------------------------------


def below_1000_times_10(x):
    with tf.control_dependencies([tf.debugging.assert_less(x, 1000.0, message="x must be below 1000")]):
        return {"y": 10 * x}


@dataclass
class StandIn:
    """The running stand-in: its address for --vertex_api_endpoint, and its fault and stats routes."""

    address: str

    def _post(self, path: str, payload: dict) -> None:
        request = urllib.request.Request(f"{self.address}{path}", json.dumps(payload).encode(), method="POST")
        urllib.request.urlopen(request, timeout=10).read()

    def faults(self, **faults) -> None:
        self._post("/stand-in/faults", faults)

    def reset(self) -> None:
        self._post("/stand-in/reset", {})

    def stats(self) -> dict:
        return json.loads(urllib.request.urlopen(f"{self.address}/stand-in/stats", timeout=10).read())


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    folder = tmp_path_factory.mktemp("endpoint_models")
    x5 = export_instance_model(str(folder / "x5"), lambda x: {"y": 5 * x})
    x10 = export_instance_model(str(folder / "x10"), lambda x: {"y": 10 * x})
    two = export_instance_model(str(folder / "two"), lambda x: {"y": 5 * x, "z": 10 * x})
    strict = export_instance_model(str(folder / "strict"), below_1000_times_10)
    port = free_port()
    endpoints = [f"{X5}=1001:{x5}", f"{X10}=2001:{x10}", f"{SPLIT}=3001:{x5}+3002:{x5}", f"{TWO}=4001:{two}"]
    endpoints.append(f"{STRICT}=5001:{strict}")
    command = [sys.executable, "-m", "tools.vertex_endpoint", f"--port={port}"]
    command += [f"--endpoint={endpoint}" for endpoint in endpoints]
    with background_server(command, port, "Vertex AI stand-in", folder / "stand_in.log", env={"PYTHONPATH": str(ROOT)}):
        yield StandIn(f"http://127.0.0.1:{port}")


@pytest.fixture
def endpoint(stand_in):
    stand_in.reset()
    yield stand_in
    stand_in.reset()


def feed(xs: list[float]) -> ModelFeed:
    records = [Record(f"r{i}", f"k{i}", {"x": x}, b"", "test") for i, x in enumerate(xs)]
    batch = Batch(records)
    return ModelFeed(batch, RecordInstances().batch(batch))


def answered(resource: str, endpoint: StandIn, xs: list[float], **calls) -> list:
    calls = RemoteCalls(api_endpoint=endpoint.address, **{"retry_seconds": 5, "timeout_seconds": 5, **calls})
    handler = EndpointModelHandler(ModelSpec(f"vertex://{resource}", "m"), calls)
    return handler.run_inference(feed(xs), handler.load_model())


def by_record(answers) -> dict[str, tuple]:
    """Record id -> (version, prediction) for the records answered, or (None, message) for those that failed."""
    result = {}
    for answer in answers:
        for position, failure in answer.failures:
            result[answer.batch.records[position].id] = (None, str(failure))
        if answer.outputs is not None:
            for record, value in zip(answer.batch.records, answer.outputs.arrays[PREDICTION], strict=True):
                result[record.id] = (answer.outputs.version, float(value))
    return result


def test_a_batch_is_split_into_requests_and_mapped_back_by_position(endpoint):
    xs = [float(i) / 8 for i in range(150)]
    results = by_record(answered(X5, endpoint, xs, instances_per_request=64, requests_in_flight=2))
    assert results == {f"r{i}": ("1001", 5 * x) for i, x in enumerate(xs)}
    assert endpoint.stats()["predict_requests"] == 3 and endpoint.stats()["instances"] == 150


def test_requests_stay_under_the_payload_limit_and_are_never_refused_for_it(endpoint):
    # Each instance carries a 20 kB text: 200 of them would be 4 MB, which the endpoint refuses in one request.
    records = [Record(f"r{i}", None, {"x": float(i), "note": "n" * 20_000}, b"", "t") for i in range(200)]
    batch = Batch(records)
    calls = RemoteCalls(api_endpoint=endpoint.address, instances_per_request=500, timeout_seconds=10)
    handler = EndpointModelHandler(ModelSpec(f"vertex://{X5}", "m"), calls)
    answers = handler.run_inference(ModelFeed(batch, RecordInstances().batch(batch)), handler.load_model())
    assert [len(a.failures) for a in answers] == [0]
    assert answers[0].outputs.arrays[PREDICTION].tolist() == [5.0 * i for i in range(200)]
    stats = endpoint.stats()
    assert stats["predict_requests"] >= 3 and max(stats["body_bytes"]) <= 1_572_864
    assert set(stats["statuses"]) == {200}


def test_an_instance_over_the_limit_alone_is_a_dead_letter_and_never_sent(endpoint):
    records = [
        Record("small", None, {"x": 1.0}, b"", "t"),
        Record("huge", None, {"x": 2.0, "n": "n" * 2**21}, b"", "t"),
    ]
    batch = Batch(records)
    calls = RemoteCalls(api_endpoint=endpoint.address)
    handler = EndpointModelHandler(ModelSpec(f"vertex://{X5}", "m"), calls)
    results = by_record(handler.run_inference(ModelFeed(batch, RecordInstances().batch(batch)), handler.load_model()))
    assert results["small"] == ("1001", 5.0)
    assert (
        results["huge"][1].startswith("its instance takes 2097")
        and "over the endpoint's limit of 1572864" in (results["huge"][1])
    )
    assert endpoint.stats()["instances"] == 1


@pytest.mark.parametrize("status", [429, 503])
def test_quota_and_unavailable_answers_are_retried_until_they_pass(endpoint, status):
    endpoint.faults(fail=[{"status": status, "times": 2}])
    results = by_record(answered(X5, endpoint, [1.0, 2.0]))
    assert results == {"r0": ("1001", 5.0), "r1": ("1001", 10.0)}
    assert endpoint.stats()["statuses"] == [status, status, 200]


def test_a_request_still_failing_after_the_retry_period_is_each_records_dead_letter(endpoint):
    endpoint.faults(fail=[{"status": 429, "times": 1000}])
    results = by_record(answered(X5, endpoint, [1.0, 2.0], retry_seconds=2))
    for version, message in results.values():
        assert version is None
        assert message.startswith(f"Vertex AI endpoint {X5}: 429 RESOURCE_EXHAUSTED: Quota exceeded for ")
        assert "(after " in message and " attempts)" in message
    assert len(results) == 2 and len(endpoint.stats()["statuses"]) >= 2


def test_a_slow_endpoint_times_out_retries_and_then_answers_dead_letters(endpoint):
    endpoint.faults(delay_seconds=3)
    results = by_record(answered(X5, endpoint, [1.0], timeout_seconds=1, retry_seconds=2))
    assert results["r0"][0] is None and "ReadTimeout" in results["r0"][1], results


def test_fewer_predictions_than_instances_are_dead_letters_not_misplaced_answers(endpoint):
    endpoint.faults(drop_predictions=1)
    results = by_record(answered(X5, endpoint, [1.0, 2.0, 3.0]))
    assert {message for _, message in results.values()} == {
        f"Vertex AI endpoint {X5}: the endpoint answered 2 predictions for 3 instances"
    }


def test_a_record_the_remote_model_fails_on_costs_only_itself(endpoint):
    results = by_record(answered(STRICT, endpoint, [1.0, 999.0, 1000.0, 5.0]))
    assert results["r0"] == ("5001", 10.0) and results["r1"] == ("5001", 9990.0) and results["r3"] == ("5001", 50.0)
    assert results["r2"][0] is None and "400 INVALID_ARGUMENT: Failed to handle request" in results["r2"][1]
    assert "x must be below 1000" in results["r2"][1]


def test_requests_in_flight_never_exceed_the_bound(endpoint):
    endpoint.faults(delay_seconds=0.3)
    xs = [float(i) for i in range(64)]
    results = by_record(answered(X5, endpoint, xs, instances_per_request=4, requests_in_flight=3))
    assert len(results) == 64 and all(version == "1001" for version, _ in results.values())
    assert endpoint.stats()["max_in_flight"] == 3


def test_a_traffic_split_names_the_deployed_model_that_answered_each_record(endpoint):
    answers = answered(SPLIT, endpoint, [float(i) for i in range(8)], instances_per_request=2, requests_in_flight=1)
    versions = {answer.outputs.version: [r.id for r in answer.batch.records] for answer in answers}
    assert versions == {"3001": ["r0", "r1", "r4", "r5"], "3002": ["r2", "r3", "r6", "r7"]}
    for answer in answers:
        assert answer.outputs.arrays[PREDICTION].tolist() == [5.0 * float(r.id[1:]) for r in answer.batch.records]


# --- main.py, as users run it --------------------------------------------------------------------------------------


def write_jsonl(path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


RECORDS = [{"key": f"k{i}", "x": i / 8} for i in range(40)]


def remote(resource: str) -> str:
    return f"vertex://{resource}"


@pytest.fixture
def run_remote(run_main, endpoint, tmp_path):
    """main.py on JSON Lines of `records`, its endpoints called at the stand-in (or at `address`)."""

    def run(pattern: str, models: str, *extra: str, records=RECORDS, address: str | None = None):
        source = write_jsonl(tmp_path / "in.jsonl", records)
        api = f"--vertex_api_endpoint={address or endpoint.address}"
        return run_main(f"--pattern={pattern}", f"--model_uris={models}", f"--input={source}", api, *extra)

    return run


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["postprocess", "keyed"])
def test_postprocess_and_keyed_rows_name_the_endpoint_and_deployed_model(run_remote, pattern):
    records = [*RECORDS, {"key": "bad", "x": "seven"}]
    run = run_remote(pattern, remote(X5), records=records)
    assert run.returncode == 0, run.stderr
    assert f"model 5: Vertex AI endpoint {X5}, serving 1001 (x5)" in run.stdout
    rows = {row["key"]: row for row in run.rows()}
    assert len(rows) == 40
    for record in RECORDS:
        (prediction,) = rows[record["key"]]["predictions"]
        assert prediction == {"model": "5", "version": "1001", "outputs": {PREDICTION: [5 * record["x"]]}}
    assert [letter["stage"] for letter in run.dead_letters()] == ["parse"]


@pytest.mark.slow
def test_predict_logs_name_the_endpoint_and_the_deployed_model(run_remote, tmp_path):
    run = run_remote("predict", remote(TWO), records=RECORDS[:5])
    assert run.returncode == 0, run.stderr
    logs = []
    for path in sorted((tmp_path / "out").glob("result-*.tfrecord")):
        logs += [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    assert len(logs) == 5
    for log in logs:
        x = log.predict_log.request.inputs["x"].double_val[0]
        response = log.predict_log.response
        assert response.model_spec.name == TWO and response.model_spec.version.value == 4001
        assert list(response.outputs["y"].double_val) == [5 * x] and list(response.outputs["z"].double_val) == [10 * x]
    assert sorted(log.predict_log.request.inputs["x"].double_val[0] for log in logs) == [r["x"] for r in RECORDS[:5]]


@pytest.mark.slow
def test_multi_parallel_mixes_a_local_model_and_an_endpoint(run_remote, tmp_path):
    local = export_exact_multipliers(tmp_path / "models")["multiply_by_10"]
    run = run_remote("multi_parallel", f"{local},{remote(X5)}")
    assert run.returncode == 0, run.stderr
    rows = run.rows()
    assert len(rows) == 40
    for row in rows:
        x = row["input"]["x"]
        local_prediction, remote_prediction = row["predictions"]
        assert local_prediction == {"model": "multiply_by_10", "version": None, "outputs": {"y": [10 * x]}}
        assert remote_prediction == {"model": "5", "version": "1001", "outputs": {PREDICTION: [5 * x]}}


@pytest.mark.slow
def test_multi_sequence_feeds_a_local_models_output_to_an_endpoint_and_back(run_remote, tmp_path):
    local = export_exact_multipliers(tmp_path / "models")["multiply_by_10"]
    run = run_remote(
        "multi_sequence", f"{local},{remote(X5)},{local}", "--model_names=first,remote,last", "--chain_output=y"
    )
    # The endpoint's output is `prediction`: --chain_output=y names the local models' output, which the remote
    # one lacks, so its records are `chain` dead letters naming the outputs it has.
    assert run.returncode == 0, run.stderr
    letters = run.dead_letters()
    assert len(letters) == 40 and {letter["stage"] for letter in letters} == {"chain"}
    assert "returned no output 'y' to chain; its outputs: prediction" in letters[0]["message"]

    run = run_remote("multi_sequence", f"{local},{remote(X5)}", "--model_names=first,remote")
    assert run.returncode == 0, run.stderr
    rows = run.rows()
    assert len(rows) == 40
    for row in rows:
        x = row["input"]["x"]
        first, second = row["predictions"]
        assert first["outputs"] == {"y": [10 * x]} and second["outputs"] == {PREDICTION: [50 * x]}
        assert second["version"] == "1001"


@pytest.mark.slow
def test_multi_sequence_feeds_an_endpoints_output_to_a_local_model(run_remote, tmp_path):
    local = export_exact_multipliers(tmp_path / "models")["multiply_by_10"]
    run = run_remote("multi_sequence", f"{remote(X5)},{local}")
    assert run.returncode == 0, run.stderr
    rows = run.rows()
    assert sorted(row["predictions"][1]["outputs"]["y"][0] for row in rows) == sorted(50 * r["x"] for r in RECORDS)


@pytest.mark.slow
def test_failed_requests_are_inference_dead_letters_and_the_counts_reconcile(run_remote, endpoint):
    endpoint.faults(fail=[{"status": 503, "times": 1000}])
    run = run_remote("postprocess", remote(X5), "--remote_retry_seconds=2")
    assert run.returncode == 0, run.stderr  # the summary reconciles: 40 read, 40 dead letters
    letters = run.dead_letters()
    assert len(letters) == 40 and run.rows() == []
    assert {letter["stage"] for letter in letters} == {"inference"}
    assert {letter["model"] for letter in letters} == {"5"}
    assert all(letter["message"].startswith(f"Vertex AI endpoint {X5}: 503 UNAVAILABLE") for letter in letters)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("uri", "faults", "message"),
    [
        (
            f"{PROJECT}/404",
            {},
            f"Vertex AI endpoint {PROJECT}/404 does not exist (Endpoint `{PROJECT}/404` not found.)",
        ),
        (X5, {"deny": True}, f"Vertex AI endpoint {X5} may not be read with the job's credentials (Permission"),
    ],
)
def test_an_endpoint_that_cannot_serve_is_refused_at_launch(run_remote, endpoint, uri, faults, message):
    endpoint.faults(**faults)
    run = run_remote("postprocess", remote(uri))
    assert run.returncode != 0 and message in run.stderr, run.stderr
    assert endpoint.stats()["predict_requests"] == 0


@pytest.mark.slow
def test_an_unreachable_endpoint_api_is_a_launch_error(run_remote):
    run = run_remote("postprocess", remote(X5), "--remote_timeout_seconds=5", address=f"http://127.0.0.1:{free_port()}")
    assert run.returncode != 0
    assert f"Vertex AI endpoint {X5} cannot be reached at http://127.0.0.1:" in run.stderr, run.stderr


@pytest.mark.slow
def test_a_stream_is_scored_by_an_endpoint(pubsub, start_main, endpoint):
    from test_streaming import stop, stream

    topics = stream(pubsub, "remote")
    for i in range(12):
        pubsub.publish(topics.input_topic, json.dumps({"key": f"dev-{i}", "x": i / 4}).encode())
    pubsub.publish(topics.input_topic, json.dumps({"key": "dev-nan", "x": "NaN"}).encode())
    process = start_main(
        "--pattern=keyed",
        f"--model_uris={remote(X5)}",
        f"--vertex_api_endpoint={endpoint.address}",
        *topics.arguments,
        env=pubsub.env,
    )
    rows = pubsub.pull(topics.output_subscription, 12, seconds=120)
    letters = pubsub.pull(topics.dead_subscription, 1, seconds=30)
    stdout, _ = stop(process)
    assert len(rows) == 12 and len(letters) == 1
    for message in rows:
        row = json.loads(message.data)
        x = int(row["key"].split("-")[1]) / 4
        assert row["predictions"] == [{"model": "5", "version": "1001", "outputs": {PREDICTION: [5 * x]}}]
        assert message.attributes["version"] == "1001"
    assert json.loads(letters[0].data)["stage"] == "parse"
    assert "pattern keyed finished" in stdout


@pytest.mark.slow
def test_make_demo_remote_scores_every_demo_record_through_the_endpoint(demo_models, demo_data, tmp_path):
    models = next(iter(demo_models.values())).rsplit("/", 1)[0]
    command = [sys.executable, "-m", "tools.demo_remote", f"--models={models}", f"--data={demo_data}"]
    done = subprocess.run([*command, f"--output={tmp_path}"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    for name, models_per_row in (("remote", 1), ("cascade", 2), ("local_and_remote", 2)):
        rows = read_jsonl(str(tmp_path / name))
        assert len(rows) == 100 and read_jsonl(str(tmp_path / f"{name}_dead_letter")) == []
        for row in rows:
            remote_prediction = row["predictions"][-1]
            assert len(row["predictions"]) == models_per_row and remote_prediction["version"] == "7001"
            if name == "cascade":  # the endpoint scored what the local x5 model made of x
                local = row["predictions"][0]["outputs"]["y"][0]
                assert remote_prediction["outputs"] == {PREDICTION: [pytest.approx(10 * local, rel=1e-6)]}
            else:
                assert remote_prediction["outputs"] == {PREDICTION: [10 * row["input"]["x"]]}


@pytest.mark.slow
def test_a_local_and_a_remote_model_translate_for_dataflow(run_main, endpoint, demo_models, demo_data):
    from test_dataflow_translation import DATAFLOW

    run = run_main(
        "--pattern=multi_sequence",
        f"--model_uris={demo_models['multiply_by_5']},{remote(X10)}",
        f"--input={demo_data}/numbers.csv",
        f"--vertex_api_endpoint={endpoint.address}",
        *DATAFLOW,
        output="gs://test-bucket/out/result",
    )
    assert run.returncode == 0, run.stderr
    assert "pattern multi_sequence submitted to DataflowRunner" in run.stdout
    assert endpoint.stats()["predict_requests"] == 0, "the launcher reads the endpoint, and never predicts"


@pytest.mark.slow
def test_the_remote_benchmark_measures_every_in_flight_bound(tmp_path):
    from benchmarks import remote

    assert remote.main(["--records=1024", "--latency-ms=20", f"--results={tmp_path / 'remote.md'}"]) == 0
    rows = [line for line in (tmp_path / "remote.md").read_text().splitlines() if line.startswith("| 20 ms |")]
    assert [row.split("|")[2].strip() for row in rows] == ["1", "4", "16"]
    assert all(float(row.split("|")[3].replace(",", "")) > 0 for row in rows)
