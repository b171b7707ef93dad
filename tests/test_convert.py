"""CSV and JSON Lines to TFRecord: the key kept as a feature, the rest typed, bad lines named."""

from __future__ import annotations

import pytest
import tensorflow as tf

from tools.convert import convert
from transforms.config import FeatureTypes
from transforms.records.parsing import RecordError, parse_tfrecord


def test_csv_rows_become_examples_that_the_pipeline_reads_back(tmp_path):
    source = tmp_path / "rows.csv"
    source.write_text("key,x,count\ndev-1,1.5,3\ndev-2,-2,4\n")
    destination = str(tmp_path / "rows.tfrecord")
    assert convert(str(source), destination, types=FeatureTypes.parse("float", "count:int")) == 2
    records = [parse_tfrecord(r.numpy(), "key")[:2] for r in tf.data.TFRecordDataset(destination)]
    assert records == [("dev-1", {"x": 1.5, "count": 3}), ("dev-2", {"x": -2.0, "count": 4})]


def test_a_bad_line_is_named_by_file_and_number(tmp_path):
    source = tmp_path / "rows.jsonl"
    source.write_text('{"key": "a", "x": 1}\n{"key": "b", "x": "one"}\n')
    with pytest.raises(RecordError, match=r"rows.jsonl:2: feature 'x' should be a number"):
        convert(str(source), str(tmp_path / "out.tfrecord"))
