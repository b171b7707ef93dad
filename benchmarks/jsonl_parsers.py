"""JSON Lines parsers side by side on the heavy benchmark's records: per record (json module), or a batch at once.

The heavy JSON Lines variant of `make bench` parsed 256 floats a record in Python (6,200 rows/s against 19,000
from TFRecords). This times the parse alone, a batch of 512 lines at a time, three ways: today's per-record
`parse_jsonl`, `parse_jsonl_batch` (orjson over each line, then one NumPy conversion per feature), and pyarrow's
JSON reader over the batch's lines (with the conversion to each record's Python features a row needs).

    python -m benchmarks.jsonl_parsers [--records 8192] [--features 256] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import orjson
import pyarrow.json as pa_json

from transforms.config import FeatureTypes
from transforms.records.parsing import parse_jsonl, parse_jsonl_batch

BATCH = 512


def heavy_lines(records: int, features: int) -> list[bytes]:
    """Lines as the heavy benchmark writes them: a key and `x`, a list of float32 values."""
    rows = np.random.default_rng(7).random((records, features), dtype=np.float32)
    return [orjson.dumps({"key": f"device-{i}", "x": [float(v) for v in row]}) for i, row in enumerate(rows)]


def per_record(lines: list[bytes]) -> int:
    return sum(len(parse_jsonl(line, "key", FeatureTypes())[1]) for line in lines)


def orjson_batch(lines: list[bytes]) -> int:
    parsed = 0
    for start in range(0, len(lines), BATCH):
        parsed += len(parse_jsonl_batch(lines[start : start + BATCH], "key", FeatureTypes()))
    return parsed


def pyarrow_batch(lines: list[bytes]) -> int:
    """pyarrow's reader over each batch; a record's features then as Python values, as rows and models take them."""
    parsed = 0
    for start in range(0, len(lines), BATCH):
        table = pa_json.read_json(io.BytesIO(b"\n".join(lines[start : start + BATCH])))
        keys = table.column("key").to_pylist()
        values = table.column("x").to_pylist()
        parsed += len([(key, {"x": x}) for key, x in zip(keys, values, strict=True)])
    return parsed


def seconds_per_record(parse, lines: list[bytes], rounds: int) -> float:
    """The best of `rounds` timings (the machine is shared), per record."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        parse(lines)
        best = min(best, time.process_time() - started)
    return best / len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=8192)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    lines = heavy_lines(args.records, args.features)
    baseline = None
    print(f"{args.records} lines of {args.features} floats, batches of {BATCH}, CPU time, best of {args.rounds}")
    for name, parse in (("per record (json)", per_record), ("orjson batch", orjson_batch), ("pyarrow", pyarrow_batch)):
        seconds = seconds_per_record(parse, lines, args.rounds)
        baseline = baseline or seconds
        print(
            f"{name:20} {seconds * 1e6:8.1f} us/record  {1 / seconds:10,.0f} records/CPU-s  x{baseline / seconds:.1f}"
        )


if __name__ == "__main__":
    main()
