"""Records read from one input file, as a stream: TFRecords with their checksums verified, JSON lines, CSV records.

A truncated or corrupt file must not stop the job: reading stops at the first bad byte and the rest of
the file is reported as one UnreadableFile (a dead letter), while every record before it is kept. Compressed
files are decompressed here rather than by Beam, because Beam's reader ends a compressed stream quietly where
the file ends, even when its end-of-stream marker never came: a cut .gz would lose its tail without a word.
"""

from __future__ import annotations

import bz2
import io
import lzma
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from typing import BinaryIO, NamedTuple

import google_crc32c
import zstandard
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

_MASK_DELTA = 0xA282EAD8
_CHUNK = 1 << 16
_BOM = b"\xef\xbb\xbf"
# A CSV record longer than this whose quoted field has not closed is taken as broken (see csv_records).
MAX_CSV_RECORD_BYTES = 1 << 20

# What each decompressor raises on corrupt input.
_CORRUPT = (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, zstandard.ZstdError)
_DECOMPRESSORS: dict[str, Callable[[], object]] = {
    CompressionTypes.GZIP: lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
    CompressionTypes.DEFLATE: zlib.decompressobj,  # zlib-wrapped, as Beam writes and reads .deflate
    CompressionTypes.BZIP2: bz2.BZ2Decompressor,
    CompressionTypes.ZSTD: lambda: zstandard.ZstdDecompressor(max_window_size=1 << 31).decompressobj(),
    CompressionTypes.LZMA: lzma.LZMADecompressor,
}


class UnreadableFile(Exception):
    """The file cannot be read past byte `offset`; the message says why."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


class _CheckedDecompression(io.RawIOBase):
    """The decompressed bytes of a compressed stream, which must end with a complete end-of-stream marker.

    Concatenated streams (several gzip members, bzip2 or zstd frames) are read one after another, as
    gzip and Beam read them; a gzip file's trailing zero padding is allowed, as Python's gzip allows it.
    """

    def __init__(self, compressed: BinaryIO, compression: str):
        super().__init__()
        self._compressed = compressed
        self._compression = compression
        self._new_decompressor = _DECOMPRESSORS[compression]
        self._decompressor = None  # the current stream's, None between streams
        self._input = b""  # compressed bytes read but not yet given to a decompressor
        self._output = memoryview(b"")  # decompressed bytes not yet returned
        self._position = 0  # decompressed bytes returned so far

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._compressed.close()
        super().close()

    def readinto(self, buffer) -> int:
        while not self._output:
            data = self._input or self._compressed.read(_CHUNK)
            self._input = b""
            if not data:
                if self._decompressor is not None:
                    raise UnreadableFile(
                        f"the {self._compression} stream ends without its end-of-stream marker (the file is "
                        f"truncated) after {self._position} decompressed bytes",
                        self._position,
                    )
                return 0
            if self._decompressor is None:
                if self._compression == CompressionTypes.GZIP:
                    data = data.lstrip(b"\0")
                    if not data:
                        continue
                self._decompressor = self._new_decompressor()
            try:
                self._output = memoryview(self._decompressor.decompress(data))
            except _CORRUPT as error:
                raise UnreadableFile(f"corrupt {self._compression} data: {error}", self._position) from None
            if self._decompressor.eof:
                self._input, self._decompressor = self._decompressor.unused_data, None
        size = min(len(buffer), len(self._output))
        buffer[:size] = self._output[:size]
        self._output = self._output[size:]
        self._position += size
        return size


def open_input(path: str) -> BinaryIO:
    """A file's bytes, decompressed by its name's suffix (.gz, .bz2, .zst, .deflate, .xz): the end checked."""
    compression = CompressionTypes.detect_compression_type(path)
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    if compression not in _DECOMPRESSORS:
        return raw
    return io.BufferedReader(_CheckedDecompression(raw, compression), buffer_size=_CHUNK)


def _masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _read(stream: BinaryIO, size: int, offset: int) -> bytes:
    try:
        return stream.read(size)
    except UnreadableFile as error:
        raise UnreadableFile(str(error), offset) from None


def tfrecords(stream: BinaryIO) -> Iterator[bytes]:
    """Each record of a TFRecord stream, its length and data checksums verified."""
    offset = 0
    while True:
        header = _read(stream, 12, offset)
        if not header:
            return
        if len(header) < 12:
            raise UnreadableFile(f"truncated record header ({len(header)} of 12 bytes)", offset)
        length, length_crc = struct.unpack("<QI", header)
        if _masked_crc32c(header[:8]) != length_crc:
            raise UnreadableFile("record length checksum mismatch (not a TFRecord file, or corrupt)", offset)
        data = _read(stream, length, offset)
        footer = _read(stream, 4, offset)
        if len(data) < length or len(footer) < 4:
            raise UnreadableFile(f"truncated record: {len(data)} of {length} data bytes", offset)
        if _masked_crc32c(data) != struct.unpack("<I", footer)[0]:
            raise UnreadableFile("record data checksum mismatch (corrupt)", offset)
        offset += 16 + length
        yield data


class _Line(NamedTuple):
    text: bytes  # with its line ending
    number: int  # 1-based
    offset: int  # of its first byte


def _numbered_lines(stream: BinaryIO) -> Iterator[_Line]:
    """Each line of a text stream with its ending, number and offset; the unreadable rest is raised."""
    offset, number = 0, 0
    while True:
        try:
            line = stream.readline()
        except UnreadableFile as error:
            raise UnreadableFile(str(error), offset) from None
        except _CORRUPT as error:
            raise UnreadableFile(f"{type(error).__name__}: {error}", offset) from None
        if not line:
            return
        number += 1
        yield _Line(line, number, offset)
        offset += len(line)


def _without_ending(line: bytes) -> bytes:
    return line[:-2] if line.endswith(b"\r\n") else line.rstrip(b"\n")


def lines(stream: BinaryIO) -> Iterator[bytes]:
    """Each line of a text stream, without its line ending; a blank last line is not a record."""
    for line in _numbered_lines(stream):
        yield _without_ending(line.text)


class BrokenCsvRecord(NamedTuple):
    """A CSV record whose quoted field never closes: its raw text, where it began, and why it is broken."""

    raw: bytes
    line: int
    offset: int
    reason: str

    def message(self) -> str:
        return f"CSV record starting at line {self.line} (byte {self.offset}) {self.reason}"


def _ends_inside_quotes(line: bytes, inside: bool) -> bool:
    """Whether a CSV line ends inside a quoted field, given whether it began inside one.

    Python's csv reader decides the same way: a quote opens a field only at the field's start, a doubled
    quote inside a quoted field is a literal quote, and any other quote is a literal character.
    """
    position = 0
    if not inside:
        if not line.startswith(b'"'):
            position = line.find(b',"')
            if position < 0:
                return False
            position += 1
        inside, position = True, position + 1
    while True:
        quote = line.find(b'"', position)
        if quote < 0:
            return True
        if line.startswith(b'"', quote + 1):
            position = quote + 2  # an escaped quote
            continue
        # The field is closed; anything up to the next delimiter is an unquoted tail of it.
        position = line.find(b',"', quote + 1)
        if position < 0:
            return False
        position += 2


def csv_records(stream: BinaryIO) -> Iterator[bytes | BrokenCsvRecord]:
    """Each CSV record of a text stream as RFC 4180 reads it: quoted fields may hold line breaks.

    A record goes without its final line ending; a UTF-8 byte order mark before the first is dropped.
    A quoted field that is still open at the end of the file, or after MAX_CSV_RECORD_BYTES, makes its
    record a BrokenCsvRecord holding all the text it spans. Reading then resumes on the line after the
    one the broken record began on, so that the records after a stray quote still come out.
    """
    source = _numbered_lines(stream)
    replay: deque[_Line] = deque()  # lines to read again after a broken record
    first = True
    while True:
        line = replay.popleft() if replay else next(source, None)
        if line is None:
            return
        if first and line.text.startswith(_BOM):
            line = _Line(line.text[len(_BOM) :], line.number, line.offset + len(_BOM))
        first = False
        if not _ends_inside_quotes(line.text, False):
            yield _without_ending(line.text)
            continue
        spanned, size = [line], len(line.text)
        while True:
            more = replay.popleft() if replay else next(source, None)
            if more is None or size > MAX_CSV_RECORD_BYTES:
                reason = (
                    "has a quoted field that is never closed before the end of the file"
                    if more is None
                    else f"has a quoted field still open after {size} bytes (at most {MAX_CSV_RECORD_BYTES})"
                )
                yield BrokenCsvRecord(
                    b"".join(s.text for s in spanned).rstrip(b"\r\n"), line.number, line.offset, reason
                )
                if more is not None:
                    spanned.append(more)
                replay.extendleft(reversed(spanned[1:]))
                break
            spanned.append(more)
            size += len(more.text)
            if not _ends_inside_quotes(more.text, True):
                yield _without_ending(b"".join(s.text for s in spanned))
                break
