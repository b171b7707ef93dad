"""A poison example costs only itself: its batch-mates still get predictions."""

from __future__ import annotations

import tensorflow as tf
from apache_beam.ml.inference.base import ModelHandler

from transforms.inference.predict import InferenceFailure, IsolatingModelHandler, RecordBatchHandler, error_summary


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


def test_a_failing_batch_is_halved_until_the_poison_example_stands_alone():
    base = _NegativeIsPoison()
    handler = IsolatingModelHandler(base)
    results = handler.run_inference([1, -2, 3], handler.load_model())
    assert results[0] == 2 and results[2] == 6
    assert isinstance(results[1], InferenceFailure)
    assert str(results[1]) == "InvalidArgumentError: negative input"
    assert base.calls == [[1, -2, 3], [1], [-2, 3], [-2], [3]]


def test_two_poison_examples_in_a_large_batch_cost_only_themselves_in_few_model_calls():
    base = _NegativeIsPoison()
    batch = [i if i not in (100, 301) else -i for i in range(512)]
    results = IsolatingModelHandler(base).run_inference(batch, "model")
    failed = [i for i, result in enumerate(results) if isinstance(result, InferenceFailure)]
    assert failed == [100, 301]
    assert [r for i, r in enumerate(results) if i not in failed] == [2 * x for x in batch if x >= 0]
    assert len(base.calls) <= 2 * 2 * 9 + 1, "each poison example found by halving, not by 512 single calls"


def test_a_healthy_batch_runs_once_and_settings_are_delegated():
    base = _NegativeIsPoison()
    handler = IsolatingModelHandler(base)
    assert handler.run_inference([1, 2], "model") == [2, 4]
    assert base.calls == [[1, 2]]
    assert handler.batch_elements_kwargs() == {"max_batch_size": 7}


def test_error_summary_keeps_the_message_and_drops_graph_noise():
    assert error_summary(ValueError("plain")) == "plain"
    assert error_summary(ValueError("")) == "ValueError('')"


def test_a_record_batch_is_the_models_batch_and_comes_back_as_one_element():
    class Examples(_NegativeIsPoison):
        def get_num_bytes(self, batch):
            return sum(len(example) for example in batch)

    handler = RecordBatchHandler(Examples())
    unpicklable_record = lambda: None  # noqa: E731 -- Beam's KeyedModelHandler would have to pickle it
    assert handler.should_skip_batching(), "the source made the batch: RunInference must not batch batches"
    assert handler.get_num_bytes([(unpicklable_record, b"abc"), ("record", b"de")]) == 5
    assert handler.run_inference([("a", 1), ("b", 2)], "model") == [[("a", 2), ("b", 4)]]
