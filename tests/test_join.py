"""The per-record join: results from several models meet by record id, never by user key."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.dead_letters import record_dead_letter
from transforms.inference import Pending
from transforms.join import JoinPerRecord, KeyForJoin
from transforms.postprocess import ModelPrediction
from transforms.records import Record


def _record(record_id: str, x: float) -> Record:
    return Record(record_id, "same-key", {"x": x}, b"raw", "test")


def _predicted(record: Record, model: str, factor: float) -> Pending:
    return Pending(record, (ModelPrediction(model, {"y": [factor * record.features["x"]]}),))


def test_records_with_the_same_key_are_joined_separately_and_failures_become_one_dead_letter():
    records = [_record(f"id{i}", float(i)) for i in range(4)]
    poisoned = records[3]
    with BeamPipeline(runner="FnApiRunner") as p:
        first = (
            p | "First" >> beam.Create([_predicted(r, "m5", 5) for r in records]),
            p | "NoFailures" >> beam.Create([]),
        ) | "Key0" >> KeyForJoin(0)
        second = (
            p | "Second" >> beam.Create([_predicted(r, "m10", 10) for r in records[:3]]),
            p | "Failure" >> beam.Create([record_dead_letter("inference", ValueError("poison"), poisoned, "m10")]),
        ) | "Key1" >> KeyForJoin(1)
        joined, dead_letters = (first, second) | beam.Flatten() | JoinPerRecord(2)
        assert_that(
            joined
            | "Summarise" >> beam.Map(lambda p: (p.record.id, [(m.model, m.outputs["y"][0]) for m in p.predictions])),
            equal_to([(f"id{i}", [("m5", 5.0 * i), ("m10", 10.0 * i)]) for i in range(3)]),
        )
        assert_that(
            dead_letters | "Ids" >> beam.Map(lambda d: (d.record_id, d.model, d.message)),
            equal_to([("id3", "m10", "poison")]),
            label="OneDeadLetter",
        )
