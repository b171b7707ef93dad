"""CSV records in a byte stream, by RFC 4180, and where they start in any chunk of a file.

Quoted fields may hold line breaks, so a line break is not a record boundary, and no rule that looks only
near an offset can find one: text ending in `\n"` (a note ending with a line break) reads as well from
either side of its quotes, for as long as the file goes on. Where a record starts at a given offset depends
on the whole file before it. So a chunk is summarised without knowing how it is entered: the reader's path
from every line start where a record may enter it is followed (paths that meet are followed once) to where
it leaves the chunk. The summaries, chained from byte 0, give each chunk's exact first record.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import BinaryIO, NamedTuple

from transforms.reading.file_records import read_line, without_ending

_BOM = b"\xef\xbb\xbf"
# A CSV record longer than this whose quoted field has not closed is taken as broken (see csv_records).
MAX_CSV_RECORD_BYTES = 1 << 20


class BrokenCsvRecord(NamedTuple):
    """A CSV record whose quoted field never closes: its raw text, where it began, and why it is broken."""

    raw: bytes
    offset: int
    reason: str

    def message(self) -> str:
        return f"CSV record starting at byte {self.offset} {self.reason}"


def ends_inside_quotes(line: bytes, inside: bool) -> bool:
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
        position += 1
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


class _Lines:
    """The lines of a stream from a line start on, read when first asked for and forgotten when passed.

    `offsets[i]` and `texts[i]` (with its line ending) are line i; a byte order mark at byte 0 is dropped.
    """

    def __init__(self, stream: BinaryIO, offset: int):
        self._stream = stream
        self._next_offset = offset
        self.first = 0  # the index of the oldest line kept
        self.offsets: list[int] = []
        self.texts: list[bytes] = []

    def get(self, index: int) -> bytes | None:
        while index - self.first >= len(self.texts):
            text = read_line(self._stream, self._next_offset)
            if not text:
                return None
            offset = self._next_offset
            self._next_offset += len(text)
            if offset == 0 and text.startswith(_BOM):
                text = text[len(_BOM) :]  # not part of the first record, which still starts the file
            self.offsets.append(offset)
            self.texts.append(text)
        return self.texts[index - self.first]

    @property
    def end(self) -> int:
        """The offset after the last line read."""
        return self._next_offset

    def offset(self, index: int) -> int:
        return self.offsets[index - self.first]

    def forget_before(self, index: int) -> None:
        drop = index - self.first
        if drop > 0:
            del self.offsets[:drop], self.texts[:drop]
            self.first = index

    def text(self, start: int, stop: int) -> bytes:
        return b"".join(self.texts[start - self.first : stop - self.first])


def _record_end(lines: _Lines, start: int) -> tuple[int, str | None]:
    """The index of the line after the record starting at line `start`, or why that record is broken.

    A broken record's reader resumes at the line after `start`, so that the records after a stray quote
    still come out; a record that ends normally is followed by the line after its end.
    """
    text = lines.get(start)
    if not ends_inside_quotes(text, False):
        return start + 1, None
    size, end = len(text), start + 1
    while True:
        more = lines.get(end)
        if more is None:
            return end, "has a quoted field that is never closed before the end of the file"
        if size > MAX_CSV_RECORD_BYTES:
            return end, f"has a quoted field still open after {size} bytes (at most {MAX_CSV_RECORD_BYTES})"
        size += len(more)
        end += 1
        if not ends_inside_quotes(more, True):
            return end, None


def csv_records(stream: BinaryIO, offset: int = 0) -> Iterator[tuple[int, bytes | BrokenCsvRecord]]:
    """(offset, record) for each CSV record of a stream positioned at `offset`, which starts a record.

    A record goes without its final line ending. A quoted field that is still open at the end of the file,
    or after MAX_CSV_RECORD_BYTES, makes its record a BrokenCsvRecord holding all the text it spans; reading
    then resumes on the line after the one it began on.
    """
    lines = _Lines(stream, offset)
    start = 0
    while lines.get(start) is not None:
        end, broken = _record_end(lines, start)
        text = lines.text(start, end)
        if broken:
            yield lines.offset(start), BrokenCsvRecord(text.rstrip(b"\r\n"), lines.offset(start), broken)
            start += 1
        else:
            yield lines.offset(start), without_ending(text)
            start = end
        lines.forget_before(start)


def _line_start_at_or_after(stream: BinaryIO, position: int) -> int:
    if position == 0:
        return 0
    stream.seek(position - 1)
    return position - 1 + len(read_line(stream, position - 1))


def _next_start(lines: _Lines, start: int) -> int:
    """The line index where a reader goes after the record starting at line `start`."""
    end, broken = _record_end(lines, start)
    return start + 1 if broken else end


def _advance(lines: _Lines, starts: Iterable[int], boundary: int) -> set[int]:
    """Where the paths from the line indexes `starts` first reach a record start at or past `boundary`.

    Paths are followed together, the furthest behind first, so that paths that meet are followed once and
    lines behind every path are forgotten. The result holds offsets; the end of the file is its size.
    """
    heap = sorted(set(starts))
    waiting, reached = set(heap), set()
    while heap:
        index = heapq.heappop(heap)
        waiting.discard(index)
        if lines.get(index) is None or lines.offset(index) >= boundary:
            reached.add(lines.offset(index) if lines.get(index) is not None else lines.end)
            continue
        following = _next_start(lines, index)
        if following not in waiting:
            waiting.add(following)
            heapq.heappush(heap, following)
        lines.forget_before(heap[0])  # never empty here: `following` is waiting
    return reached


class ChunkSummary(NamedTuple):
    """Where a reader entering a chunk of a CSV file leaves it, whatever record start it entered at.

    A reader's path through the chunk is known by its first record start at or past `checkpoint`; `exits`
    maps each such start to the path's first record start at or past the chunk's end.
    """

    checkpoint: int
    exits: dict[int, int]


def chunk_summary(stream: BinaryIO, start: int, stop: int) -> ChunkSummary:
    """The exits of the chunk [start, stop) of a seekable CSV file, for every record start a reader may enter at.

    A reader from byte 0 enters at its first record start at or after `start`. The record before it began
    before `start`, so that record start is a line start under MAX_CSV_RECORD_BYTES past `start`, or the first
    line start beyond. The paths from all those line starts meet into a few by `checkpoint`, each followed
    to the chunk's end once: the chunk is read about once, however many entries it has.
    """
    begin = _line_start_at_or_after(stream, start)
    stream.seek(begin)
    lines = _Lines(stream, begin)
    if start == 0:
        entries, checkpoint = [0], 0  # a reader from byte 0 enters the first chunk there
    else:
        entries = []
        while lines.get(len(entries)) is not None and lines.offset(len(entries)) < start + MAX_CSV_RECORD_BYTES:
            entries.append(len(entries))
        entries.append(len(entries))  # the first line start past the limit (or the end of the file)
        checkpoint = min(lines.offset(entries[-1]) if lines.get(entries[-1]) is not None else lines.end, stop)
    checkpoints = _advance(lines, entries, checkpoint)
    exits = {}
    for offset in checkpoints:
        stream.seek(offset)
        (exits[offset],) = _advance(_Lines(stream, offset), [0], stop)
    return ChunkSummary(checkpoint, exits)


def first_start_at_or_after(stream: BinaryIO, anchor: int, position: int) -> int:
    """The first record start at or after `position` on the path from `anchor`, a record start (the file's size
    when there is none)."""
    stream.seek(anchor)
    (found,) = _advance(_Lines(stream, anchor), [0], position)
    return found


def chunk_exit(stream: BinaryIO, entry: int, summary: ChunkSummary) -> int:
    """Where a reader that entered a chunk at the record start `entry` leaves it: the next chunk's entry."""
    return summary.exits[first_start_at_or_after(stream, entry, summary.checkpoint)]
