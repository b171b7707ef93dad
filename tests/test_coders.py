"""Batches of Records, batches on their way through the models, and Encoded rows: sized without pickling a record."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam import typehints

from transforms.inference.batches import Batch, ModelAnswer, ModelFeed, ModelOutputs
from transforms.inference.coders import BatchCoder, ModelAnswerCoder, ModelFeedCoder
from transforms.records.coders import RecordBatch, RecordBatchCoder, RecordCoder
from transforms.records.parsing import Record
from transforms.writing.sinks import Encoded, EncodedCoder

RECORDS = [
    Record("id0", "k0", {"x": 1.5, "ids": [1, 2], "s": "é", "b": b"\xff"}, b'{"key": "k0"}', "in.jsonl"),
    Record("id1", None, {"x": 2.5}, b"\n\x0f", "in.tfrecord", model_input=b"\n\x0d"),
]


def test_a_batch_of_records_is_a_list_coded_and_back_unchanged():
    coder = beam.coders.registry.get_coder(RecordBatch)
    assert isinstance(coder, RecordBatchCoder)
    decoded = coder.decode(coder.encode(RecordBatch(RECORDS)))
    assert decoded == RECORDS and type(decoded) is RecordBatch and all(type(record) is Record for record in decoded)


def test_the_size_of_a_sampled_batch_is_its_records_estimates_not_their_pickles():
    impl = beam.coders.registry.get_coder(RecordBatch).get_impl()
    size, observables = impl.get_estimated_size_and_observables(RecordBatch(RECORDS))
    record_sizes = [2 * len(r.raw) + len(r.model_input or b"") + len(r.id) + len(r.source) for r in RECORDS]
    assert size == sum(record_sizes) and not observables
    # A batch larger than the sample is sized from 8 of its records, evenly spread, scaled to all of them.
    large = RecordBatch([RECORDS[0]] * 300)
    assert impl.get_estimated_size_and_observables(large)[0] == 300 * record_sizes[0]


def test_a_batch_of_encoded_rows_round_trips_and_is_sized_by_its_payloads():
    batch = [Encoded(b'{"key": "k"}', "id0", "k"), Encoded(b"\x00\x01", None, None)]
    coder = beam.coders.registry.get_coder(typehints.List[Encoded])
    assert coder == beam.coders.ListCoder(EncodedCoder())
    assert coder.decode(coder.encode(batch)) == batch
    size, _ = coder.get_impl().get_estimated_size_and_observables(batch)
    assert size == 4 + (12 + 3 + 1 + 1) + (2 + 1)


def test_text_utf8_cannot_hold_survives_encoding():
    """A JSON \\udc00 escape reads as a lone surrogate; the record must still cross a stage boundary intact."""
    record = Record("id", "\udc00", {"s": "\ud800"}, b'{"key": "\\udc00"}', "in.jsonl")
    coder = beam.coders.registry.get_coder(RecordBatch)
    assert coder.decode(coder.encode(RecordBatch([record]))) == [record]


def test_a_batch_on_its_way_through_the_models_round_trips_and_is_sized_by_its_lengths_and_arrays():
    m5 = ModelOutputs("m5", None, {"y": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)})
    m10 = ModelOutputs("m10", "7", {}, (b"log0", b"log1!"))
    batch = Batch(RECORDS, (m5, m10), [b"ex0", b"ex1"])
    coder = beam.coders.registry.get_coder(Batch)
    assert isinstance(coder, BatchCoder)
    assert coder.decode(coder.encode(batch)) == batch
    records = sum(RecordCoder().estimate_size(record) for record in RECORDS)
    assert coder.estimate_size(batch) == records + 16 + 9 + 6
    feed = ModelFeed(batch, [b"abc", b"de"])
    feed_coder = beam.coders.registry.get_coder(ModelFeed)
    assert isinstance(feed_coder, ModelFeedCoder) and feed_coder.estimate_size(feed) == records + 31 + 5
    decoded = feed_coder.decode(feed_coder.encode(feed))
    assert decoded.batch == batch and decoded.inputs == feed.inputs and len(decoded) == 2
    answer = ModelAnswer(batch, m5, ((1, ValueError("poison")),))
    answer_coder = beam.coders.registry.get_coder(ModelAnswer)
    assert isinstance(answer_coder, ModelAnswerCoder) and answer_coder.estimate_size(answer) == records + 31 + 16
