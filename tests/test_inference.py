"""A poison example costs only itself: its batch-mates still get predictions."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from apache_beam.ml.inference.base import ModelHandler

from transforms.config import ModelSpec
from transforms.inference.batches import Batch, ModelFeed, ModelOutputs, joined
from transforms.inference.model_refresh import LoadedModel
from transforms.inference.predict import BatchModelHandler, InferenceFailure, error_summary, isolated
from transforms.records.parsing import Record


class _NegativeIsPoison(ModelHandler):
    """Doubles numbers in batches and fails the whole batch on a negative one, like a model would."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def load_model(self):
        return "model"

    def run_inference(self, batch, model, inference_args=None):
        self.calls.append(list(batch))
        if any(x < 0 for x in batch):
            raise tf.errors.InvalidArgumentError(
                None, None, "Graph execution error:\n\nnegative input\n\t [[{node x}]]"
            )
        return [2 * x for x in batch]

    def batch_elements_kwargs(self):
        return {"max_batch_size": 7}


def _doubled(base: _NegativeIsPoison):
    """The poison model's answer as ModelOutputs, as the template's answers are."""
    return lambda inputs: ModelOutputs("double", None, {"y": np.array(base.run_inference(inputs, "model"))})


def test_a_failing_batch_is_halved_until_the_poison_example_stands_alone():
    base = _NegativeIsPoison()
    parts, failures = isolated(_doubled(base), [1, -2, 3])
    assert joined(parts).arrays["y"].tolist() == [2, 6]
    ((position, failure),) = failures
    assert position == 1 and isinstance(failure, InferenceFailure)
    assert str(failure) == "InvalidArgumentError: negative input"
    assert base.calls == [[1, -2, 3], [1], [-2, 3], [-2], [3]]


def test_two_poison_examples_in_a_large_batch_cost_only_themselves_in_few_model_calls():
    base = _NegativeIsPoison()
    batch = [i if i not in (100, 301) else -i for i in range(512)]
    parts, failures = isolated(_doubled(base), batch)
    assert [position for position, _ in failures] == [100, 301]
    assert joined(parts).arrays["y"].tolist() == [2 * x for x in batch if x >= 0]
    assert len(base.calls) <= 2 * 2 * 9 + 1, "each poison example found by halving, not by 512 single calls"


def test_a_healthy_batch_runs_once():
    base = _NegativeIsPoison()
    parts, failures = isolated(_doubled(base), [1, 2])
    assert len(parts) == 1 and parts[0].arrays["y"].tolist() == [2, 4] and not failures
    assert base.calls == [[1, 2]]
    assert joined([]) is None


def test_error_summary_keeps_the_message_and_drops_graph_noise():
    assert error_summary(ValueError("plain")) == "plain"
    assert error_summary(ValueError("")) == "ValueError('')"


class _Served:
    """A ServingModel's stand-in: the version serving now, which a refresh could swap between batches."""

    def __init__(self, version: str):
        self.loaded = LoadedModel(_NegativeIsPoison(), "model", ModelSpec("/m/7", "double", version=version, base="/m"))

    def served(self, work, inputs):
        return work(self.loaded, inputs), self.loaded.spec, []


def test_a_fed_batch_is_the_models_batch_and_comes_back_as_one_answer_naming_its_version():
    class Staged(_NegativeIsPoison):
        def get_num_bytes(self, batch):
            return sum(len(example) for example in batch)

    def answer(loaded: LoadedModel, inputs) -> ModelOutputs:
        values = np.array(loaded.handler.run_inference([len(e) if e != b"bad" else -1 for e in inputs], "model"))
        return ModelOutputs("double", loaded.version, {"y": values})

    handler = BatchModelHandler(Staged(), answer)
    unpicklable = Record("id0", "k0", {"f": lambda: None}, b"r0", "src")  # never pickled to count its bytes
    records = [unpicklable, *(Record(f"id{i}", f"k{i}", {}, b"r", "src") for i in (1, 2))]
    feed = ModelFeed(Batch(records), [b"abc", b"bad", b"de"])
    assert handler.should_skip_batching(), "the source made the batch: RunInference must not batch batches"
    assert handler.get_num_bytes(feed) == 8
    (result,) = handler.run_inference(feed, _Served("7"))
    assert result.batch is feed.batch
    assert result.outputs.version == "7" and result.outputs.arrays["y"].tolist() == [6, 4]
    assert [(position, str(failure)) for position, failure in result.failures] == [
        (1, "InvalidArgumentError: negative input")
    ]
