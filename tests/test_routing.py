"""main.py with --route_field, as a user runs it: 200 routes of tiny models (route xK multiplies by K), records for
every route and for routes no model serves, a cap of 10 models per worker, and launches that must be refused."""

from __future__ import annotations

import csv
import json
import random
import re

import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from tools.route_models import write_route_root

pytestmark = pytest.mark.slow

ROUTES = 200
PER_ROUTE = 3
UNKNOWN = [f"ghost{i}" for i in range(12)]


@pytest.fixture(scope="module")
def route_root(tmp_path_factory):
    """ROOT/xK/1/ multiplying by K for K = 1..200, and ROOT/fallback/1/ multiplying by -1."""
    root = tmp_path_factory.mktemp("routes")
    write_route_root(root, {**{f"x{k}": float(k) for k in range(1, ROUTES + 1)}, "fallback": -1.0})
    return root


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """3 records per route, x = K mod 7 + 0, 1, 2, and one record per unknown route, in a random order."""
    rows = [
        {"key": f"k{k}-{j}", "region": f"x{k}", "x": k % 7 + j} for k in range(1, ROUTES + 1) for j in range(PER_ROUTE)
    ]
    rows += [{"key": f"g{i}", "region": route, "x": i} for i, route in enumerate(UNKNOWN)]
    random.Random(29).shuffle(rows)
    path = tmp_path_factory.mktemp("records") / "records.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["key", "region", "x"])
        writer.writeheader()
        writer.writerows(rows)
    return path, {row["key"]: row for row in rows}


def _factor(route: str) -> float:
    return -1.0 if route == "fallback" else float(route.removeprefix("x"))


def test_each_record_is_scored_by_its_routes_model_and_unknown_routes_are_dead_letters(run_main, route_root, records):
    path, by_key = records
    run = run_main(
        "--pattern=keyed",
        f"--model_uris={route_root}",
        "--route_field=region",
        "--max_models_per_worker=10",
        f"--input={path}",
        "--progress=off",
    )
    assert run.returncode == 0, run.stderr
    rows = run.rows()
    assert len(rows) == ROUTES * PER_ROUTE
    for row in rows:
        record = by_key[row["key"]]
        (prediction,) = row["predictions"]
        assert prediction["model"] == record["region"] and prediction["version"] == "1"
        assert prediction["outputs"]["y"] == [_factor(record["region"]) * record["x"]]
    letters = run.dead_letters()
    assert sorted(letter["key"] for letter in letters) == sorted(f"g{i}" for i in range(len(UNKNOWN)))
    for letter in letters:
        route = by_key[letter["key"]]["region"]
        assert (letter["stage"], letter["error"], letter["model"]) == ("route", "RouteError", None)
        assert letter["message"] == (
            f"route {route!r} (field 'region') has no model in the route table {route_root}, and no --default_route "
            "takes it"
        )
    # Grouped by route, each route's records reach the worker together: each model is loaded once, and the cap
    # of 10 evicts one for every load past the tenth.
    assert "routed models            200  served (200 loads, 190 evictions)" in run.stdout
    assert "dead letters              12  (route 12)" in run.stdout
    # Per model: its 3 predictions, 1 load, and 1 eviction unless it is one of the 10 loaded last (which ten
    # depends on the order GroupByKey hands out the routes).
    assert re.search(r"^  x1 +3 +1 +[01]$", run.stdout, re.M), run.stdout
    assert f"routing on field region: {ROUTES + 1} routes from {route_root}, no default route" in run.stdout


def test_unknown_routes_go_to_the_default_route_s_model(run_main, route_root, records):
    path, by_key = records
    run = run_main(
        "--pattern=postprocess",
        f"--model_uris={route_root}",
        "--route_field=region",
        "--default_route=fallback",
        "--max_models_per_worker=10",
        f"--input={path}",
        "--progress=off",
    )
    assert run.returncode == 0, run.stderr
    rows = run.rows()
    assert len(rows) == len(by_key) and run.dead_letters() == []
    fallback = [row for row in rows if row["predictions"][0]["model"] == "fallback"]
    assert sorted(row["key"] for row in fallback) == sorted(f"g{i}" for i in range(len(UNKNOWN)))
    for row in rows:
        (prediction,) = row["predictions"]
        assert prediction["outputs"]["y"] == [_factor(prediction["model"]) * by_key[row["key"]]["x"]]
    assert "routed models            201  served (201 loads, 191 evictions)" in run.stdout
    assert re.search(r"^  fallback +12 +1 +1$", run.stdout, re.M), run.stdout


def test_predict_routes_by_key_and_its_prediction_logs_name_the_model_and_version(run_main, route_root, tmp_path):
    source = tmp_path / "keyed.jsonl"
    lines = [{"key": f"x{k}", "x": float(x)} for k in (3, 50, 199) for x in (1, 2)] + [{"key": "nobody", "x": 1.0}]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = run_main(
        "--pattern=predict",
        f"--model_uris={route_root}",
        "--route_field=key",
        "--default_route=fallback",
        f"--input={source}",
        "--progress=off",
    )
    assert run.returncode == 0, run.stderr
    logs = [
        prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log
        for record in tf.data.TFRecordDataset(tf.io.gfile.glob(f"{run.output}-*.tfrecord"))
    ]
    seen = sorted((log.response.model_spec.name, log.response.outputs["y"].float_val[0]) for log in logs)
    expected = [("fallback", -1.0), ("x199", 199.0), ("x199", 398.0), ("x3", 3.0), ("x3", 6.0)]
    assert seen == [*expected, ("x50", 50.0), ("x50", 100.0)]
    assert {(log.request.model_spec.name == log.response.model_spec.name) for log in logs} == {True}
    assert {log.response.model_spec.version.value for log in logs} == {1}


def test_a_json_route_table_names_models_anywhere(run_main, route_root, tmp_path):
    table = tmp_path / "routes.json"
    table.write_text(json.dumps({"eu": f"{route_root}/x2", "us": f"{route_root}/x3/1"}))
    source = tmp_path / "in.jsonl"
    source.write_text('{"key": "a", "region": "eu", "x": 5}\n{"key": "b", "region": "us", "x": 5}\n')
    run = run_main("--pattern=keyed", f"--model_uris={table}", "--route_field=region", f"--input={source}")
    assert run.returncode == 0, run.stderr
    seen = {row["key"]: row["predictions"][0] for row in run.rows()}
    assert seen == {
        "a": {"model": "eu", "version": "1", "outputs": {"y": [10.0]}},
        "b": {"model": "us", "version": "1", "outputs": {"y": [15.0]}},
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--route_field=tenant"],
            "--route_field=tenant is not a column of the CSV header of {input} (columns: key, region, x); name the "
            "column that holds each record's route",
        ),
        (
            ["--route_field=region", "--default_route=nobody"],
            "--default_route=nobody is not a route of the table {root} (routes: fallback, x1, x10, x100, x101, ... "
            "(201 routes))",
        ),
        (
            ["--route_field=region", "--pattern=multi_parallel"],
            "--route_field routes each record to one model, and --pattern=multi_parallel runs several on every "
            "record; route with --pattern=predict, postprocess, keyed (to chain or combine routed models, run one "
            "routed job per step)",
        ),
        (["--default_route=x1"], "--default_route picks among routes: it needs --route_field"),
    ],
)
def test_a_routed_launch_is_refused_before_the_pipeline_when(run_main, route_root, records, arguments, message):
    path, _ = records
    pattern = [] if any(a.startswith("--pattern") for a in arguments) else ["--pattern=keyed"]
    run = run_main(*pattern, f"--model_uris={route_root}", f"--input={path}", *arguments)
    assert run.returncode == 2, run.stdout
    assert run.stderr.strip().splitlines()[-1] == "main.py: error: " + message.format(input=path, root=route_root)


def test_a_route_field_the_first_json_line_lacks_is_refused_at_launch(run_main, route_root, tmp_path):
    # A misspelt field would otherwise send every record to the default route's model, with no error at all.
    source = tmp_path / "in.jsonl"
    source.write_text('{"key": "a", "region": "x2", "x": 5}\n')
    arguments = ("--pattern=keyed", f"--model_uris={route_root}", "--default_route=fallback", f"--input={source}")
    run = run_main(*arguments, "--route_field=regoin")
    assert run.returncode == 2, run.stdout
    assert run.stderr.strip().splitlines()[-1] == (
        f"main.py: error: --route_field=regoin is not a field of the first record of {source} (fields: key, "
        "region, x); name the field that holds each record's route"
    )
    run = run_main(*arguments, "--route_field=region")
    assert run.returncode == 0, run.stderr
    assert [row["predictions"][0]["model"] for row in run.rows()] == ["x2"]


def test_routes_whose_models_take_different_inputs_are_refused_naming_the_route(
    run_main, route_root, float_input_model, tmp_path
):
    table = tmp_path / "routes.csv"
    table.write_text(f"route,model\na,{route_root}/x1\nb,{float_input_model}\n")
    source = tmp_path / "in.jsonl"
    source.write_text('{"key": "a", "x": 5}\n')
    run = run_main("--pattern=keyed", f"--model_uris={table}", "--route_field=key", f"--input={source}")
    assert run.returncode == 2, run.stdout
    assert run.stderr.strip().splitlines()[-1] == (
        f"main.py: error: route 'b' (model {float_input_model}) takes named tensors x (DT_FLOAT [-1, 1]), not a "
        "serialized Example signature as route 'a' (the first route) does; every route's model must take the same "
        "input, built once per record before it is routed"
    )


def test_a_table_that_does_not_parse_is_refused(run_main, tmp_path):
    table = tmp_path / "routes.json"
    table.write_text('{"eu": ')
    source = tmp_path / "in.jsonl"
    source.write_text('{"key": "a", "x": 5}\n')
    run = run_main("--pattern=keyed", f"--model_uris={table}", "--route_field=key", f"--input={source}")
    assert run.returncode == 2, run.stdout
    assert run.stderr.strip().splitlines()[-1] == (
        f"main.py: error: route table {table} is not valid JSON: Expecting value: line 1 column 8 (char 7)"
    )
