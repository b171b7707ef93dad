"""Files in streaming: one set of files per window, written when the window closes."""

from __future__ import annotations

import posixpath

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.tfrecordio import _TFRecordUtil


class _LinesSink(fileio.FileSink):
    """Encoded records (bytes), one per line."""

    def open(self, fh) -> None:
        self._fh = fh

    def write(self, record: bytes) -> None:
        self._fh.write(record)
        self._fh.write(b"\n")

    def flush(self) -> None:
        self._fh.flush()


class _TFRecordSink(fileio.FileSink):
    """Encoded records (bytes), each framed as a TFRecord with its CRC32C checksums."""

    def open(self, fh) -> None:
        self._fh = fh

    def write(self, record: bytes) -> None:
        _TFRecordUtil.write_record(self._fh, record)

    def flush(self) -> None:
        self._fh.flush()


class WriteWindowedFiles(beam.PTransform):
    """Payloads (bytes) of a windowed, unbounded PCollection to files named after `prefix` and their window:
    PREFIX-<window start>-<window end>-<pane>-<shard>-of-<shards>SUFFIX, each complete once its window closes.
    """

    def __init__(self, prefix: str, suffix: str):
        super().__init__()
        self._folder, self._name = posixpath.split(prefix.rstrip("/"))
        self._suffix = suffix

    def expand(self, payloads: beam.PCollection) -> None:
        sink = _TFRecordSink if self._suffix == ".tfrecord" else _LinesSink
        payloads | "WriteToFiles" >> fileio.WriteToFiles(
            path=self._folder or ".",
            file_naming=fileio.default_file_naming(self._name, self._suffix),
            sink=lambda _destination: sink(),
            shards=1,
        )
