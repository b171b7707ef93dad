"""Output rows as JSON lines: every value a BigQuery row or a model can hold, written as BigQuery loads it."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from transforms.writing.rows import row_json


def test_bytes_dates_times_decimals_and_nan_are_written_as_json_holds_them():
    row = {
        "raw": b"\xff\x00",
        "day": datetime.date(2024, 5, 1),
        "at": datetime.time(7, 5),
        "price": Decimal("12.50"),
        "y": float("nan"),
    }
    assert row_json(row) == b'{"raw":"/wA=","day":"2024-05-01","at":"07:05:00","price":"12.50","y":null}'


def test_a_value_json_cannot_hold_is_named():
    with pytest.raises(TypeError) as refused:
        row_json({"x": object()})
    assert str(refused.value.__cause__) == "object is not JSON serializable"
