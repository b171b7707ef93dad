"""Template parameters turned into one validated, immutable configuration of the pipeline."""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from transforms.parameters import BIGQUERY_IDENTIFIERS, FEATURE_TYPES
from transforms.progress import ProgressCounts
from transforms.records.batch_features import row_features

SINGLE_MODEL_PATTERNS = ("predict", "postprocess", "keyed")
VERTEX_SCHEME = "vertex://"
MULTI_MODEL_PATTERNS = ("multi_parallel", "multi_sequence")


class ParameterError(ValueError):
    """A template parameter is wrong; the message names it and says what was expected."""


@dataclass(frozen=True)
class ModelSpec:
    """One SavedModel the pipeline runs, and the name its predictions carry.

    When --model_uris gave a base of numbered versions, `uri` is the version resolved at launch, `version` its
    number and `base` the directory refreshes look in; for a plain SavedModel directory both are None.
    """

    uri: str
    name: str
    version: str | None = None
    base: str | None = None

    @property
    def remote(self) -> bool:
        """A Vertex AI endpoint (vertex://projects/P/locations/L/endpoints/E), called rather than loaded."""
        return self.uri.startswith(VERTEX_SCHEME)


@dataclass(frozen=True)
class FeatureTypes:
    """The tf.train.Example type of each feature: a default, and exceptions by name."""

    default: str = "float"
    by_name: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def of(self, feature: str) -> str:
        return self.by_name.get(feature, self.default)

    @classmethod
    def parse(cls, default: str, text: str | None) -> FeatureTypes:
        by_name = {}
        for item in filter(None, (text or "").split(",")):
            name, _, kind = item.partition(":")
            if not name or kind not in FEATURE_TYPES:
                raise ParameterError(
                    f"--feature_types item {item!r} is not name:type with type one of {', '.join(FEATURE_TYPES)}"
                )
            by_name[name] = kind
        return cls(default, MappingProxyType(by_name))


ROW_INPUT_MODES = ("all", "none", "include", "exclude")


@dataclass(frozen=True)
class RowInput:
    """What a row carries of its record's input (--row_input): every feature, none, or named ones in or out.

    Vertex AI batch prediction lets the user choose the same (`instanceConfig`'s includedFields and excludedFields):
    a row echoing 256 floats costs a heavy model a fifth of its time, and a table of them storage and scans.
    """

    mode: str = "all"
    fields: tuple[str, ...] = ()

    def of(self, features: Mapping[str, Any]) -> dict:
        """The features a row carries: all of them, none, or those named in or out, in the record's order.

        `none` reads nothing: features parsed a batch at a time are made Python values only when read
        (transforms/records/batch_features.py), and a row reads them in their columns' dtypes; `all` hands a
        dict on as it is.
        """
        if self.mode == "none":
            return {}
        features = row_features(features)
        if self.mode == "all":
            return features
        keep = self.mode == "include"
        return {name: value for name, value in features.items() if (name in self.fields) == keep}

    @classmethod
    def parse(cls, text: str) -> RowInput:
        mode, _, names = text.partition(":")
        fields = tuple(name.strip() for name in names.split(",")) if names else ()
        if mode not in ROW_INPUT_MODES or (mode in ("all", "none")) != (not names) or not all(fields):
            raise ParameterError(
                f"--row_input={text} is not one of all, none, include:FIELD[,FIELD...] or exclude:FIELD[,FIELD...]"
            )
        duplicates = sorted({name for name in fields if fields.count(name) > 1})
        if duplicates:
            raise ParameterError(f"--row_input names field(s) {', '.join(duplicates)} twice")
        return cls(mode, fields)


def parse_input_features(text: str | None) -> Mapping[str, str]:
    """--input_features: named input -> the feature it is built from, each input named once."""
    mapping = {}
    for item in filter(None, (text or "").split(",")):
        alias, _, feature = item.partition(":")
        if not alias or not feature:
            raise ParameterError(f"--input_features item {item!r} is not input:feature")
        if alias in mapping:
            raise ParameterError(f"--input_features maps input {alias!r} twice")
        mapping[alias] = feature
    return MappingProxyType(mapping)


@dataclass(frozen=True)
class Batching:
    """Batch sizes the source gathers records into: each batch travels whole to the sinks and is the model's batch."""

    min_batch_size: int = 1
    max_batch_size: int = 512


@dataclass(frozen=True)
class RemoteCalls:
    """How a worker process calls a Vertex AI endpoint (transforms/inference/remote_predict.py).

    `max_request_bytes` is the public endpoints' limit on a request's body, 1.5 MiB: the service refuses more
    ("Request payload size exceeds the limit: 1572864 bytes.").
    """

    api_endpoint: str | None = None
    requests_in_flight: int = 4
    timeout_seconds: int = 60
    retry_seconds: int = 300
    instances_per_request: int = 64
    max_request_bytes: int = 1_572_864


@dataclass(frozen=True)
class Routing:
    """--route_field: each record's model picked by the value of one of its fields, from a table of routes.

    `table` is the one --model_uris entry: a directory whose subdirectories are the routes' models, or a .json or
    .csv file mapping route to model (transforms/inference/route_table.py). Records whose route the table does not
    list go to `default_route`'s model, or are `route` dead letters when it is None.
    """

    field: str
    table: str
    default_route: str | None = None
    max_models_per_worker: int = 20


@dataclass(frozen=True)
class InferenceConfig:
    """Everything the pipeline needs to know, checked once before it is built."""

    pattern: str
    models: tuple[ModelSpec, ...]
    input: str | None
    input_format: str | None
    output: str | None
    dead_letter: str | None
    key_field: str = "key"
    input_subscription: str | None = None
    message_format: str = "json"
    key_attribute: str | None = None
    output_topic: str | None = None
    dead_letter_topic: str | None = None
    feature_types: FeatureTypes = FeatureTypes()
    input_features: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    signature_name: str = "serving_default"
    batching: Batching = Batching()
    chain_feature: str = "x"
    chain_output: str | None = None
    input_table: str | None = None
    input_query: str | None = None
    temp_dataset: str | None = None
    output_table: str | None = None
    dead_letter_table: str | None = None
    window_seconds: int = 60
    model_refresh_seconds: int | None = None
    progress: str = "auto"
    remote: RemoteCalls = RemoteCalls()
    routing: Routing | None = None
    model_copies: int | None = None
    row_input: RowInput = RowInput()
    # Where a local run's live counts go (set by the run that shows them, never a parameter); None on Dataflow.
    live_counts: ProgressCounts | None = None

    @property
    def requires_key(self) -> bool:
        return self.pattern == "keyed"

    @property
    def streaming(self) -> bool:
        return self.input_subscription is not None


_ENDPOINT_RESOURCE = re.compile(r"projects/([a-z0-9][a-z0-9.:-]*)/locations/([a-z0-9-]+)/endpoints/([A-Za-z0-9_-]+)")


def endpoint_resource(uri: str) -> str:
    """`projects/P/locations/L/endpoints/E` of a `vertex://` model URI; ParameterError when it is not of that form."""
    resource = uri[len(VERTEX_SCHEME) :].rstrip("/")
    if not _ENDPOINT_RESOURCE.fullmatch(resource):
        raise ParameterError(
            f"model URI {uri!r} is not a Vertex AI endpoint of the form "
            "vertex://projects/PROJECT/locations/LOCATION/endpoints/ENDPOINT"
        )
    return resource


def endpoint_location(resource: str) -> str:
    return _ENDPOINT_RESOURCE.fullmatch(resource).group(2)


def model_name_from_uri(uri: str) -> str:
    """The URI's last path segment: gs://bucket/models/multiply_by_5/ is named multiply_by_5; a pinned numbered
    version is named after its base: gs://bucket/serving/fraud/1732700000 is named fraud; a Vertex AI endpoint is
    named by its id: vertex://projects/p/locations/l/endpoints/123 is named 123."""
    segments = uri.rstrip("/").split("/")
    if segments[-1].isdigit() and len(segments) > 1 and not uri.startswith(VERTEX_SCHEME):
        return segments[-2]
    return segments[-1]


def models_from_args(pattern: str, model_uris: str, model_names: str | None) -> tuple[ModelSpec, ...]:
    uris = [uri.strip() for uri in model_uris.split(",") if uri.strip()]
    if pattern in SINGLE_MODEL_PATTERNS and len(uris) != 1:
        raise ParameterError(
            f"--pattern={pattern} runs exactly one model, but --model_uris names {len(uris)}: {', '.join(uris)}"
        )
    if pattern in MULTI_MODEL_PATTERNS and len(uris) < 2:
        raise ParameterError(
            f"--pattern={pattern} runs two or more models, but --model_uris names {len(uris)}; "
            "use --pattern=postprocess for a single model"
        )
    for uri in uris:
        if uri.startswith(VERTEX_SCHEME):
            endpoint_resource(uri)
        elif "://" in uri and not uri.startswith("gs://"):
            raise ParameterError(
                f"model URI {uri!r} is neither a local path, a gs:// URI nor a Vertex AI endpoint "
                "(vertex://projects/PROJECT/locations/LOCATION/endpoints/ENDPOINT)"
            )
    if model_names:
        names = [name.strip() for name in model_names.split(",")]
        if len(names) != len(uris):
            raise ParameterError(
                f"--model_names has {len(names)} names but --model_uris has {len(uris)} models; give one name per model"
            )
    else:
        names = [model_name_from_uri(uri) for uri in uris]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ParameterError(
            f"model name(s) {', '.join(duplicates)} are used twice; give distinct names with --model_names"
        )
    return tuple(ModelSpec(uri, name) for uri, name in zip(uris, names, strict=True))


def routing_from_args(args: argparse.Namespace) -> Routing | None:
    """--route_field and its companions checked; None when records are not routed."""
    if not args.route_field:
        for name in ("default_route",):
            if getattr(args, name):
                raise ParameterError(f"--{name} picks among routes: it needs --route_field")
        return None
    if args.pattern not in SINGLE_MODEL_PATTERNS:
        raise ParameterError(
            f"--route_field routes each record to one model, and --pattern={args.pattern} runs several on every "
            f"record; route with --pattern={', '.join(SINGLE_MODEL_PATTERNS)} (to chain or combine routed models, "
            "run one routed job per step)"
        )
    tables = [uri.strip() for uri in args.model_uris.split(",") if uri.strip()]
    if len(tables) != 1:
        raise ParameterError(
            f"with --route_field, --model_uris is one route table (a directory whose subdirectories are the routes' "
            f"models, or a .json or .csv file mapping route to model); got {len(tables)}: {', '.join(tables)}"
        )
    if args.model_names:
        raise ParameterError("with --route_field, each model is named after its route: leave --model_names out")
    if args.max_models_per_worker < 1:
        raise ParameterError(f"--max_models_per_worker must be at least 1; got {args.max_models_per_worker}")
    if "://" in tables[0] and not tables[0].startswith("gs://"):
        raise ParameterError(f"route table {tables[0]!r} is neither a local path nor a gs:// URI")
    return Routing(args.route_field, tables[0].rstrip("/"), args.default_route or None, args.max_models_per_worker)


def route_feature_types(types: FeatureTypes, routing: Routing | None) -> FeatureTypes:
    """A route field other than the key is read as text (a region, a tenant id), unless --feature_types types it."""
    if routing is None or routing.field in types.by_name:
        return types
    return FeatureTypes(types.default, MappingProxyType({**types.by_name, routing.field: "bytes"}))


def check_select_query(query: str) -> None:
    """Refuse anything but one GoogleSQL query statement (SELECT, WITH ... SELECT, set operations).

    A prefix regex would pass `SELECT 1; DELETE FROM t WHERE true`, a script BigQuery runs whole: the query is
    parsed as GoogleSQL instead, so comments, quoted `;` and WITH clauses are read as BigQuery reads them.
    """
    # Imported here: sqlglot holds 8 MB of every worker's memory, and only a job given --input_query needs it.
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError

    try:
        statements = [s for s in sqlglot.parse(query, read="bigquery") if s is not None]
    except ParseError as error:
        first = error.errors[0]
        what = first["description"].split(" but got <Token")[0]  # the token's repr says nothing to a user
        raise ParameterError(
            f"--input_query is not valid GoogleSQL: {what} (line {first['line']}, column {first['col']})"
        ) from None
    kinds = [type(statement).__name__.upper() for statement in statements]
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise ParameterError(
            "--input_query must be one SELECT (or WITH ... SELECT) query and nothing else; "
            f"it holds {len(statements)} statement(s): {', '.join(kinds) or 'none'}"
        )


_TABLE_NAME = ("table", "[PROJECT:]DATASET.TABLE", ", TABLE those and dashes")
_SOURCES = ("input", "input_table", "input_query", "input_subscription")
_DEAD_LETTER_SINKS = ("dead_letter", "dead_letter_topic", "dead_letter_table")


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    return [f"--{name}" for name in names if getattr(args, name)]


def _check_sources_and_sinks(args: argparse.Namespace) -> None:
    sources = _given(args, _SOURCES)
    if len(sources) != 1:
        raise ParameterError(
            "give exactly one source: --input (files), --input_table or --input_query (BigQuery, batch) or "
            f"--input_subscription (Pub/Sub, streaming); got {', '.join(sources) or 'none'}"
        )
    if not (args.output or args.output_topic or args.output_table):
        raise ParameterError(
            "give a place for the results: --output (files), --output_topic (Pub/Sub), --output_table (BigQuery)"
        )
    dead_letter_sinks = _given(args, _DEAD_LETTER_SINKS)
    if len(dead_letter_sinks) > 1:
        raise ParameterError(f"dead letters go to one place: give one of {', '.join(dead_letter_sinks)}")
    if not (args.output or dead_letter_sinks):
        raise ParameterError(
            "give a place for dead letters: --dead_letter (files), --dead_letter_topic (Pub/Sub) or "
            "--dead_letter_table (BigQuery)"
        )
    if args.key_attribute and not args.input_subscription:
        raise ParameterError(
            "--key_attribute names a Pub/Sub message attribute; other sources carry the key in --key_field"
        )
    if args.input_query and not args.temp_dataset:
        raise ParameterError(
            "--input_query needs --temp_dataset=PROJECT:DATASET, a dataset in the queried tables' location that "
            "holds the query's result while it is read (Terraform creates one)"
        )
    for name, pattern in BIGQUERY_IDENTIFIERS.items():
        value = getattr(args, name)
        if value and not re.fullmatch(pattern, value):
            kind, form, table = ("dataset", "[PROJECT:]DATASET", "") if name == "temp_dataset" else _TABLE_NAME
            raise ParameterError(
                f"--{name}={value} is not a BigQuery {kind} name of the form {form}: PROJECT a project id, "
                f"DATASET letters, digits and underscores{table}"
            )
    if args.input_query:
        check_select_query(args.input_query)
    if args.temp_dataset and not args.input_query:
        raise ParameterError("--temp_dataset is only used by --input_query; leave it out")
    if args.output_table and args.pattern == "predict":
        raise ParameterError(
            "--pattern=predict writes PredictionLogs, which are not table rows: use --pattern=postprocess "
            "with --output_table, or write PredictionLogs with --output or --output_topic"
        )
    if args.window_seconds < 1:
        raise ParameterError(f"--window_seconds must be at least 1; got {args.window_seconds}")
    if args.model_refresh_seconds is not None:
        if not args.input_subscription:
            raise ParameterError(
                "--model_refresh_seconds swaps models under a running stream: it needs --input_subscription "
                "(a batch run takes each base's newest complete version at launch)"
            )
        if args.model_refresh_seconds < 1:
            raise ParameterError(f"--model_refresh_seconds must be at least 1; got {args.model_refresh_seconds}")


# Parameters the configuration holds exactly as given; the others are parsed or derived below.
_AS_GIVEN = (
    "pattern",
    "input",
    "input_format",
    "output",
    "key_field",
    "signature_name",
    "chain_feature",
    "chain_output",
    "input_subscription",
    "message_format",
    "key_attribute",
    "output_topic",
    "dead_letter_topic",
    "input_table",
    "input_query",
    "temp_dataset",
    "output_table",
    "dead_letter_table",
    "window_seconds",
    "model_refresh_seconds",
    "progress",
    "model_copies",
)


REMOTE_COUNTS = (
    "remote_requests_in_flight",
    "remote_timeout_seconds",
    "remote_retry_seconds",
    "remote_instances_per_request",
)


def _default_dead_letter(args: argparse.Namespace) -> str | None:
    if _given(args, _DEAD_LETTER_SINKS):
        return args.dead_letter
    return f"{args.output.rstrip('/')}_dead_letter"


def config_from_args(args: argparse.Namespace) -> InferenceConfig:
    """Validate the parsed template parameters (without touching files) and freeze them."""
    _check_sources_and_sinks(args)
    for name in REMOTE_COUNTS:
        if getattr(args, name) < 1:
            raise ParameterError(f"--{name} must be at least 1; got {getattr(args, name)}")
    if args.model_copies is not None and args.model_copies < 1:
        raise ParameterError(f"--model_copies must be at least 1; got {args.model_copies}")
    row_input = RowInput.parse(args.row_input)
    if row_input.mode != "all" and args.pattern == "predict":
        raise ParameterError(
            "--row_input chooses what a JSON row carries of its input; --pattern=predict writes PredictionLogs, "
            "which carry the Example the model saw: leave --row_input out"
        )
    if args.key_field in row_input.fields:
        raise ParameterError(
            f"--row_input names the key field {args.key_field!r}; a row always carries the key apart, in `key`"
        )
    if args.min_batch_size < 1 or args.max_batch_size < args.min_batch_size:
        raise ParameterError(
            f"batch sizes must satisfy 1 <= --min_batch_size <= --max_batch_size; "
            f"got {args.min_batch_size} and {args.max_batch_size}"
        )
    routing = routing_from_args(args)
    return InferenceConfig(
        **{name: getattr(args, name) for name in _AS_GIVEN},
        # A routed job's models are its routes', read from the table at launch (transforms/inference/routes.py).
        models=() if routing else models_from_args(args.pattern, args.model_uris, args.model_names),
        routing=routing,
        dead_letter=_default_dead_letter(args),
        feature_types=route_feature_types(FeatureTypes.parse(args.default_feature_type, args.feature_types), routing),
        input_features=parse_input_features(args.input_features),
        batching=Batching(args.min_batch_size, args.max_batch_size),
        row_input=row_input,
        remote=RemoteCalls(
            api_endpoint=args.vertex_api_endpoint,
            requests_in_flight=args.remote_requests_in_flight,
            timeout_seconds=args.remote_timeout_seconds,
            retry_seconds=args.remote_retry_seconds,
            instances_per_request=args.remote_instances_per_request,
        ),
    )
