"""The one registry of template parameters: argparse, metadata.json and the table of docs/parameters.md come from it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

PATTERNS = ("predict", "postprocess", "keyed", "multi_parallel", "multi_sequence")
INPUT_FORMATS = ("tfrecord", "csv", "jsonl")
MESSAGE_FORMATS = ("json", "example")
FEATURE_TYPES = ("float", "int", "bytes")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
PROGRESS_MODES = ("auto", "on", "off")

_NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"
_POSITIVE = r"^[1-9][0-9]*$"
_PATH = r"(gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[^,\s]*)?|[^,\s:]+)"
_ENDPOINT = r"vertex://projects/[a-z0-9][a-z0-9.:-]*/locations/[a-z0-9-]+/endpoints/[A-Za-z0-9_-]+"
_MODEL = rf"({_PATH}|{_ENDPOINT})"
_PROJECT = r"[a-z][a-z0-9.:-]{4,61}[a-z0-9]"
_PUBSUB_NAME = r"[A-Za-z][A-Za-z0-9._~%+-]{2,254}"
_BQ_PROJECT = r"([a-z][a-z0-9.-]{4,61}[a-z0-9]:)?"
# BigQuery allows 1024 characters in dataset and table names, but RE2 (the engine of Google's services) refuses
# a repetition above 1000: "{1,1000}" and "{0,24}" spell the same 1 to 1024.
_BQ_DATASET = r"[A-Za-z0-9_]{1,1000}[A-Za-z0-9_]{0,24}"
SELECT_QUERY = r"^\s*([Ss][Ee][Ll][Ee][Cc][Tt]|[Ww][Ii][Tt][Hh])\s[\s\S]*$"
_BQ_TABLE = rf"{_BQ_PROJECT}{_BQ_DATASET}\.[A-Za-z0-9_-]{{1,1000}}[A-Za-z0-9_-]{{0,24}}"
# BigQuery names are checked before the run too (never only in the Console's form): none reaches a query.
BIGQUERY_TABLE = rf"^{_BQ_TABLE}$"
BIGQUERY_IDENTIFIERS = {
    "input_table": BIGQUERY_TABLE,
    "output_table": BIGQUERY_TABLE,
    "dead_letter_table": BIGQUERY_TABLE,
    "temp_dataset": rf"^{_BQ_PROJECT}{_BQ_DATASET}$",
}


@dataclass(frozen=True)
class Parameter:
    """A template parameter as the Flex Template service, argparse and docs/parameters.md all see it."""

    name: str
    label: str
    help: str
    param_type: str = "TEXT"
    default: str | int | None = None
    optional: bool = True
    regexes: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    @property
    def python_type(self) -> type:
        return int if self.param_type == "NUMBER" else str


PARAMETERS: tuple[Parameter, ...] = (
    Parameter(
        "pattern",
        "Inference pattern",
        "Which RunInference pattern to run: predict (PredictionLogs), postprocess (input + output rows), "
        "keyed (the key rides along, never reaching the model), multi_parallel (every model on each record, "
        "predictions together per record) or multi_sequence (each model's output feeds the next).",
        "ENUM",
        optional=False,
        options=PATTERNS,
    ),
    Parameter(
        "model_uris",
        "Model URIs",
        "Comma-separated SavedModel directories, each with the signature --signature_name names (serialized "
        "tf.train.Examples, named tensors, classify or regress), or base directories of numbered versions "
        "(BASE/1732700000/saved_model.pb), each run at its newest complete version, or Vertex AI endpoints "
        "(vertex://projects/PROJECT/locations/LOCATION/endpoints/ENDPOINT), called with each record's features as "
        "a JSON instance. Exactly one for predict, postprocess and keyed; two or more, in order and in any mix, "
        "for the multi_ patterns.",
        optional=False,
        regexes=(rf"^{_MODEL}(,{_MODEL})*$",),
    ),
    Parameter(
        "model_names",
        "Model names",
        "Comma-separated names for the models, in the order of model_uris. Default: each URI's last path segment.",
        regexes=(rf"^{_NAME}(,{_NAME})*$",),
    ),
    Parameter(
        "input",
        "Input files",
        "File pattern of the records to score: .tfrecord[.gz] (serialized tf.train.Example), .csv[.gz] "
        "(with a header row) or .jsonl[.gz] (one JSON object per line). Give one source: input, input_table, "
        "input_query or input_subscription.",
        "GCS_READ_FILE",
        regexes=(rf"^{_PATH}$",),
    ),
    Parameter(
        "input_subscription",
        "Input Pub/Sub subscription",
        "projects/PROJECT/subscriptions/NAME to read records from; the pipeline then runs in streaming mode.",
        "PUBSUB_SUBSCRIPTION",
        regexes=(rf"^projects/{_PROJECT}/subscriptions/{_PUBSUB_NAME}$",),
    ),
    Parameter(
        "input_table",
        "Input BigQuery table",
        "PROJECT:DATASET.TABLE to score, read with the BigQuery Storage Read API: the key_field column and one "
        "column per feature.",
        "BIGQUERY_TABLE",
        regexes=(BIGQUERY_TABLE,),
    ),
    Parameter(
        "input_query",
        "Input BigQuery query",
        "A GoogleSQL query whose result rows are scored (the key_field column and one column per feature), run "
        "as given, never assembled from other parameters: a SELECT (or WITH ... SELECT). Needs temp_dataset.",
        regexes=(SELECT_QUERY,),
    ),
    Parameter(
        "temp_dataset",
        "BigQuery temporary dataset",
        "PROJECT:DATASET (or DATASET) that holds input_query's result table while it is read; in the queried "
        "tables' location. Beam then neither creates nor deletes a dataset of its own.",
        regexes=(BIGQUERY_IDENTIFIERS["temp_dataset"],),
    ),
    Parameter(
        "message_format",
        "Message format",
        "Pub/Sub message payloads: json (one object, the same shape as a .jsonl line) or example "
        "(a serialized tf.train.Example).",
        "ENUM",
        default="json",
        options=MESSAGE_FORMATS,
    ),
    Parameter(
        "window_seconds",
        "Streaming file window",
        "Streaming: the length in seconds of the fixed windows (by publish time) that output and dead_letter "
        "files are written per; each window's files appear once it closes.",
        "NUMBER",
        default=60,
        regexes=(_POSITIVE,),
    ),
    Parameter(
        "model_refresh_seconds",
        "Model refresh interval",
        "Streaming: every this many seconds, look for a newer complete version under each model_uris base of "
        "numbered versions and, if its signature fits the running one, swap it in without a restart; with "
        "route_field, also read the route table again, so new routes serve without a relaunch. Default: off.",
        "NUMBER",
        regexes=(_POSITIVE,),
    ),
    Parameter(
        "key_attribute",
        "Key attribute",
        "Pub/Sub message attribute holding the key. Default: the key_field of the payload.",
        regexes=(rf"^{_NAME}$",),
    ),
    Parameter(
        "input_format",
        "Input format",
        "Format of the input files when their names do not end in .tfrecord, .csv or .jsonl.",
        "ENUM",
        options=INPUT_FORMATS,
    ),
    Parameter(
        "output",
        "Output prefix",
        "Path prefix of the output files: TFRecords of PredictionLogs for predict, JSON Lines rows otherwise "
        "(in streaming, one set per window_seconds window). Give this, output_topic, output_table, or several.",
        "GCS_WRITE_FILE",
        regexes=(rf"^{_PATH}$",),
    ),
    Parameter(
        "output_topic",
        "Output Pub/Sub topic",
        "projects/PROJECT/topics/NAME to publish one message per record to: the JSON row (a serialized "
        "PredictionLog for predict), with attributes record_id, key and version.",
        "PUBSUB_TOPIC",
        regexes=(rf"^projects/{_PROJECT}/topics/{_PUBSUB_NAME}$",),
    ),
    Parameter(
        "output_table",
        "Output BigQuery table",
        "PROJECT:DATASET.TABLE to append one row per record to (schemas/bigquery/predictions.json; created if "
        "missing): file loads in batch, streaming inserts in streaming. Not for predict, whose PredictionLogs are "
        "not rows.",
        "BIGQUERY_TABLE",
        regexes=(BIGQUERY_TABLE,),
    ),
    Parameter(
        "dead_letter",
        "Dead-letter prefix",
        "Path prefix of the JSON Lines files of rejected records. Default: the output prefix + _dead_letter.",
        "GCS_WRITE_FILE",
        regexes=(rf"^{_PATH}$",),
    ),
    Parameter(
        "dead_letter_topic",
        "Dead-letter Pub/Sub topic",
        "projects/PROJECT/topics/NAME to publish rejected records to (JSON), instead of dead-letter files.",
        "PUBSUB_TOPIC",
        regexes=(rf"^projects/{_PROJECT}/topics/{_PUBSUB_NAME}$",),
    ),
    Parameter(
        "dead_letter_table",
        "Dead-letter BigQuery table",
        "PROJECT:DATASET.TABLE to append rejected records to (schemas/bigquery/dead_letters.json), instead of "
        "dead-letter files or a topic.",
        "BIGQUERY_TABLE",
        regexes=(BIGQUERY_TABLE,),
    ),
    Parameter(
        "key_field",
        "Key field",
        "The record field holding the key (a device or customer id). It is never fed to the model.",
        default="key",
        regexes=(rf"^{_NAME}$",),
    ),
    Parameter(
        "feature_types",
        "Feature types",
        "Comma-separated name:type pairs (type float, int or bytes) for features that are not of default_feature_type.",
        regexes=(rf"^{_NAME}:(float|int|bytes)(,{_NAME}:(float|int|bytes))*$",),
    ),
    Parameter(
        "input_features",
        "Input features",
        "For models whose signature takes named tensors: comma-separated input:feature pairs for inputs built "
        "from a feature of another name (every other input is built from the feature of its own name). Naming "
        "the single DT_STRING input of a signature here feeds it that feature's text, not a serialized "
        "tf.train.Example.",
        regexes=(rf"^{_NAME}:{_NAME}(,{_NAME}:{_NAME})*$",),
    ),
    Parameter(
        "row_input",
        "Input carried by each row",
        "What each output row (file, BigQuery, Pub/Sub) carries of its record's input, beside the key: all (every "
        "feature), none (the key only), include:a,b (those features only) or exclude:c,d (all but those). Named "
        "fields are checked against a CSV header or the first JSON Lines record. Dead letters always keep the raw "
        "record. Not for predict.",
        default="all",
        regexes=(rf"^(all|none|(include|exclude):{_NAME}(,{_NAME})*)$",),
    ),
    Parameter(
        "default_feature_type",
        "Default feature type",
        "The tf.train.Example type of every feature not named in feature_types.",
        "ENUM",
        default="float",
        options=FEATURE_TYPES,
    ),
    Parameter(
        "signature_name",
        "Signature name",
        "The SavedModel signature to call: a predict signature taking serialized tf.train.Examples or named "
        "tensors, or a classify or regress signature.",
        default="serving_default",
        regexes=(rf"^{_NAME}$",),
    ),
    Parameter(
        "min_batch_size",
        "Minimum batch size",
        "Smallest batch RunInference sends to the model.",
        "NUMBER",
        default=1,
        regexes=(_POSITIVE,),
    ),
    Parameter(
        "max_batch_size",
        "Maximum batch size",
        "Largest batch RunInference sends to the model.",
        "NUMBER",
        default=512,
        regexes=(_POSITIVE,),
    ),
    Parameter(
        "chain_feature",
        "Chained feature",
        "multi_sequence: the feature of the next model's input that receives the previous model's output.",
        default="x",
        regexes=(rf"^{_NAME}$",),
    ),
    Parameter(
        "chain_output",
        "Chained output",
        "multi_sequence: the output alias passed on to the next model. Default: the model's only output.",
        regexes=(rf"^{_NAME}$",),
    ),
    Parameter(
        "vertex_api_endpoint",
        "Vertex AI API endpoint",
        "Where the Vertex AI endpoints of model_uris are called: a Private Service Connect address, or "
        "http://127.0.0.1:PORT for a local stand-in (sent no credentials). "
        "Default: LOCATION-aiplatform.googleapis.com.",
        regexes=(r"^(https?://)?[A-Za-z0-9.-]+(:[0-9]{1,5})?$",),
    ),
    Parameter(
        "remote_requests_in_flight",
        "Requests in flight per worker process",
        "Vertex AI endpoints: at most this many prediction requests at once from each worker process (a Dataflow "
        "worker runs one per vCPU); size it against the endpoint's quota and replicas.",
        "NUMBER",
        default=4,
        regexes=(_POSITIVE,),
    ),
    Parameter(
        "remote_instances_per_request",
        "Instances per request",
        "Vertex AI endpoints: at most this many records per prediction request; a request is also kept under "
        "the public endpoints' 1.5 MiB, a batch being split into as many requests as that takes.",
        "NUMBER",
        default=64,
        regexes=(_POSITIVE,),
    ),
    Parameter(
        "remote_timeout_seconds",
        "Request timeout",
        "Vertex AI endpoints: a prediction request not answered within this many seconds is abandoned and retried.",
        "NUMBER",
        default=60,
        regexes=(_POSITIVE,),
    ),
    Parameter(
        "remote_retry_seconds",
        "Retry period",
        "Vertex AI endpoints: for this many seconds a request answered 429, 502, 503 or 504, or timed out, is "
        "sent again with exponential back-off; its records then become inference dead letters.",
        "NUMBER",
        default=300,
        regexes=(_POSITIVE,),
    ),
    Parameter(
        "route_field",
        "Route field",
        "Routes each record to a model of its own: the record field whose value (as text) is its route, the "
        "key_field or another field such as region (read as text unless feature_types says otherwise). model_uris "
        "is then one route table: a directory whose subdirectories are the routes' models (ROOT/ROUTE/VERSION/), "
        "or a .json or .csv file mapping route to model. For predict, postprocess and keyed.",
        regexes=(rf"^{_NAME}$",),
    ),
    Parameter(
        "default_route",
        "Default route",
        "With route_field: the route of the table whose model scores the records whose route the table does not "
        "list, or that have none. Default: those records are route dead letters.",
        regexes=(r"^[^,\s]+$",),
    ),
    Parameter(
        "max_models_per_worker",
        "Routed models per worker process",
        "With route_field: the most route models one worker process keeps loaded; loading one more evicts the "
        "least recently used. Loads and evictions are counted.",
        "NUMBER",
        default=20,
        regexes=(_POSITIVE,),
    ),
    Parameter(
        "model_copies",
        "Shared model copies per worker",
        "For models too big for a copy in every SDK process (a Dataflow worker runs one per vCPU): load this many "
        "copies per worker machine, shared by its processes (Beam's large_model / model_copies; 1 is large_model). "
        "Each batch's inputs and outputs then cross processes. With route_field, the route models' cache is shared, "
        "its max_models_per_worker per copy. Vertex AI endpoints are called, not loaded: it does not apply to them. "
        "Default: a private copy in each process.",
        "NUMBER",
        regexes=(_POSITIVE,),
    ),
    Parameter(
        "log_level",
        "Log level",
        "Python log level of the pipeline; TensorFlow and Beam start-up noise is hidden below INFO.",
        "ENUM",
        default="WARNING",
        options=LOG_LEVELS,
    ),
    Parameter(
        "progress",
        "Progress of a local run",
        "Local runs only (Dataflow's job page shows its counters): live counts on stderr while the run goes, "
        "with the rate and, for files, the share read and an ETA. auto shows a live line on a terminal and a "
        "plain line every 5 s otherwise (CI, | tee); on forces the live line; off shows nothing.",
        "ENUM",
        default="auto",
        options=PROGRESS_MODES,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """An argparse parser of the template parameters; everything else is left for Beam's pipeline options."""
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Batch and streaming ML inference with TFX RunInference on TensorFlow SavedModels.",
        epilog="Any other --flag is passed to Apache Beam as a pipeline option (--runner, --direct_num_workers, ...).",
    )
    for parameter in PARAMETERS:
        parser.add_argument(
            f"--{parameter.name}",
            type=parameter.python_type,
            default=parameter.default,
            required=not parameter.optional,
            choices=parameter.options or None,
            help=parameter.help,
        )
    return parser


def markdown_table() -> str:
    """The parameter table of docs/parameters.md."""
    lines = ["| Parameter | Required | Default | Description |", "| --- | --- | --- | --- |"]
    for parameter in PARAMETERS:
        default = "" if parameter.default is None else f"`{parameter.default}`"
        description = parameter.help
        if parameter.options:
            description += " One of: " + ", ".join(f"`{option}`" for option in parameter.options) + "."
        required = "no" if parameter.optional else "yes"
        lines.append(f"| `--{parameter.name}` | {required} | {default} | {description} |")
    return "\n".join(lines) + "\n"


TEMPLATE_NAME = "TFX RunInference"
TEMPLATE_DESCRIPTION = (
    "ML inference on TensorFlow SavedModels with TFX RunInference: predict, post-process, keyed, "
    "multi-model parallel and sequence patterns over TFRecord, CSV or JSON Lines files, BigQuery tables or "
    "queries (batch) and Pub/Sub (streaming)."
)


def template_metadata() -> dict:
    """metadata.json of the Flex Template: the Dataflow TemplateMetadata document for these parameters."""
    parameters = []
    for parameter in PARAMETERS:
        entry = {
            "name": parameter.name,
            "label": parameter.label,
            "helpText": parameter.help,
            "isOptional": parameter.optional,
            "paramType": parameter.param_type,
        }
        if parameter.regexes:
            entry["regexes"] = list(parameter.regexes)
        if parameter.options:
            entry["enumOptions"] = [{"value": option} for option in parameter.options]
        if parameter.default is not None:
            entry["defaultValue"] = str(parameter.default)
        parameters.append(entry)
    # Pub/Sub input makes a streaming job; its sinks take a redelivered message (at-least-once mode) as well as
    # exactly-once processing, so the Console may offer both.
    return {
        "name": TEMPLATE_NAME,
        "description": TEMPLATE_DESCRIPTION,
        "streaming": True,
        "supportsAtLeastOnce": True,
        "supportsExactlyOnce": True,
        "parameters": parameters,
    }
