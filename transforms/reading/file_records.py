"""Records read from one input file, as a stream: TFRecords with their checksums verified, or lines of text.

(TFRecord framing is also written here, for the sinks: one format, one module.)

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
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

import google_crc32c
import zstandard
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

_MASK_DELTA = 0xA282EAD8
_CHUNK = 1 << 16

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


_ZLIB = type(zlib.decompressobj())


def _decodable_prefix(decompressor, data: bytes) -> bytes:
    """What a zlib stream decodes to before its first corrupt byte, fed one byte at a time from a saved state.

    Only on damage: so that the records before it are kept even when they share a chunk with it.
    """
    decoded = []
    for i in range(len(data)):
        try:
            decoded.append(decompressor.decompress(data[i : i + 1]))
        except zlib.error:
            break
    return b"".join(decoded)


class _CheckedDecompression(io.RawIOBase):
    """The decompressed bytes of a compressed stream, which must end with a complete end-of-stream marker.

    Concatenated streams (several gzip members, bzip2 or zstd frames) are read one after another, as
    gzip and Beam read them; a gzip file's trailing zero padding is allowed, as Python's gzip allows it.
    On corrupt data, gzip and deflate streams give everything that decodes before the damage; bzip2, xz and
    zstd lose what their damaged compression block and the chunk read with it would have held.
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
        self._damage: UnreadableFile | None = None  # raised once what decoded before it has been read

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._compressed.close()
        super().close()

    def readinto(self, buffer) -> int:
        while not self._output:
            if self._damage is not None:
                raise self._damage
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
            before = self._decompressor.copy() if isinstance(self._decompressor, _ZLIB) else None
            try:
                self._output = memoryview(self._decompressor.decompress(data))
            except _CORRUPT as error:
                salvaged = _decodable_prefix(before, data) if before is not None else b""
                self._output = memoryview(salvaged)
                self._damage = UnreadableFile(
                    f"corrupt {self._compression} data: {error}", self._position + len(salvaged)
                )
                continue
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


# TFRecords are read from the stream this many bytes at a time, and their frames taken apart in memory.
_TFRECORD_READ_BYTES = 1 << 20
_FRAME = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")


def tfrecords(stream: BinaryIO) -> Iterator[bytes]:
    """Each record of a TFRecord stream, its length and data checksums verified.

    The stream is read a megabyte at a time rather than three reads per record, which were most of the
    time of reading a file of small records. Damage is reported at the offset of the first record it cuts.
    """
    buffer, position, offset, ended = b"", 0, 0, False  # `offset` is the file offset of buffer[position]
    while True:
        available = len(buffer) - position
        header_complete = available >= 12
        if header_complete:
            length, length_crc = _FRAME.unpack_from(buffer, position)
            if _masked_crc32c(buffer[position : position + 8]) != length_crc:
                raise UnreadableFile("record length checksum mismatch (not a TFRecord file, or corrupt)", offset)
            end = position + 16 + length
        if not header_complete or len(buffer) < end:
            if not ended:
                more = _read(stream, max(_TFRECORD_READ_BYTES, end - len(buffer) if header_complete else 0), offset)
                ended = not more
                buffer, position = buffer[position:] + more, 0
                continue
            if available == 0:
                return
            if not header_complete:
                raise UnreadableFile(f"truncated record header ({available} of 12 bytes)", offset)
            raise UnreadableFile(f"truncated record: {min(available - 12, length)} of {length} data bytes", offset)
        data = buffer[position + 12 : end - 4]
        if _masked_crc32c(data) != _FOOTER.unpack_from(buffer, end - 4)[0]:
            raise UnreadableFile("record data checksum mismatch (corrupt)", offset)
        position, offset = end, offset + 16 + length
        yield data


def tfrecord_frames(records: Iterable[bytes]) -> bytes:
    """Records framed as a TFRecord file holds them: length, its checksum, the data, its checksum; end to end."""
    frames = []
    for data in records:
        length = struct.pack("<Q", len(data))
        frames += (length, struct.pack("<I", _masked_crc32c(length)), data, struct.pack("<I", _masked_crc32c(data)))
    return b"".join(frames)


def read_line(stream: BinaryIO, offset: int) -> bytes:
    """The next line of a text stream at `offset`, with its ending; damage is raised as UnreadableFile there."""
    try:
        return stream.readline()
    except UnreadableFile as error:
        raise UnreadableFile(str(error), offset) from None
    except _CORRUPT as error:
        raise UnreadableFile(f"{type(error).__name__}: {error}", offset) from None


def without_ending(line: bytes) -> bytes:
    return line[:-2] if line.endswith(b"\r\n") else line.rstrip(b"\n")


def lines(stream: BinaryIO, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for each line of a text stream positioned at `offset`; endings dropped, as is a last blank."""
    while line := read_line(stream, offset):
        yield offset, without_ending(line)
        offset += len(line)
