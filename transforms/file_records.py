"""Records read from one input file, as a stream: lines of text, or TFRecords with their checksums verified.

A truncated or corrupt file must not stop the job: reading stops at the first bad byte and the rest of
the file is reported as one UnreadableFile (a dead letter), while every record before it is kept.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import google_crc32c

_MASK_DELTA = 0xA282EAD8


class UnreadableFile(Exception):
    """The file cannot be read past byte `offset`; the message says why."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


def _masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def tfrecords(stream: BinaryIO) -> Iterator[bytes]:
    """Each record of a TFRecord stream, its length and data checksums verified."""
    offset = 0
    while True:
        header = stream.read(12)
        if not header:
            return
        if len(header) < 12:
            raise UnreadableFile(f"truncated record header ({len(header)} of 12 bytes)", offset)
        length, length_crc = struct.unpack("<QI", header)
        if _masked_crc32c(header[:8]) != length_crc:
            raise UnreadableFile("record length checksum mismatch (not a TFRecord file, or corrupt)", offset)
        data = stream.read(length)
        footer = stream.read(4)
        if len(data) < length or len(footer) < 4:
            raise UnreadableFile(f"truncated record: {len(data)} of {length} data bytes", offset)
        if _masked_crc32c(data) != struct.unpack("<I", footer)[0]:
            raise UnreadableFile("record data checksum mismatch (corrupt)", offset)
        offset += 16 + length
        yield data


def lines(stream: BinaryIO) -> Iterator[bytes]:
    """Each line of a text stream, without its line ending; a blank last line is not a record."""
    offset = 0
    while True:
        try:
            line = stream.readline()
        except (OSError, EOFError, ValueError, zlib.error) as error:  # what decompressors raise on corrupt data
            raise UnreadableFile(f"{type(error).__name__}: {error}", offset) from None
        if not line:
            return
        offset += len(line)
        yield line.rstrip(b"\r\n")
