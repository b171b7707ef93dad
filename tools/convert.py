"""Convert CSV or JSON Lines records to a TFRecord file of tf.train.Examples (the post's ExampleProcessor)."""

from __future__ import annotations

import argparse
import csv
import sys

import tensorflow as tf

from transforms.config import FeatureTypes
from transforms.reading.sources import format_of
from transforms.records.examples import encode_example
from transforms.records.parsing import RecordError, parse_csv, parse_jsonl


def convert(source: str, destination: str, key_field: str = "key", types: FeatureTypes | None = None) -> int:
    """Write one Example per input record, the key kept as a bytes feature; returns the number written.

    Raises RecordError naming the line for the first record that cannot be converted.
    """
    types = types or FeatureTypes()
    kind = format_of(source)
    if kind not in ("csv", "jsonl"):
        raise ValueError(f"{source}: expected a .csv or .jsonl file")
    written = 0
    with open(source, "rb") as f, tf.io.TFRecordWriter(destination) as writer:
        lines = iter(f)
        header: tuple[str, ...] = ()
        if kind == "csv":
            header = tuple(next(csv.reader([next(lines, b"").decode("utf-8-sig").rstrip("\r\n")]), ()))
        for number, line in enumerate(lines, start=2 if kind == "csv" else 1):
            raw = line.rstrip(b"\r\n")
            try:
                if kind == "csv":
                    key, features = parse_csv(raw, header, key_field, types)
                else:
                    key, features = parse_jsonl(raw, key_field, types)
            except RecordError as error:
                raise RecordError(f"{source}:{number}: {error}") from None
            if key is not None:
                features = {key_field: key, **features}
            writer.write(encode_example(features))
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", help="a .csv (with header) or .jsonl file")
    parser.add_argument("destination", help="the .tfrecord file to write")
    parser.add_argument("--key_field", default="key")
    parser.add_argument("--default_feature_type", default="float", choices=("float", "int", "bytes"))
    parser.add_argument("--feature_types", default="", help="name:type,... for features of another type")
    args = parser.parse_args()
    try:
        count = convert(
            args.source,
            args.destination,
            args.key_field,
            FeatureTypes.parse(args.default_feature_type, args.feature_types),
        )
    except (RecordError, ValueError) as error:
        sys.exit(f"convert: {error}")
    print(f"wrote {count} examples to {args.destination}")


if __name__ == "__main__":
    main()
