"""The whole pipeline: parameters checked, then read -> pattern -> write, and a local run summarised."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult, PipelineState

from transforms.config import InferenceConfig, ModelSpec, ParameterError, config_from_args, endpoint_resource
from transforms.counters import predictions_written
from transforms.inference.model_versions import resolution_line, resolve_model
from transforms.inference.patterns import pattern_transform
from transforms.inference.routed import routed_transform
from transforms.inference.routes import RoutePlan, check_route_field, plan_routes
from transforms.inference.signatures import (
    NAMED_TENSORS,
    PREDICTION,
    REMOTE,
    Signature,
    endpoint_signature,
    input_feature,
    serving_signature,
)
from transforms.parameters import build_parser
from transforms.progress import ProgressBoard, wait_until
from transforms.reading.sources import InputPlan, plan_input, source_transform
from transforms.runner import is_local, local_runner
from transforms.summary import summarize, summary_table
from transforms.writing.sinks import LogUnwritable, write_dead_letters, write_results


def parse_arguments(argv: Sequence[str]) -> tuple[InferenceConfig, PipelineOptions, str]:
    """Template parameters into a checked config; every other argument into Beam's pipeline options."""
    args, beam_args = build_parser().parse_known_args(argv)
    return config_from_args(args), PipelineOptions(beam_args), args.log_level


def model_signature(model: ModelSpec, config: InferenceConfig) -> Signature:
    """A SavedModel's serving signature, checked; a Vertex AI endpoint's once it is known to serve (its models)."""
    if not model.remote:
        return serving_signature(model.uri, config.signature_name, config.input_features)
    from transforms.inference.endpoints import deployed_models  # google-cloud-aiplatform, for endpoints only

    served = deployed_models(model.uri, config.remote.api_endpoint, config.remote.timeout_seconds)
    shown = ", ".join(f"{deployed.id} ({deployed.display_name})" for deployed in served)
    print(f"model {model.name}: Vertex AI endpoint {endpoint_resource(model.uri)}, serving {shown}", flush=True)
    return endpoint_signature(endpoint_resource(model.uri))


def model_signatures(config: InferenceConfig, plan: InputPlan | None) -> tuple[Signature, ...]:
    """Every model's serving signature, checked: its kind, and for named tensors that each input has a feature."""
    signatures = tuple(model_signature(model, config) for model in config.models)
    check_input_features(config, signatures, plan)
    check_row_input(config, signatures, plan)
    return signatures


def check_row_input(config: InferenceConfig, signatures: Sequence[Signature], plan: InputPlan | None) -> None:
    """Every field --row_input names is one of the input's, where the launcher has seen them.

    That is a CSV header, or the first record of JSON Lines files (with the features the models' named tensors
    are built from, which every record has). The fields of Examples, tables and messages are not read at
    launch: there a name is taken as given, and a record without that field has no entry for it.
    """
    named = config.row_input.fields
    if not named or plan is None or not (plan.header or plan.first_fields):
        return
    if plan.format == "csv":
        columns, where = list(plan.header), f"the CSV header of {plan.header_file}"
    else:
        columns, where = list(plan.first_fields), f"the first record of {plan.first_file}"
    chained = config.pattern == "multi_sequence"
    model_features = [
        feature
        for position, signature in enumerate(signatures)
        if signature.kind == NAMED_TENSORS
        for feature in (input_feature(info.alias, config.input_features) for info in signature.inputs)
        if not (chained and position > 0 and feature == config.chain_feature)  # the previous model's output
    ]
    fields = [field for field in dict.fromkeys([*columns, *model_features]) if field != config.key_field]
    unknown = [name for name in named if name not in fields]
    if unknown:
        raise ParameterError(
            f"--row_input={config.row_input.mode}:{','.join(named)} names {', '.join(map(repr, unknown))}, "
            f"not among the input's fields: {where} has {', '.join(fields)}"
        )


def check_input_features(config: InferenceConfig, signatures: Sequence[Signature], plan: InputPlan | None) -> None:
    """Every --input_features input is one a model takes; for CSV, every named input has a column to come from.

    In multi_sequence, an input built from --chain_feature after the first model is the previous model's output.
    Other formats carry their feature names per record: a missing one is that record's `encode` dead letter.
    """
    named = [(model, signature) for model, signature in zip(config.models, signatures, strict=True)]
    named = [(model, signature) for model, signature in named if signature.kind == NAMED_TENSORS]
    taken = {info.alias for _, signature in named for info in signature.inputs}
    unknown = sorted(set(config.input_features) - taken)
    # A Vertex AI endpoint's instance takes any name: --input_features then names the instance's keys.
    if unknown and not any(signature.kind == REMOTE for signature in signatures):
        raise ParameterError(
            f"--input_features maps input(s) {', '.join(unknown)}, which no model takes as a named tensor; "
            f"named inputs: {', '.join(sorted(taken)) or 'none'}"
        )
    if plan is None or plan.format != "csv":
        return
    columns = [column for column in plan.header if column != config.key_field]
    for model, signature in named:
        chained = config.pattern == "multi_sequence" and config.models.index(model) > 0
        for info in signature.inputs:
            feature = input_feature(info.alias, config.input_features)
            if chained and feature == config.chain_feature:
                continue
            if feature not in columns:
                mapped = f" (mapped to feature {feature!r} by --input_features)" if feature != info.alias else ""
                raise ParameterError(
                    f"input {info.alias!r}{mapped} of model {model.uri} has no feature of that name in the CSV "
                    f"header of {plan.header_file} (columns: {', '.join(columns)}); map it to a column with "
                    f"--input_features={info.alias}:COLUMN"
                )


# Routes whose resolution a routed launch prints one by one; past these it prints how many more.
SHOWN_ROUTES = 5


def launch_routes(config: InferenceConfig, plan: InputPlan | None) -> tuple[RoutePlan, tuple[Signature, ...]]:
    """A routed job's routes, read and checked, and the one signature all their models share (as --model_uris')."""
    if plan is not None:
        check_route_field(config, plan)
    routes = plan_routes(config)
    reference = routes.routes[routes.reference]
    check_input_features(replace(config, models=(reference.spec,)), [reference.signature], plan)
    default = f", default route {routes.default_route}" if routes.default_route else ", no default route"
    print(f"routing on field {routes.field}: {len(routes.routes)} routes from {routes.table}{default}", flush=True)
    for model in list(routes.routes.values())[:SHOWN_ROUTES]:
        print("  " + resolution_line(model.spec), flush=True)
    if len(routes.routes) > SHOWN_ROUTES:
        print(f"  ... and {len(routes.routes) - SHOWN_ROUTES} more routes", flush=True)
    return routes, (reference.signature,)


def chain_outputs(config: InferenceConfig, signatures: Sequence[Signature]) -> tuple[str, ...]:
    """For multi_sequence, the output alias each step passes on to the next model."""
    if config.pattern != "multi_sequence":
        return ()
    outputs = []
    for model, signature in zip(config.models[:-1], signatures[:-1], strict=True):
        if signature.kind == REMOTE:
            # Its outputs are known from its answers only: a missing one is each record's `chain` dead letter.
            outputs.append(config.chain_output or PREDICTION)
            continue
        aliases = signature.output_aliases
        if config.chain_output and config.chain_output not in aliases:
            raise ParameterError(
                f"--chain_output={config.chain_output} is not an output of model {model.uri}; "
                f"its outputs are {', '.join(aliases)}"
            )
        if not config.chain_output and len(aliases) > 1:
            raise ParameterError(
                f"model {model.uri} has outputs {', '.join(aliases)}; say which one feeds the next model "
                "with --chain_output"
            )
        outputs.append(config.chain_output or aliases[0])
    return tuple(outputs)


def build_pipeline(
    pipeline: beam.Pipeline,
    config: InferenceConfig,
    plan: InputPlan | None,
    chain: Sequence[str],
    signatures: Sequence[Signature],
    routes: RoutePlan | None = None,
) -> None:
    records, parse_failures = pipeline | "Read" >> source_transform(config, plan)
    if routes is not None:
        inference = routed_transform(config, routes)
    else:
        inference = pattern_transform(config, tuple(chain), tuple(signatures))
    results, failures = records | config.pattern >> inference
    refused_rows = results | "WriteResults" >> write_results(config)
    dead_letters = (parse_failures, failures, refused_rows) | "AllDeadLetters" >> beam.Flatten()
    dead_letters | "WriteDeadLetters" >> write_dead_letters(config) | "Unwritable" >> LogUnwritable()


def _wait_for_stop(result: PipelineResult, board: ProgressBoard | None) -> None:
    """A local streaming run goes on until Ctrl-C or SIGTERM (or the pipeline fails); then it is cancelled.

    With live counts, what is in flight is first given a few seconds to come out, so that the summary
    counts what the sinks wrote by then, as the user saw it.
    """
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5) and not PipelineState.is_terminal(result.state):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    if board is not None and not PipelineState.is_terminal(result.state):
        print("stopping: letting what is in flight come out (at most 5 s)", file=sys.stderr, flush=True)
        wait_until(lambda: board.snapshot().settled and board.quiet_for() > 1.0, seconds=5)
    if not PipelineState.is_terminal(result.state):
        result.cancel()
    if result.state == PipelineState.FAILED:
        result.wait_until_finish()  # raises the pipeline's error


# Seconds between the plain progress lines of a run whose stderr is not a terminal (default 5).
PROGRESS_SECONDS = "TFX_INFERENCE_PROGRESS_SECONDS"


def progress_board(config: InferenceConfig, options: PipelineOptions) -> ProgressBoard | None:
    """The live counts of a local run, unless --progress=off; for files, their total size for the share read."""
    if config.progress == "off" or not is_local(options):
        return None
    input_bytes = None
    if config.input:
        input_bytes = sum(m.size_in_bytes for m in FileSystems.match([config.input])[0].metadata_list)
    live = config.progress == "on" or sys.stderr.isatty()
    every = float(os.environ.get(PROGRESS_SECONDS, 5))
    return ProgressBoard(input_bytes, sys.stderr, live=live, plain_every=every)


def check_load_location(config: InferenceConfig, options: PipelineOptions) -> None:
    """Batch writes to BigQuery load files staged in Cloud Storage: --temp_location must be a gs:// path."""
    temp_location = options.view_as(GoogleCloudOptions).temp_location or ""
    if (
        (config.output_table or config.dead_letter_table)
        and not config.streaming
        and not temp_location.startswith("gs://")
    ):
        raise ParameterError(
            "a batch run writing to BigQuery loads files through Cloud Storage: give --temp_location=gs://BUCKET/tmp "
            f"(got {temp_location or 'none'}; Dataflow sets it from the job's temp location)"
        )


def submitted_message(config: InferenceConfig, options: PipelineOptions, result: PipelineResult) -> str:
    """What a remote run left behind: a job, or, under the Flex Template launcher, the job file it wrote.

    The launcher passes --template_location: Beam then writes the job there for the service to start, and its
    result holds no job to ask for an id.
    """
    runner = options.view_as(StandardOptions).runner
    template_location = options.view_as(GoogleCloudOptions).template_location
    if template_location:
        return f"pattern {config.pattern} written for {runner} as the job file {template_location}"
    job_id = result.job_id() if hasattr(result, "job_id") else None
    return f"pattern {config.pattern} submitted to {runner}: job {job_id}"


def run(config: InferenceConfig, options: PipelineOptions) -> int:
    """Build and run the pipeline. Locally: wait, print the summary, and fail if the counts do not add up.

    Under the Flex Template launcher (any remote runner) the job is submitted and this returns at once.
    A local streaming run goes on until it is stopped (Ctrl-C or SIGTERM), then prints its summary.
    """
    FileSystems.set_options(options)  # the launcher lists inputs and reads models with the job's own options
    options.view_as(StandardOptions).streaming |= config.streaming
    check_load_location(config, options)
    plan = plan_input(config) if config.input else None
    routes = None
    if config.routing:
        routes, signatures = launch_routes(config, plan)
    else:
        config = replace(config, models=tuple(resolve_model(model) for model in config.models))
        for model in config.models:
            if not model.remote:  # an endpoint's line names its deployed models, once they are read
                print(resolution_line(model), flush=True)
        signatures = model_signatures(config, plan)
    chain = chain_outputs(config, signatures)
    started = time.monotonic()
    board = progress_board(config, options)
    if board is not None:
        config = replace(config, live_counts=board.counts())
    pipeline = beam.Pipeline(runner=local_runner(options), options=options)
    build_pipeline(pipeline, config, plan, chain, signatures, routes)
    with board or contextlib.nullcontext():
        result = pipeline.run()
        if not is_local(options):
            # Under the Flex Template launcher the job must be submitted and left to run: never wait here.
            print(submitted_message(config, options, result))
            return 0
        if config.streaming:
            print(f"pattern {config.pattern} streaming from {config.input_subscription}; Ctrl-C stops it", flush=True)
            _wait_for_stop(result, board)
        else:
            result.wait_until_finish()
        written = board.snapshot() if board is not None and config.streaming else None
    summary = summarize(result, [model.name for model in config.models], routed=routes is not None)
    if written is not None:
        # The local streaming runner's metrics lag; the live counts are what the sinks handed on, as seen.
        summary = replace(summary, records_read=written.records_read, rows_written=written.rows_written)
        summary = replace(summary, dead_letters=written.dead_letters, predictions=predictions_written(written.totals))
    seconds = time.monotonic() - started
    print(summary_table(summary, config.pattern, seconds, config.streaming, written is not None), flush=True)
    return 0 if summary.reconciled or config.streaming else 1
