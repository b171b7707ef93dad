"""A record as a Vertex AI endpoint's JSON instance, and the bytes it adds to a request.

An instance is the record's features (never its key), each under its own name or under the input name
--input_features maps it to. Values go as the endpoint's REST API carries them, in a protobuf `Value`: numbers are
doubles, so an int beyond 2**53 (which a double cannot hold exactly) is refused rather than rounded; NaN and
infinities, which JSON cannot hold, are refused; bytes that are not text go as `{"b64": "..."}`, the convention of
Vertex AI's prebuilt containers and TF Serving. A refused value makes the record an `encode` dead letter.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from transforms.inference.batches import Batch
from transforms.records.parsing import FeatureValue

Instance = dict[str, Any]

# The largest integer a double holds exactly, with every integer below it.
EXACT_DOUBLE_INTEGERS = 2**53
# The request body around its instances, as the client's REST transport writes it: `{\n  "instances": [\n` ...
# `\n  ]\n}`. Each instance sits two levels deep, so each of its lines is indented 4 spaces more than on its own.
_ENVELOPE_BYTES = len('{\n  "instances": [\n') + len("\n  ]\n}")
_INSTANCE_INDENT = 4


def _json_value(feature: str, value: FeatureValue) -> Any:
    if isinstance(value, list):
        return [_json_value(feature, item) for item in value]
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"feature {feature!r} is {value}, which a JSON instance cannot hold")
        return value
    if isinstance(value, int):
        if abs(value) > EXACT_DOUBLE_INTEGERS:
            raise ValueError(
                f"feature {feature!r} is {value}, which a JSON instance cannot carry exactly (its numbers are "
                "doubles, exact up to 2**53): send it as text (a bytes feature)"
            )
        return float(value)
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value


class RecordInstances:
    """What a Vertex AI endpoint is fed: each record's JSON instance, built a batch at a time.

    `input_features` is --input_features (input name -> feature): a mapped feature goes under its input's name.
    """

    def __init__(self, input_features: Mapping[str, str] = MappingProxyType({})):
        self._names = {feature: name for name, feature in input_features.items()}

    def __call__(self, features: Mapping[str, FeatureValue]) -> Instance:
        return {self._names.get(feature, feature): _json_value(feature, value) for feature, value in features.items()}

    def batch(self, batch: Batch) -> list[Instance]:
        return [self(record.features) for record in batch.records]

    def one(self, batch: Batch, position: int) -> Instance:
        return self(batch.records[position].features)


def request_bytes(instances: list[Instance]) -> int:
    """The bytes of a predict request's body holding `instances`, exactly as the client's REST transport sends it.

    The transport writes the request with protobuf's json_format: `json.dumps` of the message with indent=2 and
    ASCII escapes, numbers as doubles (which the instances already are).
    """
    return _ENVELOPE_BYTES + sum(instance_bytes(instance) for instance in instances) + 2 * max(len(instances) - 1, 0)


def instance_bytes(instance: Instance) -> int:
    """An instance's share of a request body: its indented JSON, without the `,\\n` between instances."""
    text = json.dumps(instance, indent=2)
    return len(text) + _INSTANCE_INDENT * (text.count("\n") + 1)
