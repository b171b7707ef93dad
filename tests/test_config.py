"""Parameter checks that need no files: model counts, names, feature types, batch sizes."""

from __future__ import annotations

import pytest

from transforms.config import FeatureTypes, ParameterError, config_from_args, model_name_from_uri, models_from_args
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
        (["--pattern=keyed", "--model_uris=http://host/model"], "neither a local path nor a gs://"),
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
