"""Output rows as JSON lines: every value a BigQuery row or a model can hold, written as BigQuery loads it."""

from __future__ import annotations

import datetime
from decimal import Decimal

import numpy as np
import pytest

from transforms.inference.postprocess import row_values
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


def _rows(array: np.ndarray) -> list[bytes]:
    return [row_json(values) for values in row_values({"y": array}, len(array))["y"]]


def test_a_float32_output_is_written_as_the_shortest_text_that_reads_back_as_that_float32():
    values = np.array([0.1, 1 / 3, 1e-8, 3.4028235e38, -0.0, 16777217.0, np.nan, np.inf], dtype=np.float32)
    assert _rows(values.reshape(2, 4)) == [b"[0.1,0.33333334,1e-8,3.4028235e+38]", b"[-0.0,16777216.0,null,null]"]
    assert [np.float32(float(text)) for text in row_json(values[:6]).decode()[1:-1].split(",")] == list(values[:6])


def test_other_dtypes_keep_their_own_shortest_form():
    assert _rows(np.array([[0.1], [1 / 3]], dtype=np.float64)) == [b"[0.1]", b"[0.3333333333333333]"]
    assert _rows(np.array([[0.1, 65504]], dtype=np.float16)) == [b"[0.1,65500.0]"]  # 65500 reads back as 65504
    assert np.float16(65500.0) == np.float16(65504)
    assert _rows(np.array([[-(2**63), 2**63 - 1]], dtype=np.int64)) == [b"[-9223372036854775808,9223372036854775807]"]
    assert _rows(np.array([[255, 7]], dtype=np.uint8)) == [b"[255,7]"]
    assert _rows(np.array([[True, False]])) == [b"[true,false]"]
    assert _rows(np.array([[b"cat", b"\xff"]], dtype=object)) == [b'["cat","\\\\xff"]']


def test_an_output_in_another_byte_order_or_layout_is_written_alike():
    big_endian = np.array([[0.1, 2.5], [1 / 3, -1.0]], dtype=">f4")
    transposed = np.array([[0.1, 1 / 3], [2.5, -1.0]], dtype=np.float32).T
    assert _rows(big_endian) == _rows(transposed) == [b"[0.1,2.5]", b"[0.33333334,-1.0]"]
