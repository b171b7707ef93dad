"""Dead letters: rejected records with the raw input, the error and the stage where they failed."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from typing import NamedTuple

from transforms.records.parsing import Record


class DeadLetter(NamedTuple):
    """A record that did not become an output row, and why."""

    stage: str
    error: str
    message: str
    raw: bytes
    source: str
    key: str | None = None
    model: str | None = None
    timestamp: float = 0.0
    record_id: str | None = None


def dead_letter(stage: str, error: BaseException, raw: bytes, source: str, **fields) -> DeadLetter:
    return DeadLetter(stage, type(error).__name__, str(error), raw, source, timestamp=time.time(), **fields)


def record_dead_letter(stage: str, error: BaseException, record: Record, model: str | None = None) -> DeadLetter:
    return dead_letter(stage, error, record.raw, record.source, key=record.key, model=model, record_id=record.id)


def dead_letter_json(letter: DeadLetter, pattern: str) -> str:
    """One JSON Lines row, always encodable as UTF-8; the raw input is text when it is UTF-8, base64 otherwise."""
    try:
        raw, encoding = letter.raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        raw, encoding = base64.b64encode(letter.raw).decode("ascii"), "base64"
    fields = {
        "stage": letter.stage,
        "error": letter.error,
        "message": letter.message,
        "pattern": pattern,
        "model": letter.model,
        "key": letter.key,
        "source": letter.source,
        "raw": raw,
        "raw_encoding": encoding,
        "timestamp": datetime.fromtimestamp(letter.timestamp, UTC).isoformat(),
    }
    text = json.dumps(fields, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a key or value read from a JSON \ud800 escape) has no UTF-8 form: escape it again.
        text = json.dumps(fields)
    return text
