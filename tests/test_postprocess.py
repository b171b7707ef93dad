"""A batch of model outputs turned into each example's outputs as plain lists."""

from __future__ import annotations

import numpy as np
import pytest

from transforms.inference.batches import Batch, ModelOutputs
from transforms.inference.postprocess import outputs_by_example
from transforms.records.parsing import Record
from transforms.writing.rows import batch_predictions, row_json


def test_outputs_are_flat_lists_per_example_by_alias():
    outputs = {
        "y": np.array([[2.5], [5.0]], dtype=np.float32),
        "ids": np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64),
        "label": np.array([b"cat", b"dog"], dtype=object),
        "grid": np.arange(8, dtype=np.float32).reshape(2, 2, 2),
    }
    assert outputs_by_example(outputs, 2) == [
        {"grid": [0.0, 1.0, 2.0, 3.0], "ids": [1, 2, 3], "label": ["cat"], "y": [2.5]},
        {"grid": [4.0, 5.0, 6.0, 7.0], "ids": [4, 5, 6], "label": ["dog"], "y": [5.0]},
    ]
    assert all(type(v) is float for v in outputs_by_example(outputs, 2)[0]["y"])


def test_an_output_without_a_batch_dimension_is_named():
    with pytest.raises(ValueError, match="output 'y' has shape \\(\\); expected a first \\(batch\\) dimension of 2"):
        outputs_by_example({"y": np.float32(1.0)}, 2)
    with pytest.raises(ValueError, match="dimension of 3"):
        outputs_by_example({"y": np.zeros((2, 1))}, 3)


def test_a_batchs_outputs_become_each_records_predictions_in_model_order():
    records = [Record(f"id{i}", f"k{i}", {"x": float(i)}, b"", "src") for i in range(3)]
    m5 = ModelOutputs("m5", None, {"y": np.array([0.0, 5.0, 10.0], np.float32)})
    m10 = ModelOutputs("m10", "3", {"y": np.array([[0.0], [50.0], [100.0]]), "label": np.array([b"a", b"b", b"\xff"])})
    predictions = batch_predictions(Batch(records, (m5, m10)))
    assert row_json(predictions[1]) == (
        b'[{"model":"m5","version":null,"outputs":{"y":[5.0]}},'
        b'{"model":"m10","version":"3","outputs":{"label":["b"],"y":[50.0]}}]'
    )
    assert predictions[2][1]["outputs"]["label"] == ["\\xff"], "bytes that are not UTF-8 stay visible, escaped"
    kept = Batch(records, (m5, m10)).take([0, 2])
    assert [r.key for r in kept.records] == ["k0", "k2"]
    assert row_json(batch_predictions(kept)[1]) == row_json(predictions[2])
