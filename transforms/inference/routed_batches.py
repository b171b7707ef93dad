"""What travels through a routed job's inference: a fed batch with its route, and the answer with its route.

A routed batch is one route's records (one model's batch): the route picks the model that answers it, names the
rows' model, and names the model in the dead letters of records it fails on. Coders size both from their batches
(transforms/inference/coders.py), so Beam's size sampling never pickles a whole batch.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam

from transforms.inference.batches import ModelAnswer, ModelFeed
from transforms.inference.coders import ModelAnswerCoder, ModelFeedCoder
from transforms.records.coders import SizedPickleCoder


class RoutedFeed:
    """One route's batch with its model's inputs. Its length is its number of inputs, as RunInference counts them."""

    __slots__ = ("feed", "route")

    def __init__(self, route: str, feed: ModelFeed):
        self.route = route
        self.feed = feed

    def __len__(self) -> int:
        return len(self.feed)

    def __reduce__(self):
        return RoutedFeed, (self.route, self.feed)


class RoutedAnswer(NamedTuple):
    """What the route's model made of its batch."""

    route: str
    answer: ModelAnswer


_FEED = ModelFeedCoder()
_ANSWER = ModelAnswerCoder()


class RoutedFeedCoder(SizedPickleCoder):
    def estimate_size(self, routed: RoutedFeed) -> int:
        return len(routed.route) + _FEED.estimate_size(routed.feed)

    def to_type_hint(self):
        return RoutedFeed


class RoutedAnswerCoder(SizedPickleCoder):
    def estimate_size(self, routed: RoutedAnswer) -> int:
        return len(routed.route) + _ANSWER.estimate_size(routed.answer)

    def to_type_hint(self):
        return RoutedAnswer


beam.coders.registry.register_coder(RoutedFeed, RoutedFeedCoder)
beam.coders.registry.register_coder(RoutedAnswer, RoutedAnswerCoder)
