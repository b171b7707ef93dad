"""Reading files as streams: TFRecord framing and checksums verified, corrupt or cut data reported, not raised."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib

import pytest
import tensorflow as tf
import zstandard

from transforms.reading.file_records import UnreadableFile, lines, open_input, tfrecord_frames, tfrecords


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


def test_frames_a_batch_byte_for_byte_as_tensorflow_writes_it(tmp_path):
    records = [b"first", b"", b"x" * 10_000, bytes(range(256))]
    assert tfrecord_frames(records) == _tfrecord_bytes(records, tmp_path)
    assert tfrecord_frames([]) == b""


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
    assert list(lines(io.BytesIO(b"a\r\nb\n\nc"))) == [(0, b"a"), (3, b"b"), (5, b""), (6, b"c")]
    cut = gzip.compress(b"line one\nline two\n" * 1000)[:-40]
    with pytest.raises(UnreadableFile):
        list(lines(gzip.GzipFile(fileobj=io.BytesIO(cut))))


LINES = [b'{"key": "k%d", "x": %d.0}' % (i, i) for i in range(3000)]
FIRST_PART = 1000  # the lines before the flush point


def _deflate(wbits: int):
    def compress(parts: list[bytes], flush: bool) -> bytes:
        compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
        out = [compressor.compress(parts[0])]
        if flush:
            out.append(compressor.flush(zlib.Z_SYNC_FLUSH))
        out += [compressor.compress(parts[1]), compressor.flush()]
        return b"".join(out)

    return compress


def _zstd(parts: list[bytes], flush: bool) -> bytes:
    compressor = zstandard.ZstdCompressor(write_checksum=True).compressobj()
    out = [compressor.compress(parts[0])]
    if flush:
        out.append(compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
    out += [compressor.compress(parts[1]), compressor.flush()]
    return b"".join(out)


def _whole(module):
    return lambda parts, flush: module.compress(b"".join(parts))  # bzip2 and xz streams have no flush point


COMPRESSIONS = {
    "gz": _deflate(16 + zlib.MAX_WBITS),
    "deflate": _deflate(zlib.MAX_WBITS),
    "zst": _zstd,
    "bz2": _whole(bz2),
    "xz": _whole(lzma),
}


def _compressed_file(tmp_path, suffix: str, flush: bool = False) -> tuple[str, bytes, int]:
    """A compressed JSON Lines file, its bytes, and where its flush point is (0 without one)."""
    parts = [
        b"".join(line + b"\n" for line in LINES[:FIRST_PART]),
        b"".join(line + b"\n" for line in LINES[FIRST_PART:]),
    ]
    data = COMPRESSIONS[suffix](parts, flush)
    flushed = len(COMPRESSIONS[suffix]([parts[0], b""], flush)) if flush else 0
    path = tmp_path / f"records.jsonl.{suffix}"
    path.write_bytes(data)
    return str(path), data, flushed


def _read_until_damage(path: str) -> tuple[list[bytes], UnreadableFile | None]:
    read = []
    try:
        with open_input(path) as stream:
            read.extend(line for _, line in lines(stream))
    except UnreadableFile as error:
        return read, error
    return read, None


@pytest.mark.parametrize("suffix", sorted(COMPRESSIONS))
def test_whole_compressed_files_read_completely_even_concatenated(tmp_path, suffix):
    path, data, _ = _compressed_file(tmp_path, suffix)
    assert _read_until_damage(path) == (LINES, None)
    with open(path, "ab") as f:
        f.write(data)  # a second gzip member, bzip2 stream, zstd frame, ...
    if suffix != "deflate":  # a zlib stream has no members: data after its end is an error
        assert _read_until_damage(path) == (LINES + LINES, None)


FLUSHABLE = ("gz", "deflate", "zst")  # bzip2 and xz streams have no flush point to cut at
CUTS = [(suffix, cut) for suffix in sorted(COMPRESSIONS) for cut in ("mid-block", "trailer")]
CUTS += [(suffix, "flush point") for suffix in FLUSHABLE]


@pytest.mark.parametrize(("suffix", "cut"), CUTS)
def test_a_cut_compressed_file_is_unreadable_after_its_good_records(tmp_path, suffix, cut):
    has_flush = suffix in FLUSHABLE
    path, data, flushed = _compressed_file(tmp_path, suffix, flush=has_flush)
    end = {"mid-block": len(data) // 2, "flush point": flushed, "trailer": len(data) - 3}[cut]
    with open(path, "wb") as f:
        f.write(data[:end])
    read, error = _read_until_damage(path)
    assert error is not None, f"a .{suffix} file cut at its {cut} must not read as complete"
    assert read == LINES[: len(read)], "every record before the damage is kept, in order"
    assert error.offset == sum(len(line) + 1 for line in read), "the offset is where the unreadable rest begins"
    if cut == "flush point":
        assert len(read) == FIRST_PART, "everything before the flush point is readable"
        assert "end-of-stream marker" in str(error)
    if cut == "trailer":
        assert len(read) >= len(LINES) - 1


def _decodes_before_damage(data: bytes, wbits: int) -> bytes:
    """What zlib itself decodes of `data` before its first bad byte, one byte at a time."""
    decompressor, decoded = zlib.decompressobj(wbits), []
    for i in range(len(data)):
        try:
            decoded.append(decompressor.decompress(data[i : i + 1]))
        except zlib.error:
            break
    return b"".join(decoded)


@pytest.mark.parametrize(("suffix", "wbits"), [("gz", 16 + zlib.MAX_WBITS), ("deflate", zlib.MAX_WBITS)])
def test_corrupt_bytes_mid_file_keep_every_line_that_decodes_before_them(tmp_path, suffix, wbits):
    path, data, _ = _compressed_file(tmp_path, suffix)
    damaged = bytearray(data)
    damaged[len(data) // 2 : len(data) // 2 + 8] = b"\xff" * 8
    with open(path, "wb") as f:
        f.write(damaged)
    read, error = _read_until_damage(path)
    assert error is not None and "corrupt" in str(error)
    decodable = _decodes_before_damage(bytes(damaged), wbits)
    assert read == decodable.split(b"\n")[: decodable.count(b"\n")], "every line zlib decodes, none after"
    before = zlib.decompressobj(wbits).decompress(data[: len(data) // 2]).count(b"\n")
    assert before > len(LINES) // 3 and read[:before] == LINES[:before], "the lines before the damage are intact"
