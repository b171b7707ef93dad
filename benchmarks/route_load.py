"""Where one route model's load goes: TensorFlow's SavedModel load taken apart step by step, on tiny route models.

    python -m benchmarks.route_load [--routes=200]

Each of `routes` models (y = K x, tools/route_models.py) is loaded in turn in this process, as a routed job's
worker loads a route's model, then answers one batch of 200 serialized Examples twice. Reported: the median
milliseconds of each step, in the order `tf.compat.v1.saved_model.loader.load` takes them (the first batch
included: a session prepares each new set of feeds and fetches at its first run), and the whole load as the
pipeline does it (StagedModelHandler, which also builds tfx-bsl's handler), alone and sharing its graph's session
with the routes loaded before it. The first model is left out (it pays the process's one-time costs).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tools.route_models import write_route_root
from transforms.config import Batching, ModelSpec
from transforms.inference.model_cache import SAVED_MODEL_PROTO
from transforms.inference.predict import OutputArrays, StagedModelHandler
from transforms.inference.shared_graphs import SharedGraphs, init_op_name
from transforms.inference.signatures import SERVE_TAG, serving_signature

BATCH = 200


def _examples() -> list[bytes]:
    return [
        tf.train.Example(
            features=tf.train.Features(feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))})
        ).SerializeToString()
        for x in range(BATCH)
    ]


class _Clock:
    """Milliseconds per named step, over every model timed."""

    def __init__(self):
        self.steps: dict[str, list[float]] = {}
        self._last = 0.0

    def start(self) -> None:
        self._last = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.steps.setdefault(step, []).append(1000 * (now - self._last))
        self._last = now


def load_in_steps(path: str, examples: list[bytes], clock: _Clock) -> None:
    """The TF1 loader's steps, each timed, with public names: what tfx-bsl's handler runs in one call."""
    clock.start()
    data = Path(path, SAVED_MODEL_PROTO).read_bytes()
    clock.lap("read saved_model.pb")
    hashlib.sha256(data).hexdigest()
    clock.lap("sha256 of saved_model.pb")
    saved_model = saved_model_pb2.SavedModel.FromString(data)
    (meta_graph,) = [m for m in saved_model.meta_graphs if list(m.meta_info_def.tags) == [SERVE_TAG]]
    clock.lap("parse saved_model.pb")
    session = tf.compat.v1.Session(graph=tf.compat.v1.Graph())
    clock.lap("create the Session")
    with session.graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(meta_graph)
        clock.lap("import_meta_graph")
        saver.restore(session, os.path.join(path, "variables", "variables"))
        clock.lap("restore variables (first run of the restore op)")
    init = init_op_name(meta_graph)
    if init is not None:
        session.run(init)
    clock.lap("run the init op (a NoOp here: its first run)")
    signature = meta_graph.signature_def["serving_default"]
    feed = next(iter(signature.inputs.values())).name
    fetches = {alias: info.name for alias, info in signature.outputs.items()}
    session.run(fetches, {feed: examples})
    clock.lap("first batch (prepares its feeds and fetches: function, executor)")
    session.run(fetches, {feed: examples})
    clock.lap("second batch")


def load_as_pipeline(
    path: str, name: str, signature, examples: list[bytes], clock: _Clock, graphs: SharedGraphs | None = None
) -> object:
    """The load as a routed job's worker does it: StagedModelHandler, then one batch through OutputArrays; with
    `graphs`, sharing the session of the routes loaded before (the model is returned, to keep that session)."""
    clock.start()
    serving = StagedModelHandler(ModelSpec(path, name), signature, Batching(), graphs=graphs).load_model()
    clock.lap("StagedModelHandler(...).load_model()")
    outputs = OutputArrays(name)(serving.current(), examples)
    clock.lap("first batch")
    if outputs.arrays["y"][7, 0] != 7 * float(name.removeprefix("x")):
        raise AssertionError(f"route {name} answered {outputs.arrays['y'][7, 0]} for x = 7")
    return serving


def _report(title: str, clock: _Clock) -> None:
    print(title)
    total = 0.0
    for step, times in clock.steps.items():
        median = statistics.median(times)
        total += median
        print(f"  {step:<66} {median:7.2f} ms")
    print(f"  {'sum of medians':<66} {total:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routes", type=int, default=200)
    args = parser.parse_args()
    examples = _examples()
    with tempfile.TemporaryDirectory() as folder:
        paths = write_route_root(Path(folder), {f"x{k}": float(k) for k in range(1, args.routes + 1)})
        signature = serving_signature(str(paths["x1"]), "serving_default")
        steps, pipeline, shared = _Clock(), _Clock(), _Clock()
        graphs, held = SharedGraphs(), []
        for index, (name, path) in enumerate(paths.items()):
            load_in_steps(str(path), examples, steps if index else _Clock())
            load_as_pipeline(str(path), name, signature, examples, pipeline if index else _Clock())
            held.append(load_as_pipeline(str(path), name, signature, examples, shared if index else _Clock(), graphs))
    print(f"{args.routes - 1} tiny route models, each loaded on its own (medians)")
    _report("The loader's steps:", steps)
    _report("As a routed job's worker loads a route:", pipeline)
    _report("The same, the routes sharing one session on their graph (transforms/inference/shared_graphs.py):", shared)


if __name__ == "__main__":
    main()
