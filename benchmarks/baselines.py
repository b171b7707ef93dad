"""The reference points the patterns are measured against, each run on its own in a fresh process:

- raw: the SavedModel called directly in batches, loaded as tfx-bsl loads it (the model's own limit);
- floor: the project's own source, parsing, encoding and sink with no model at all, writing JSON rows, or with
  `--pattern=predict` PredictionLogs carrying each record's Example and the model's outputs set to zero;
- naive: the rows pipeline with a DoFn that calls the model once per element;
- seed: the seed blog post's own pipeline, ReadFromTFRecord -> tfx-bsl's RunInference -> WriteToTFRecord of
  PredictionLogs, on the same local runner as the patterns.

    python -m benchmarks.baselines raw|floor|naive|seed --model DIR --input FILE [--output PREFIX] [--pattern P]

Each prints one JSON line: {"seconds": ..., "cpu_seconds": ..., "records": ..., "rows": ..., "model_loads": ...}, its
times those of its own work (raw: the model calls; the others: building and running the pipeline). Model loads are
counted as the patterns' are, by Beam's `load_model_latency_milli_secs` metric (raw counts its own loads).
"""

from __future__ import annotations

import argparse
import json
import time

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from tensorflow_serving.apis import prediction_log_pb2

import transforms  # noqa: F401  (first: TensorFlow's quiet import)
from transforms.config import ParameterError
from transforms.inference.batches import Batch, ModelFeed, ModelOutputs
from transforms.inference.patterns import ENCODE_STAGE, RecordExamples, batched, encode
from transforms.inference.predict import inference_spec
from transforms.inference.prediction_logs import serialized_prediction_logs
from transforms.inference.signatures import serving_signature
from transforms.pipeline import parse_arguments
from transforms.reading.sources import ReadRecords, plan_input
from transforms.runner import local_runner
from transforms.summary import summarize
from transforms.writing.sinks import write_dead_letters, write_results

# Beam's RunInference records each model load in this distribution; main.py's summary counts loads with it.
LOAD_METRIC = "load_model_latency_milli_secs"
SIGNATURE = "serving_default"


def _session(model_dir: str):
    session = tf.compat.v1.Session(graph=tf.compat.v1.Graph())
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], model_dir)
    signature = meta_graph.signature_def[SIGNATURE]
    return session, signature.inputs["examples"].name, {a: t.name for a, t in signature.outputs.items()}


def raw(model_dir: str, input_path: str, batch_size: int) -> dict:
    """The model alone: batches of serialized Examples through its session, timed after a warm-up batch."""
    examples = [record.numpy() for record in tf.data.TFRecordDataset(input_path)]
    session, feed, fetches = _session(model_dir)
    session.run(fetches, {feed: examples[:batch_size]})  # warm-up: graph optimisation on first run
    started, cpu_started = time.perf_counter(), time.process_time()
    for start in range(0, len(examples), batch_size):
        session.run(fetches, {feed: examples[start : start + batch_size]})
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "records": len(examples),
        "rows": len(examples),
        "model_loads": 1,
    }


def _no_model(feed: ModelFeed) -> Batch:
    return feed.batch.answered(ModelOutputs("none", None, {"y": np.zeros((len(feed), 1), np.float32)}))


class _ZeroPredictionLog:
    """predict's output without its model: the record's Example in a PredictionLog whose outputs are zeros.

    The log is built once with the project's own builder, with the model's real output names; each record then
    costs a copy and its Example, as a log built per batch costs per record.
    """

    def __init__(self, model_dir: str):
        signature = serving_signature(model_dir, SIGNATURE)
        zeros = {alias: np.zeros((1, 1), np.float32) for alias in signature.output_aliases}
        (template,) = serialized_prediction_logs([b""], zeros, signature.inputs[0].alias, SIGNATURE)
        self._template = prediction_log_pb2.PredictionLog.FromString(template)
        self._template.predict_log.request.inputs[signature.inputs[0].alias].ClearField("string_val")
        self._input_alias = signature.inputs[0].alias

    def __call__(self, feed: ModelFeed) -> Batch:
        logs = []
        for example in feed.inputs:
            log = prediction_log_pb2.PredictionLog()
            log.CopyFrom(self._template)
            log.predict_log.request.inputs[self._input_alias].string_val.append(example)
            logs.append(log.SerializeToString())
        return feed.batch.answered(ModelOutputs("none", None, {}, tuple(logs)))


class _OneAtATime(beam.DoFn):
    """The anti-pattern: one model call per element. Its loads are recorded in Beam's RunInference metric."""

    def __init__(self, model_dir: str):
        self._model_dir = model_dir

    def setup(self):
        started = time.perf_counter()
        self._session, self._feed, self._fetches = _session(self._model_dir)
        self._unrecorded_load_ms = int(1000 * (time.perf_counter() - started))

    def process(self, feed: ModelFeed):
        # A metric updated in setup belongs to no step and is dropped: Beam's RunInference also records
        # its load in the first bundle after it.
        if self._unrecorded_load_ms is not None:
            Metrics.distribution("RunInference.naive", LOAD_METRIC).update(self._unrecorded_load_ms)
            self._unrecorded_load_ms = None
        (example,) = feed.inputs  # the naive pipeline's elements are single records (batches of one)
        outputs = self._session.run(self._fetches, {self._feed: [example]})
        yield feed.batch.answered(ModelOutputs("naive", None, outputs))


def _model_loads(result) -> int:
    """Model loads in any RunInference namespace (ours, tfx-bsl's, the naive DoFn's), as Beam recorded them."""
    loads = result.metrics().query(MetricsFilter().with_name(LOAD_METRIC))["distributions"]
    return sum((load.attempted or load.committed).count for load in loads)


def pipeline_run(kind: str, model_dir: str, input_path: str, output: str, pattern: str) -> dict:
    """floor or naive: this project's own pipeline, its model pass replaced."""
    config, options, _ = parse_arguments(
        [f"--pattern={pattern}", f"--model_uris={model_dir}", f"--input={input_path}", f"--output={output}"]
    )
    plan = plan_input(config)
    started, cpu_started = time.perf_counter(), time.process_time()
    pipeline = beam.Pipeline(runner=local_runner(options), options=options)
    records, parse_failures = pipeline | "Read" >> ReadRecords(plan, config)
    if kind == "naive":  # the anti-pattern moves one record per element, as the pipelines it stands for do
        records = records | "OnePerElement" >> beam.FlatMap(lambda batch: [[record] for record in batch])
    batches = records | beam.Map(batched).with_output_types(Batch)
    examples, encode_failures = encode(batches, "Encode", ENCODE_STAGE, RecordExamples())
    if kind == "naive":
        outputs = examples | "Model" >> beam.ParDo(_OneAtATime(model_dir))
    elif pattern == "predict":
        outputs = examples | "Model" >> beam.Map(_ZeroPredictionLog(model_dir))
    else:
        outputs = examples | "Model" >> beam.Map(_no_model)
    outputs | "WriteResults" >> write_results(config)
    (parse_failures, encode_failures) | beam.Flatten() | "WriteDeadLetters" >> write_dead_letters(config)
    result = pipeline.run()
    result.wait_until_finish()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    summary = summarize(result, [])
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "records": summary.records_read,
        "rows": summary.rows_written,
        "model_loads": _model_loads(result),
    }


def seed(model_dir: str, input_path: str, output: str) -> dict:
    """The seed post's pipeline: serialized Examples straight into tfx-bsl's RunInference, its logs written."""
    from tfx_bsl.public.beam import RunInference
    from tfx_bsl.public.proto import model_spec_pb2

    config, options, _ = parse_arguments(
        ["--pattern=predict", f"--model_uris={model_dir}", f"--input={input_path}", f"--output={output}"]
    )
    # The batch sizes the patterns run with, so that only the data path differs.
    spec: model_spec_pb2.InferenceSpecType = inference_spec(model_dir, SIGNATURE, config.batching)
    started, cpu_started = time.perf_counter(), time.process_time()
    pipeline = beam.Pipeline(runner=local_runner(options), options=options)
    (
        pipeline
        | "ReadExamples" >> beam.io.ReadFromTFRecord(input_path)
        | "RunInference" >> RunInference(spec)
        | "WritePredictionLogs"
        >> beam.io.WriteToTFRecord(output, coder=beam.coders.ProtoCoder(prediction_log_pb2.PredictionLog))
    )
    result = pipeline.run()
    result.wait_until_finish()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    inferences = result.metrics().query(MetricsFilter().with_name("num_inferences"))["counters"]
    done = sum(counter.attempted or counter.committed for counter in inferences)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "records": done,
        "rows": done,
        "model_loads": _model_loads(result),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baselines", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("raw", "floor", "naive", "seed"))
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", default="")
    parser.add_argument("--pattern", default="postprocess", choices=("postprocess", "predict"))
    parser.add_argument("--batch_size", type=int, default=512)
    args = parser.parse_args()
    try:
        if args.kind == "raw":
            result = raw(args.model, args.input, args.batch_size)
        elif args.kind == "seed":
            result = seed(args.model, args.input, args.output)
        else:
            result = pipeline_run(args.kind, args.model, args.input, args.output, args.pattern)
    except ParameterError as error:
        raise SystemExit(f"baselines: {error}") from None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
