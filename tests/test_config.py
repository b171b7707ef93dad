"""Parameter checks that need no files: model counts, names, feature types, batch sizes."""

from __future__ import annotations

import pytest

from transforms.config import (
    FeatureTypes,
    ParameterError,
    RemoteCalls,
    config_from_args,
    endpoint_resource,
    model_name_from_uri,
    models_from_args,
)
from transforms.parameters import build_parser


def parse(*argv: str):
    return config_from_args(build_parser().parse_args(["--input=in.csv", "--output=out/x", *argv]))


def test_defaults_and_model_names_from_uris():
    config = parse("--pattern=multi_sequence", "--model_uris=gs://b/models/multiply_by_5/,m/multiply_by_10")
    assert [m.name for m in config.models] == ["multiply_by_5", "multiply_by_10"]
    assert config.dead_letter == "out/x_dead_letter"
    assert config.key_field == "key" and config.feature_types.of("anything") == "float"
    assert (config.batching.min_batch_size, config.batching.max_batch_size) == (1, 512)
    assert model_name_from_uri("gs://bucket/a/b/") == "b"


def test_a_vertex_endpoint_is_a_model_named_by_its_id_and_called_as_configured():
    endpoint = "vertex://projects/my-project/locations/europe-west4/endpoints/1234567890"
    config = parse(
        "--pattern=multi_sequence",
        f"--model_uris=m/multiply_by_5,{endpoint}",
        "--vertex_api_endpoint=http://127.0.0.1:8470",
        "--remote_requests_in_flight=16",
        "--remote_instances_per_request=32",
        "--remote_timeout_seconds=7",
        "--remote_retry_seconds=90",
    )
    assert [(m.name, m.remote) for m in config.models] == [("multiply_by_5", False), ("1234567890", True)]
    assert config.remote == RemoteCalls("http://127.0.0.1:8470", 16, 7, 90, 32)
    resource = "projects/my-project/locations/europe-west4/endpoints/1234567890"  # pragma: allowlist secret
    assert endpoint_resource(endpoint) == resource
    assert parse("--pattern=keyed", "--model_uris=a").remote == RemoteCalls(None, 4, 60, 300, 64, 1_572_864)


def test_explicit_names_and_dead_letter():
    config = parse(
        "--pattern=multi_parallel", "--model_uris=a/m,b/m", "--model_names=first,second", "--dead_letter=dl/x"
    )
    assert [m.name for m in config.models] == ["first", "second"]
    assert config.dead_letter == "dl/x"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pattern=predict", "--model_uris=a,b"], "exactly one model"),
        (["--pattern=multi_sequence", "--model_uris=a"], "two or more models"),
        (["--pattern=multi_parallel", "--model_uris=x/m,y/m"], "used twice"),
        (["--pattern=multi_parallel", "--model_uris=a,b", "--model_names=one"], "one name per model"),
        (["--pattern=keyed", "--model_uris=http://host/model"], "neither a local path, a gs:// URI nor a Vertex"),
        (["--pattern=keyed", "--model_uris=vertex://endpoints/5"], "is not a Vertex AI endpoint of the form"),
        (
            ["--pattern=keyed", "--model_uris=vertex://projects/p/locations/l/endpoints/5/x"],
            "is not a Vertex AI endpoint of the form vertex://projects/PROJECT/locations/LOCATION/endpoints/",
        ),
        (["--pattern=keyed", "--model_uris=a", "--remote_requests_in_flight=0"], "in_flight must be at least 1"),
        (["--pattern=keyed", "--model_uris=a", "--remote_instances_per_request=0"], "request must be at least 1"),
        (["--pattern=keyed", "--model_uris=a", "--remote_timeout_seconds=0"], "timeout_seconds must be at least"),
        (["--pattern=keyed", "--model_uris=a", "--remote_retry_seconds=0"], "retry_seconds must be at least 1"),
        (["--pattern=keyed", "--model_uris=a", "--min_batch_size=8", "--max_batch_size=4"], "batch sizes"),
        (["--pattern=keyed", "--model_uris=a", "--feature_types=x:double"], "--feature_types item 'x:double'"),
        (
            ["--pattern=keyed", "--model_uris=a", "--input_subscription=projects/p/subscriptions/s"],
            "exactly one source",
        ),
        (["--pattern=keyed", "--model_uris=a", "--key_attribute=device"], "names a Pub/Sub message attribute"),
        (
            ["--pattern=keyed", "--model_uris=a", "--dead_letter=d", "--dead_letter_topic=projects/p/topics/t"],
            "dead letters go to one place",
        ),
        (["--pattern=keyed", "--model_uris=a", "--input_table=my-project:d.t"], "exactly one source"),
        (["--pattern=keyed", "--model_uris=a", "--temp_dataset=my-project:d"], "only used by --input_query"),
        (["--pattern=predict", "--model_uris=a", "--output_table=my-project:d.t"], "use --pattern=postprocess"),
        (["--pattern=keyed", "--model_uris=a", "--output_table=p:d"], "not a BigQuery table name"),
        (["--pattern=keyed", "--model_uris=a", "--dead_letter_table=d.t`; DROP TABLE x"], "not a BigQuery table"),
    ],
)
def test_bad_combinations_are_rejected_with_the_fix(argv, message):
    with pytest.raises(ParameterError, match=message):
        parse(*argv)


def test_feature_types_parse():
    types = FeatureTypes.parse("int", "x:float,name:bytes")
    assert (types.of("x"), types.of("name"), types.of("other")) == ("float", "bytes", "int")


def test_single_model_patterns_need_exactly_one():
    assert len(models_from_args("keyed", "a", None)) == 1


def test_streaming_sinks():
    parser = build_parser()
    streaming = ["--pattern=keyed", "--model_uris=a", "--input_subscription=projects/p/subscriptions/s"]
    files = config_from_args(parser.parse_args([*streaming, "--output=out/x", "--window_seconds=30"]))
    assert (files.output, files.dead_letter, files.window_seconds) == ("out/x", "out/x_dead_letter", 30)
    with pytest.raises(ParameterError, match="--window_seconds must be at least 1"):
        config_from_args(parser.parse_args([*streaming, "--output=out/x", "--window_seconds=0"]))
    with pytest.raises(ParameterError, match="a place for the results"):
        config_from_args(parser.parse_args(streaming))
    with pytest.raises(ParameterError, match="a place for dead letters"):
        config_from_args(parser.parse_args([*streaming, "--output_topic=projects/p/topics/rows"]))
    config = config_from_args(
        parser.parse_args(
            [*streaming, "--output_topic=projects/p/topics/rows", "--dead_letter_topic=projects/p/topics/dl"]
        )
    )
    assert config.streaming and config.dead_letter is None and config.output is None


def test_bigquery_sources_and_sinks():
    parser = build_parser()
    table = ["--pattern=keyed", "--model_uris=a", "--input_table=my-project:d.t", "--output_table=my-project:d.rows"]
    with pytest.raises(ParameterError, match="a place for dead letters"):
        config_from_args(parser.parse_args(table))
    config = config_from_args(parser.parse_args([*table, "--dead_letter_table=my-project:d.dead"]))
    assert (config.input, config.input_table, config.output_table, config.dead_letter_table) == (
        None,
        "my-project:d.t",
        "my-project:d.rows",
        "my-project:d.dead",
    )
    assert config.dead_letter is None and not config.streaming
    query = ["--pattern=keyed", "--model_uris=a", "--input_query=SELECT key, x FROM d.t", "--output=o"]
    with pytest.raises(ParameterError, match="needs --temp_dataset=PROJECT:DATASET"):
        config_from_args(parser.parse_args(query))
    assert (
        config_from_args(parser.parse_args([*query, "--temp_dataset=my-project:scratch"])).temp_dataset
        == "my-project:scratch"
    )
    with pytest.raises(ParameterError, match=r"--temp_dataset=my-project:d.t is not a BigQuery dataset name"):
        config_from_args(parser.parse_args([*query, "--temp_dataset=my-project:d.t"]))
    with pytest.raises(ParameterError, match="--input_table=project.dataset.table is not a BigQuery table name"):
        config_from_args(parser.parse_args([*table[:2], "--input_table=project.dataset.table", "--output=o"]))
    delete = ["--pattern=keyed", "--model_uris=a", "--input_query=DELETE FROM d.t WHERE true", "--temp_dataset=d"]
    with pytest.raises(ParameterError, match="must be one SELECT"):
        config_from_args(parser.parse_args([*delete, "--output=o"]))


def query_config(query: str):
    argv = ["--pattern=keyed", "--model_uris=a", f"--input_query={query}", "--temp_dataset=my-project:scratch"]
    return config_from_args(build_parser().parse_args([*argv, "--output=out/x"]))


@pytest.mark.parametrize(
    "query",
    [
        "SELECT key, x FROM `my-project.d.t`",
        "  select *\nfrom d.t where x > 0;",
        "WITH a AS (SELECT 1 AS x) SELECT 'k' AS key, x FROM a",
        "-- the devices; all of them\nSELECT key, x FROM d.t /* ; DELETE FROM d.t */",
        "SELECT 'a;b' AS key, x FROM d.t WHERE name != \"DROP TABLE d.t; --\"",
        "SELECT key, x FROM d.t UNION ALL SELECT key, x FROM d.u",
        "(SELECT key, x FROM d.t)",
    ],
)
def test_input_query_accepts_one_select_read_as_googlesql(query):
    assert query_config(query).input_query == query, "the query runs exactly as given"


@pytest.mark.parametrize(
    ("query", "holds"),
    [
        ("SELECT 1 AS x; DELETE FROM inference.predictions WHERE true", "2 statement(s): SELECT, DELETE"),
        ("SELECT 'a;' AS x; DROP TABLE d.t", "2 statement(s): SELECT, DROP"),
        ("DELETE FROM d.t WHERE true", "1 statement(s): DELETE"),
        ("WITH a AS (SELECT 1) DELETE FROM d.t WHERE true", "1 statement(s): DELETE"),
        ("INSERT INTO d.t SELECT 1", "1 statement(s): INSERT"),
        ("EXPORT DATA OPTIONS(uri='gs://b/*', format='CSV') AS SELECT 1", "1 statement(s): EXPORT"),
        ("DECLARE x INT64; SELECT x", "2 statement(s): DECLARE, SELECT"),
        ("-- nothing but a comment", "0 statement(s): none"),
    ],
)
def test_input_query_refuses_anything_but_one_select(query, holds):
    with pytest.raises(ParameterError, match="must be one SELECT") as refused:
        query_config(query)
    assert holds in str(refused.value)


def test_input_query_that_does_not_parse_names_where():
    with pytest.raises(ParameterError, match=r"not valid GoogleSQL: Expected table name \(line 1, column 13\)"):
        query_config("SELECT * FROM")


def test_input_features_parse_and_refuse_what_is_not_input_feature():
    config = parse("--pattern=keyed", "--model_uris=m", "--input_features=distance_km:km,items:n")
    assert dict(config.input_features) == {"distance_km": "km", "items": "n"}
    with pytest.raises(ParameterError, match="--input_features item 'km' is not input:feature"):
        parse("--pattern=keyed", "--model_uris=m", "--input_features=km")
    with pytest.raises(ParameterError, match="--input_features maps input 'x' twice"):
        parse("--pattern=keyed", "--model_uris=m", "--input_features=x:a,x:b")


def test_model_refresh_needs_a_stream_and_a_positive_period():
    streaming = (
        "--input_subscription=projects/p/subscriptions/s",
        "--output_topic=projects/p/topics/t",
        "--dead_letter_topic=projects/p/topics/d",
    )
    config = config_from_args(
        build_parser().parse_args(["--pattern=keyed", "--model_uris=m", *streaming, "--model_refresh_seconds=60"])
    )
    assert config.model_refresh_seconds == 60
    with pytest.raises(ParameterError, match="--model_refresh_seconds swaps models under a running stream"):
        parse("--pattern=keyed", "--model_uris=m", "--model_refresh_seconds=60")
    with pytest.raises(ParameterError, match="--model_refresh_seconds must be at least 1"):
        config_from_args(
            build_parser().parse_args(["--pattern=keyed", "--model_uris=m", *streaming, "--model_refresh_seconds=0"])
        )


_SOURCES = (
    "give exactly one source: --input (files), --input_table or --input_query (BigQuery, batch) or "
    "--input_subscription (Pub/Sub, streaming); got "
)
_NAME_FORM = "PROJECT a project id, DATASET letters, digits and underscores"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--output=o"], _SOURCES + "none"),
        (["--output=o", "--input=i", "--input_table=my-project:d.t"], _SOURCES + "--input, --input_table"),
        (
            ["--input=i"],
            "give a place for the results: --output (files), --output_topic (Pub/Sub), --output_table (BigQuery)",
        ),
        (
            ["--input=i", "--output=o", "--dead_letter=d", "--dead_letter_table=my-project:d.t"],
            "dead letters go to one place: give one of --dead_letter, --dead_letter_table",
        ),
        (
            ["--input=i", "--output_topic=projects/p/topics/t"],
            "give a place for dead letters: --dead_letter (files), --dead_letter_topic (Pub/Sub) or "
            "--dead_letter_table (BigQuery)",
        ),
        (
            ["--input=i", "--output=o", "--key_attribute=k"],
            "--key_attribute names a Pub/Sub message attribute; other sources carry the key in --key_field",
        ),
        (
            ["--input_query=SELECT 1", "--output=o"],
            "--input_query needs --temp_dataset=PROJECT:DATASET, a dataset in the queried tables' location that "
            "holds the query's result while it is read (Terraform creates one)",
        ),
        (
            ["--input=i", "--output=o", "--temp_dataset=my-project:d"],
            "--temp_dataset is only used by --input_query; leave it out",
        ),
        (
            ["--input=i", "--output=o", "--output_table=p:d"],
            "--output_table=p:d is not a BigQuery table name of the form [PROJECT:]DATASET.TABLE: "
            + _NAME_FORM
            + ", TABLE those and dashes",
        ),
        (
            ["--input_query=SELECT 1", "--temp_dataset=p:d.x", "--output=o"],
            "--temp_dataset=p:d.x is not a BigQuery dataset name of the form [PROJECT:]DATASET: " + _NAME_FORM,
        ),
        (
            ["--pattern=predict", "--input=i", "--output_table=my-project:d.t", "--dead_letter=d"],
            "--pattern=predict writes PredictionLogs, which are not table rows: use --pattern=postprocess with "
            "--output_table, or write PredictionLogs with --output or --output_topic",
        ),
        (["--input=i", "--output=o", "--window_seconds=0"], "--window_seconds must be at least 1; got 0"),
        (
            ["--input=i", "--output=o", "--model_refresh_seconds=5"],
            "--model_refresh_seconds swaps models under a running stream: it needs --input_subscription (a batch "
            "run takes each base's newest complete version at launch)",
        ),
        (
            ["--input_subscription=projects/p/subscriptions/s", "--output=o", "--model_refresh_seconds=0"],
            "--model_refresh_seconds must be at least 1; got 0",
        ),
    ],
)
def test_each_refusal_says_exactly_what_is_wrong_and_what_to_give(argv, message):
    """The whole message, not a fragment: it is the product's answer to a user's mistake."""
    pattern = [] if any(a.startswith("--pattern") for a in argv) else ["--pattern=keyed"]
    with pytest.raises(ParameterError) as refused:
        config_from_args(build_parser().parse_args([*pattern, "--model_uris=a", *argv]))
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("pattern", "uris", "names", "message"),
    [
        ("keyed", "a,b", None, "--pattern=keyed runs exactly one model, but --model_uris names 2: a, b"),
        (
            "multi_parallel",
            "a",
            None,
            "--pattern=multi_parallel runs two or more models, but --model_uris names 1; use --pattern=postprocess "
            "for a single model",
        ),
        (
            "multi_parallel",
            "x/m,y/m,z/n,w/n",
            None,
            "model name(s) m, n are used twice; give distinct names with --model_names",
        ),
        (
            "multi_parallel",
            "a,b,c",
            "one,two",
            "--model_names has 2 names but --model_uris has 3 models; give one name per model",
        ),
    ],
)
def test_model_list_refusals_say_exactly_what_is_wrong(pattern, uris, names, message):
    with pytest.raises(ParameterError) as refused:
        models_from_args(pattern, uris, names)
    assert str(refused.value) == message


def test_names_and_dead_letters_from_paths_with_slashes_and_digits():
    assert [m.name for m in models_from_args("multi_parallel", "models/x5/,gs://b/serving/fraud/17/", None)] == [
        "x5",
        "fraud",
    ]
    assert model_name_from_uri("1732700000") == "1732700000", "a lone number has no base to be named after"
    assert parse("--pattern=keyed", "--model_uris=a", "--output=out/run/").dead_letter == "out/run_dead_letter"
    assert parse("--pattern=keyed", "--model_uris=a", "--output=/abs/run").dead_letter == "/abs/run_dead_letter"


def test_the_smallest_window_and_refresh_period_are_accepted():
    stream = ["--pattern=keyed", "--model_uris=a", "--input_subscription=projects/p/subscriptions/s", "--output=o"]
    config = config_from_args(build_parser().parse_args([*stream, "--window_seconds=1", "--model_refresh_seconds=1"]))
    assert (config.window_seconds, config.model_refresh_seconds) == (1, 1)


def test_routing_takes_the_one_model_uris_entry_as_its_table_and_reads_the_route_field_as_text():
    config = parse("--pattern=keyed", "--model_uris=gs://b/models/", "--route_field=region", "--default_route=eu")
    assert config.models == ()
    routing = config.routing
    assert (routing.field, routing.table, routing.default_route, routing.max_models_per_worker) == (
        "region",
        "gs://b/models",
        "eu",
        20,
    )
    assert config.feature_types.of("region") == "bytes" and config.feature_types.of("x") == "float"
    typed = parse("--pattern=keyed", "--model_uris=m", "--route_field=device", "--feature_types=device:int")
    assert typed.feature_types.of("device") == "int", "a type the user gives the route field is kept"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model_uris=a,b"], "with --route_field, --model_uris is one route table (a directory whose"),
        (["--model_uris=a", "--model_names=n"], "with --route_field, each model is named after its route"),
        (["--model_uris=a", "--max_models_per_worker=0"], "--max_models_per_worker must be at least 1; got 0"),
        (["--model_uris=http://h/routes.json"], "route table 'http://h/routes.json' is neither a local path nor"),
    ],
)
def test_routing_parameters_are_checked(argv, message):
    with pytest.raises(ParameterError) as raised:
        parse("--pattern=postprocess", "--route_field=region", *argv)
    assert str(raised.value).startswith(message)
