"""BigQuery writing: rows and dead letters appended with file loads or streaming inserts.

The table schemas are the files in schemas/bigquery/, the same ones Terraform creates the tables from.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import apache_beam as beam
import orjson
from apache_beam.io.gcp.bigquery import BigQueryDisposition, WriteToBigQuery
from apache_beam.io.gcp.bigquery_tools import RetryStrategy

from transforms import counters
from transforms.dead_letters import dead_letter
from transforms.writing.rows import row_json

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "bigquery"
WRITE_STAGE = "write"


@cache
def table_schema(name: str) -> dict:
    """A schema file of schemas/bigquery/ as the `{"fields": [...]}` WriteToBigQuery takes."""
    return {"fields": json.loads((SCHEMAS / f"{name}.json").read_text())}


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


def prediction_table_row(payload: bytes, record_id: str | None, json_as_text: bool) -> dict[str, Any]:
    """A JSON output row as a predictions-table row.

    Its JSON columns (input, predictions.outputs) go as parsed JSON in load files and as JSON text in
    streaming inserts: each method reads the other form as a JSON string, not as the object.
    """
    row = orjson.loads(payload)
    if json_as_text:
        row["input"] = _json_text(row["input"])
        for prediction in row["predictions"]:
            prediction["outputs"] = _json_text(prediction["outputs"])
    return {"record_id": record_id, **row}


def dead_letter_table_row(payload: bytes, record_id: str | None, json_as_text: bool) -> dict[str, Any]:
    """A JSON dead letter as a dead-letters-table row (it has no JSON columns)."""
    return {"record_id": record_id, **orjson.loads(payload)}


def _table_row(encoded, to_row, json_as_text: bool) -> dict[str, Any]:
    return to_row(encoded.payload, encoded.record_id, json_as_text)


class _FailedInserts(beam.DoFn):
    """Rows BigQuery refused to insert become dead letters (and are no longer counted as written)."""

    def __init__(self, table: str, counted_as: counters.Count | None):
        self._table = table
        self._counted_as = counted_as

    def process(self, failure: tuple) -> Iterable:
        _, row, errors = failure
        if self._counted_as is not None:
            self._counted_as.inc(-1)
        message = f"BigQuery refused the row for {self._table}: {json.dumps(errors)[:2000]}"
        raw = row_json(row)
        yield dead_letter(
            WRITE_STAGE,
            RuntimeError(message),
            raw,
            self._table,
            key=row.get("key"),
            record_id=row.get("record_id") or uuid.uuid4().hex,
        )


class WriteTableRows(beam.PTransform):
    """Encoded records appended to a table: file loads in batch, streaming inserts when streaming.

    Returns the dead letters of rows a streaming insert refused; None in batch, where a failed load fails
    the job with BigQuery's error.
    """

    def __init__(self, table: str, schema: str, to_row, counted_as: counters.Count | None):
        super().__init__()
        self._table = table
        self._schema = schema
        self._to_row = to_row
        self._counted_as = counted_as

    def expand(self, encoded: beam.PCollection) -> beam.PCollection | None:
        streaming = not encoded.is_bounded
        method = WriteToBigQuery.Method.STREAMING_INSERTS if streaming else WriteToBigQuery.Method.FILE_LOADS
        result = (
            encoded
            | "ToTableRow" >> beam.Map(_table_row, self._to_row, json_as_text=streaming)
            | "WriteToBigQuery"
            >> WriteToBigQuery(
                self._table,
                schema=table_schema(self._schema),
                method=method,
                create_disposition=BigQueryDisposition.CREATE_IF_NEEDED,
                write_disposition=BigQueryDisposition.WRITE_APPEND,
                insert_retry_strategy=RetryStrategy.RETRY_ON_TRANSIENT_ERROR,
            )
        )
        if not streaming:
            return None
        return result.failed_rows_with_errors | "FailedInserts" >> beam.ParDo(
            _FailedInserts(self._table, self._counted_as)
        )
