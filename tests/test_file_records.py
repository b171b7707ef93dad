"""Reading files as streams: TFRecord framing and checksums verified, corrupt or cut data reported, not raised."""

from __future__ import annotations

import gzip
import io

import pytest
import tensorflow as tf

from transforms.file_records import UnreadableFile, lines, tfrecords


def _tfrecord_bytes(records: list[bytes], tmp_path) -> bytes:
    path = str(tmp_path / "r.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    with open(path, "rb") as f:
        return f.read()


def test_reads_what_tensorflow_writes(tmp_path):
    records = [b"first", b"", b"x" * 10_000]
    assert list(tfrecords(io.BytesIO(_tfrecord_bytes(records, tmp_path)))) == records


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:-3], "truncated record"),
        (lambda data: data[:-30], "truncated record"),
        (lambda data: data[:25] + bytes([data[25] ^ 0xFF]) + data[26:], "data checksum mismatch"),
        (lambda data: b"not a tfrecord file at all", "length checksum mismatch"),
    ],
)
def test_damage_is_reported_with_the_offset_after_the_good_records(tmp_path, damage, message):
    data = damage(_tfrecord_bytes([b"a" * 10, b"b" * 10, b"c" * 10], tmp_path))
    read = []
    with pytest.raises(UnreadableFile, match=message) as caught:
        read.extend(tfrecords(io.BytesIO(data)))
    assert caught.value.offset == 26 * len(read)
    assert read == [b"a" * 10, b"b" * 10][: len(read)]


def test_lines_strip_endings_and_report_corrupt_compression():
    assert list(lines(io.BytesIO(b"a\r\nb\n\nc"))) == [b"a", b"b", b"", b"c"]
    cut = gzip.compress(b"line one\nline two\n" * 1000)[:-40]
    with pytest.raises(UnreadableFile):
        list(lines(gzip.GzipFile(fileobj=io.BytesIO(cut))))
