"""The reference points the patterns are measured against, each run on its own in a fresh process:

- raw: the SavedModel called directly in batches, loaded as tfx-bsl loads it (the model's own limit);
- floor: the project's own source, parsing, encoding, row formatting and sink, with no model at all;
- naive: the same pipeline with a DoFn that calls the model once per element.

    python -m benchmarks.baselines raw|floor|naive --model DIR --input FILE [--output PREFIX]

Each prints one JSON line: {"seconds": ..., "records": ...}.
"""

from __future__ import annotations

import argparse
import json
import time

import apache_beam as beam
import tensorflow as tf

import transforms  # noqa: F401  (first: TensorFlow's quiet import)
from transforms.config import ParameterError
from transforms.inference import Pending
from transforms.patterns import ENCODE_STAGE, encode, record_example
from transforms.pipeline import parse_arguments
from transforms.postprocess import ModelPrediction
from transforms.runner import local_runner
from transforms.sinks import write_dead_letters, write_results
from transforms.sources import ReadRecords, plan_input


def _session(model_dir: str):
    session = tf.compat.v1.Session(graph=tf.compat.v1.Graph())
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], model_dir)
    signature = meta_graph.signature_def["serving_default"]
    return session, signature.inputs["examples"].name, {a: t.name for a, t in signature.outputs.items()}


def raw(model_dir: str, input_path: str, batch_size: int) -> dict:
    examples = [record.numpy() for record in tf.data.TFRecordDataset(input_path)]
    session, feed, fetches = _session(model_dir)
    session.run(fetches, {feed: examples[:batch_size]})  # warm-up: graph optimisation on first run
    started = time.perf_counter()
    for start in range(0, len(examples), batch_size):
        session.run(fetches, {feed: examples[start : start + batch_size]})
    return {"seconds": time.perf_counter() - started, "records": len(examples)}


def _no_model(element: tuple[Pending, bytes]) -> Pending:
    pending, _ = element
    return pending._replace(predictions=(ModelPrediction("none", {"y": [0.0]}),))


class _OneAtATime(beam.DoFn):
    """The anti-pattern: one model call per element."""

    def __init__(self, model_dir: str):
        self._model_dir = model_dir

    def setup(self):
        self._session, self._feed, self._fetches = _session(self._model_dir)

    def process(self, element: tuple[Pending, bytes]):
        pending, example = element
        outputs = self._session.run(self._fetches, {self._feed: [example]})
        prediction = ModelPrediction("naive", {alias: value[0].ravel().tolist() for alias, value in outputs.items()})
        yield pending._replace(predictions=(prediction,))


def pipeline_run(kind: str, model_dir: str, input_path: str, output: str) -> dict:
    config, options, _ = parse_arguments(
        ["--pattern=postprocess", f"--model_uris={model_dir}", f"--input={input_path}", f"--output={output}"]
    )
    plan = plan_input(config)
    started = time.perf_counter()
    with beam.Pipeline(runner=local_runner(options), options=options) as pipeline:
        records, parse_failures = pipeline | "Read" >> ReadRecords(plan, config)
        examples, encode_failures = encode(records | beam.Map(Pending), "Encode", ENCODE_STAGE, record_example)
        model = _no_model if kind == "floor" else _OneAtATime(model_dir)
        rows = examples | "Model" >> (beam.Map(model) if kind == "floor" else beam.ParDo(model))
        rows | "WriteResults" >> write_results(config)
        (parse_failures, encode_failures) | beam.Flatten() | "WriteDeadLetters" >> write_dead_letters(config)
    return {"seconds": time.perf_counter() - started, "records": sum(1 for _ in tf.data.TFRecordDataset(input_path))}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baselines", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("raw", "floor", "naive"))
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", default="")
    parser.add_argument("--batch_size", type=int, default=512)
    args = parser.parse_args()
    try:
        if args.kind == "raw":
            result = raw(args.model, args.input, args.batch_size)
        else:
            result = pipeline_run(args.kind, args.model, args.input, args.output)
    except ParameterError as error:
        raise SystemExit(f"baselines: {error}") from None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
