"""Route models of one graph sharing a session: each route's exact answers, and every model that must not share."""

from __future__ import annotations

import gc
import os
import shutil
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tools.route_models import SAVED_MODEL_PROTO, export_template, write_multiply_models, write_route_root
from transforms.config import Batching, ModelSpec
from transforms.inference import shared_graphs
from transforms.inference.model_refresh import Refresh
from transforms.inference.predict import OutputArrays, StagedModelHandler
from transforms.inference.shared_graphs import RouteSession, SharedGraphs, unshared_reason
from transforms.inference.signatures import NAMED_TENSORS, read_saved_model, serving_signature

XS = [float(x) for x in range(10)]


def _examples(xs: list[float]) -> list[bytes]:
    feature = lambda x: tf.train.Feature(float_list=tf.train.FloatList(value=[x]))  # noqa: E731
    return [tf.train.Example(features=tf.train.Features(feature={"x": feature(x)})).SerializeToString() for x in xs]


def _load(path: Path, graphs: SharedGraphs):
    """The route model at `path` as a routed worker loads it, and its answer to a batch: y for each x of XS."""
    signature = serving_signature(str(path), "serving_default")
    current = StagedModelHandler(ModelSpec(str(path), path.parent.name), signature, Batching(), graphs=graphs)
    loaded = current.load_model().current()
    return loaded.model, lambda: OutputArrays(path.parent.name)(loaded, _examples(XS)).arrays["y"].ravel().tolist()


@pytest.fixture(scope="module")
def routes(tmp_path_factory) -> dict[str, Path]:
    """ROOT/xK/1/ multiplying by K, K = 1..6: the template's saved_model.pb copied, each its own checkpoint."""
    return write_route_root(tmp_path_factory.mktemp("routes"), {f"x{k}": float(k) for k in range(1, 7)})


def test_routes_of_one_graph_share_a_session_and_each_answers_with_its_own_variables(routes):
    protos = {(routes[route] / SAVED_MODEL_PROTO).read_bytes() for route in routes}
    assert len(protos) == 1, "the routes' graphs are the same bytes"
    graphs = SharedGraphs()
    answers = {route: _load(routes[route], graphs) for route in ["x1", "x2", "x3", "x4", "x5"]}
    models = [model for model, _ in answers.values()]
    assert all(isinstance(model, RouteSession) for model in models)
    assert len({id(model.graph) for model in models}) == 1, "one session for the five routes"
    # Out of load order and back again: a route whose variables the session no longer holds must restore its own.
    for route in ["x3", "x1", "x5", "x3", "x3", "x2", "x4", "x1", "x5"]:
        factor = float(route.removeprefix("x"))
        assert answers[route][1]() == [factor * x for x in XS], route


def test_threads_answering_routes_of_one_graph_at_once_each_get_their_routes_answer(routes):
    graphs = SharedGraphs()
    answers = {route: _load(routes[route], graphs)[1] for route in ["x2", "x3", "x4"]}
    wrong = []

    def ask(route: str) -> None:
        expected = [float(route.removeprefix("x")) * x for x in XS]
        wrong.extend(route for _ in range(100) if answers[route]() != expected)

    threads = [threading.Thread(target=ask, args=(route,)) for route in answers for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_a_graph_exported_again_is_other_bytes_and_gets_a_session_of_its_own(tmp_path, routes):
    # The same module exported twice in one process: TensorFlow numbers its functions per process (the second
    # export's are __inference_serve_N with another N), so the two graphs are not the same bytes and never share.
    other = export_template(tmp_path / "template")
    assert (other / SAVED_MODEL_PROTO).read_bytes() != (routes["x1"] / SAVED_MODEL_PROTO).read_bytes()
    (elsewhere,) = write_multiply_models(other, [(tmp_path / "x9" / "1", 9.0)])
    graphs = SharedGraphs()
    first, first_answer = _load(routes["x1"], graphs)
    second, second_answer = _load(elsewhere, graphs)
    assert first.graph is not second.graph
    assert first_answer() == XS and second_answer() == [9.0 * x for x in XS]


def test_a_checkpoint_holding_other_variables_loads_in_full(tmp_path, routes):
    extra = tmp_path / "x7" / "1"
    shutil.copytree(routes["x6"], extra)
    reader = tf.train.load_checkpoint(str(routes["x6"] / "variables" / "variables"))
    names = sorted(reader.get_variable_to_shape_map())
    values = {name: tf.constant(reader.get_tensor(name)) for name in names}
    values["extra/.ATTRIBUTES/VARIABLE_VALUE"] = tf.constant(7.0)
    shutil.rmtree(extra / "variables")
    tf.raw_ops.SaveV2(
        prefix=str(extra / "variables" / "variables"),
        tensor_names=sorted(values),
        shape_and_slices=[""] * len(values),
        tensors=[values[name] for name in sorted(values)],
    )
    graphs = SharedGraphs()
    x6, _ = _load(routes["x6"], graphs)  # held: a graph no route model uses is freed
    model, answer = _load(extra, graphs)
    assert isinstance(x6, RouteSession) and isinstance(model, tf.compat.v1.Session)
    assert answer() == [6.0 * x for x in XS]


def test_variables_rewritten_in_place_fail_the_routes_batches_instead_of_serving_other_weights(tmp_path, routes):
    copied = {route: tmp_path / route / "1" for route in ["x2", "x5"]}
    for route, path in copied.items():
        shutil.copytree(routes[route], path)
    graphs = SharedGraphs()
    _, x2 = _load(copied["x2"], graphs)
    _, x5 = _load(copied["x5"], graphs)
    assert x2() == [2.0 * x for x in XS]
    for name in os.listdir(copied["x2"] / "variables"):
        shutil.copyfile(copied["x5"] / "variables" / name, copied["x2"] / "variables" / name)
    assert x5() == [5.0 * x for x in XS]
    with pytest.raises(RuntimeError, match=r"variables changed on disk since it was loaded"):
        x2()


def test_a_graph_no_route_uses_any_more_is_freed(routes):
    graphs = SharedGraphs()
    graph = _load(routes["x1"], graphs)[0].graph
    freed = threading.Event()
    weakref.finalize(graph, freed.set)
    del graph
    gc.collect()
    assert freed.is_set()
    _, answer = _load(routes["x4"], graphs)
    assert answer() == [4.0 * x for x in XS]


def test_large_variables_load_in_full(monkeypatch, routes):
    monkeypatch.setattr(shared_graphs, "SHARED_VARIABLES_MAX_BYTES", 1)
    model, answer = _load(routes["x3"], SharedGraphs())
    assert isinstance(model, tf.compat.v1.Session)
    assert answer() == [3.0 * x for x in XS]


class _Vocabulary(tf.Module):
    """y = the index of the Example's word in a vocabulary: a table its init op fills, from a file or constants."""

    def __init__(self, vocabulary: Path | None):
        super().__init__()
        if vocabulary is None:
            initializer = tf.lookup.KeyValueTensorInitializer(["a", "b"], [0.0, 1.0])
        else:
            initializer = tf.lookup.TextFileInitializer(
                str(vocabulary),
                tf.string,
                tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER,
            )
        self.table = tf.lookup.StaticHashTable(initializer, default_value=-1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, examples):
        parsed = tf.io.parse_example(examples, {"word": tf.io.FixedLenFeature([1], tf.string)})
        return {"y": tf.cast(self.table.lookup(parsed["word"]), tf.float32)}


@pytest.mark.parametrize("assets", [True, False], ids=["vocabulary file", "constant table"])
def test_a_model_whose_init_op_fills_tables_loads_in_full(tmp_path, assets):
    vocabulary = None
    if assets:
        vocabulary = tmp_path / "vocabulary.txt"
        vocabulary.write_text("a\nb\n")
    module = _Vocabulary(vocabulary)
    first = tmp_path / "m1"
    tf.saved_model.save(module, str(first), signatures={"serving_default": module.serve})
    (meta_graph,) = read_saved_model(str(first)).meta_graphs
    reason = unshared_reason(meta_graph)
    if assets:
        assert reason == "it has asset files"
    else:
        assert reason.startswith("its init op") and reason.endswith("does work (it may fill tables)")
    second = tmp_path / "m2"
    shutil.copytree(first, second)
    loads = []
    graphs = SharedGraphs()
    for path in [first, second]:
        assert graphs.load(str(path), lambda path=path: loads.append(path) or "a full load") == "a full load"
    assert loads == [first, second]


def test_a_refreshed_version_of_the_same_graph_is_its_own_load_and_the_old_one_keeps_its_weights(tmp_path):
    base = tmp_path / "tenant"
    template = export_template(tmp_path / "template")
    write_multiply_models(template, [(base / "1", 2.0)])
    signature = serving_signature(str(base / "1"), "serving_default")
    spec = ModelSpec(str(base / "1"), "tenant", version="1", base=str(base))
    refresh = Refresh(1, signature, ("y",))
    serving = StagedModelHandler(spec, signature, Batching(), refresh, SharedGraphs()).load_model()
    taken = lambda: serving.served(lambda loaded, _: loaded, None)  # noqa: E731 -- (loaded, spec, counters)
    old, _, counters = taken()
    assert counters == [("RunInference.tenant", "version_1_loads")]
    write_multiply_models(template, [(base / "2", 5.0)])
    deadline = time.monotonic() + 30
    while (new := taken())[0].version != "2" and time.monotonic() < deadline:
        time.sleep(0.1)
    new, _, counters = new
    assert counters == [("RunInference.tenant", "version_2_loads")], "the new version is a load of its own"
    assert new.model.graph is old.model.graph, "the same graph: one session"
    answer = lambda loaded: OutputArrays("tenant")(loaded, _examples(XS)).arrays["y"].ravel().tolist()  # noqa: E731
    for loaded, factor in [(new, 5.0), (old, 2.0), (new, 5.0)]:
        assert answer(loaded) == [factor * x for x in XS], "a batch that took the old version ends on its weights"


class _NamedMultiply(tf.Module):
    """y = k * x with x a named float tensor, not a serialized Example: the named-tensor engine's kind of model."""

    def __init__(self):
        super().__init__()
        self.multiplier = tf.Variable(1.0, dtype=tf.float32, name="multiplier")

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def serve(self, x):
        return {"y": x * self.multiplier}


def test_named_tensor_routes_of_one_graph_share_a_session_and_answer_with_their_own_variables(tmp_path):
    module = _NamedMultiply()
    tf.saved_model.save(module, str(tmp_path / "template"), signatures={"serving_default": module.serve})
    paths = write_multiply_models(tmp_path / "template", [(tmp_path / f"n{k}" / "1", float(k)) for k in (3, 4)])
    signature = serving_signature(str(paths[0]), "serving_default")
    assert signature.kind == NAMED_TENSORS
    graphs = SharedGraphs()
    loaded = {
        path.parent.name: StagedModelHandler(
            ModelSpec(str(path), path.parent.name), signature, Batching(), None, graphs
        )
        .load_model()
        .current()
        for path in paths
    }
    assert loaded["n3"].model.graph is loaded["n4"].model.graph
    inputs = [{"x": np.array([x], np.float32)} for x in XS]
    for name in ["n4", "n3", "n4"]:
        answer = OutputArrays(name)(loaded[name], inputs).arrays["y"].ravel().tolist()
        assert answer == [float(name.removeprefix("n")) * x for x in XS], name
