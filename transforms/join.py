"""Per-record join of several models' results, keyed by record id so equal user keys never mix."""

from __future__ import annotations

import typing

import apache_beam as beam
from apache_beam import coders
from apache_beam.transforms.userstate import BagStateSpec

from transforms.dead_letters import DeadLetter
from transforms.inference import DEAD_LETTERS, Pending


class _JoinPerRecord(beam.DoFn):
    """Holds a record's results until every model has answered, then emits them at once.

    State rather than a GroupByKey, so a record is emitted as soon as its last result arrives, in
    batch and in streaming alike (no window has to close first), and its state is then cleared.
    """

    PARTS = BagStateSpec("parts", coders.PickleCoder())

    def __init__(self, models: int):
        self._models = models

    def process(self, element: tuple[str, tuple[int, Pending | DeadLetter]], parts=beam.DoFn.StateParam(PARTS)):
        _, part = element
        parts.add(part)
        collected = sorted(parts.read(), key=lambda indexed: indexed[0])
        if len(collected) < self._models:
            return
        parts.clear()
        failures = [result for _, result in collected if isinstance(result, DeadLetter)]
        if failures:
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, failures[0])
            return
        first = collected[0][1]
        yield Pending(first.record, tuple(p for _, result in collected for p in result.predictions))


def _prediction_part(pending: Pending, index: int) -> tuple[str, tuple[int, Pending]]:
    return pending.record.id, (index, pending)


def _dead_letter_part(letter: DeadLetter, index: int) -> tuple[str, tuple[int, DeadLetter]]:
    return letter.record_id, (index, letter)


class KeyForJoin(beam.PTransform):
    """One model's (predictions, dead letters) keyed by record id and tagged with the model's index."""

    def __init__(self, index: int):
        super().__init__()
        self._index = index

    def expand(self, branch: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        predictions, dead_letters = branch
        # A str key type gives the join's state a deterministic key coder, which Dataflow requires.
        keyed = tuple[str, typing.Any]
        return (
            predictions | "KeyPredictions" >> beam.Map(_prediction_part, self._index).with_output_types(keyed),
            dead_letters | "KeyDeadLetters" >> beam.Map(_dead_letter_part, self._index).with_output_types(keyed),
        ) | "Flatten" >> beam.Flatten()


class JoinPerRecord(beam.PTransform):
    """The keyed parts of every model joined into one Pending per record, predictions in model order.

    A record one of whose models failed becomes a single dead letter (the failure of the first
    such model), so every record ends as exactly one row or one dead letter.
    """

    def __init__(self, models: int):
        super().__init__()
        self._models = models

    def expand(self, parts: beam.PCollection):
        join = beam.ParDo(_JoinPerRecord(self._models)).with_outputs(DEAD_LETTERS, main="joined")
        return parts | "Join" >> join
