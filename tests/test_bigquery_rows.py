"""Rows a streaming insert refuses become dead letters that say why, with the row, key and record id."""

from __future__ import annotations

import json

from transforms.writing.bigquery import WRITE_STAGE, _FailedInserts


def test_a_refused_row_becomes_a_write_dead_letter():
    row = {"record_id": "message-7", "key": "device-7", "input": '{"x": 7.0}', "predictions": []}
    errors = [{"reason": "invalid", "message": "no such field: extra"}]
    [letter] = _FailedInserts("p:d.predictions", None).process(("p:d.predictions", row, errors))
    assert (letter.stage, letter.key, letter.record_id, letter.source) == (
        WRITE_STAGE,
        "device-7",
        "message-7",
        "p:d.predictions",
    )
    assert "no such field: extra" in letter.message and json.loads(letter.raw) == row
