"""CSV records as RFC 4180 reads them: quoted line breaks, quotes and delimiters, and broken records resynchronised."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.reading import csv_records as csv_module
from transforms.reading.csv_records import BrokenCsvRecord, csv_records
from transforms.records.parsing import RecordError, csv_fields


def records(data: bytes) -> list:
    return [record for _, record in csv_records(io.BytesIO(data))]


def test_the_issue_example_keeps_its_multi_line_field_whole():
    data = b'key,x,note\nk1,1,"hello"\nk2,2,"multi\nline"\nk3,3,plain\n'
    assert records(data) == [b"key,x,note", b'k1,1,"hello"', b'k2,2,"multi\nline"', b"k3,3,plain"]
    assert csv_fields(records(data)[2]) == ["k2", "2", "multi\nline"]


def test_crlf_files_keep_crlf_inside_quoted_fields_and_a_bom_is_dropped():
    data = b'\xef\xbb\xbf"key",x,note\r\nk1,1,"a\r\nb"\r\nk2,2,"c,""d"""\r\n'
    got = records(data)
    assert got == [b'"key",x,note', b'k1,1,"a\r\nb"', b'k2,2,"c,""d"""']
    assert [csv_fields(r) for r in got] == [["key", "x", "note"], ["k1", "1", "a\r\nb"], ["k2", "2", 'c,"d"']]


def python_reads_on(line: bytes) -> bool:
    """Whether Python's csv reader takes the next line into the record this line starts."""
    pulled = []

    def source():
        for text in (line.decode(), "next\n"):
            pulled.append(text)
            yield text

    next(csv.reader(source()))
    return len(pulled) == 2


@pytest.mark.parametrize(
    ("line", "inside"),
    [
        (b"a,b,c\n", False),
        (b'a,"b\n', True),
        (b'"a\n', True),
        (b'a,"b""\n', True),  # an escaped quote, the field still open
        (b'a,"b""",c\n', False),
        (b'a"b,c\n', False),  # a quote inside an unquoted field is a character
        (b'a,"b"x,"c\n', True),  # text after a closed quote, then a new quoted field
        (b'a,"",""\n', False),
    ],
)
def test_a_line_ends_inside_quotes_as_pythons_csv_reader_decides(line, inside):
    assert csv_module.ends_inside_quotes(line, False) is inside
    assert python_reads_on(line) is inside


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab,"')), max_size=16))
def test_any_line_ends_inside_quotes_exactly_when_pythons_csv_reader_reads_on(text):
    line = text.encode() + b"\n"
    assert csv_module.ends_inside_quotes(line, False) is python_reads_on(line)


def test_an_unterminated_quote_at_the_end_costs_only_its_record():
    data = b'key,x\nk1,1\nk2,"2\nk3,3\nk4,4\n'
    got = records(data)
    assert got[:2] == [b"key,x", b"k1,1"]
    broken = got[2]
    assert isinstance(broken, BrokenCsvRecord)
    assert broken.raw == b'k2,"2\nk3,3\nk4,4', "a broken record holds all the text it spans"
    assert broken.offset == len(b"key,x\nk1,1\n")
    assert "starting at byte 11 " in broken.message() and "never closed" in broken.message()
    assert got[3:] == [b"k3,3", b"k4,4"], "reading resumes on the line after the broken record began"


def test_a_quote_open_past_the_size_limit_is_broken_and_reading_resumes(monkeypatch):
    monkeypatch.setattr(csv_module, "MAX_CSV_RECORD_BYTES", 40)
    filler = b"".join(b"k%d,%d\n" % (i, i) for i in range(10, 30))
    data = b'key,x\nk1,"1\n' + filler + b'k9,"9\n"\n'
    got = records(data)
    broken = [r for r in got if isinstance(r, BrokenCsvRecord)]
    assert len(broken) == 1 and broken[0].offset == len(b"key,x\n") and "still open after" in broken[0].reason
    assert len(broken[0].raw) <= 40 + len(b"k10,10\n") * 2
    good = [r for r in got if not isinstance(r, BrokenCsvRecord)]
    assert good == [b"key,x", *filler.splitlines(), b'k9,"9\n"']


def test_a_lone_cr_outside_quotes_or_a_stray_quote_is_a_record_error():
    with pytest.raises(RecordError, match="not valid CSV"):
        csv_fields(b"k1,1\rk2,2")
    with pytest.raises(RecordError, match="not valid CSV"):
        csv_fields(b'k1,"1"x')


FIELD = st.text(alphabet=st.sampled_from(list('ab ,"\n\r\t\u00e9\u2028x1')), max_size=12)


def rfc4180(rows: list[list[str]], quote_all: bool, ending: str) -> bytes:
    """RFC 4180's own rule: a field holding a delimiter, quote, CR or LF is quoted, its quotes doubled."""

    def field(value: str) -> str:
        if quote_all or any(c in value for c in ',"\r\n'):
            return '"' + value.replace('"', '""') + '"'
        return value

    return "".join(",".join(map(field, row)) + ending for row in rows).encode()


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.lists(FIELD, min_size=2, max_size=4), min_size=1, max_size=8),
    quote_all=st.booleans(),
    ending=st.sampled_from(["\n", "\r\n"]),
)
def test_every_rfc4180_file_reads_back_field_for_field(rows, quote_all, ending):
    width = len(rows[0])
    rows = [(row * width)[:width] for row in rows]
    got = records(rfc4180(rows, quote_all, ending))
    assert [csv_fields(r) for r in got] == rows


def starts_from_byte_zero(data: bytes) -> list[int]:
    return [offset for offset, _ in csv_records(io.BytesIO(data))]


def first_at_or_after(starts: list[int], position: int, size: int) -> int:
    return next((s for s in starts if s >= position), size)


def chunk_entries(raw: bytes, chunk: int) -> list[int]:
    """Each chunk's first record start, chained from byte 0 through the chunks' summaries."""
    stream = io.BytesIO(raw)
    entries, entry = [], 0
    for start in range(0, len(raw), chunk):
        entries.append(entry)
        entry = csv_module.chunk_exit(stream, entry, csv_module.chunk_summary(stream, start, start + chunk))
    return [*entries, entry]


SPLIT_TEXT = st.text(alphabet=st.sampled_from(list('ab,"\n')), max_size=300)


@settings(max_examples=400, deadline=None)
@given(text=SPLIT_TEXT, data=st.data())
def test_chained_chunk_summaries_find_the_records_a_reader_from_byte_zero_finds(text, data):
    """Any chunk size, quotes anywhere (stray and unterminated ones too), a record limit smaller than a chunk."""
    raw = text.encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(csv_module, "MAX_CSV_RECORD_BYTES", data.draw(st.sampled_from([4, 16, 1 << 20])))
        starts = starts_from_byte_zero(raw)
        chunk = data.draw(st.integers(1, 64))
        expected = [first_at_or_after(starts, position, len(raw)) for position in range(0, len(raw), chunk)]
        assert chunk_entries(raw, chunk) == [*expected, len(raw)]
        position = data.draw(st.integers(0, len(raw)))
        found = csv_module.first_start_at_or_after(io.BytesIO(raw), 0, position)
        assert found == first_at_or_after(starts, position, len(raw))


def test_notes_ending_in_a_line_break_read_alike_from_both_sides_of_their_quotes_yet_chunks_start_right(monkeypatch):
    """`...\n"` at a line start opens a quote to a reader that entered inside the field: the two readings never
    meet until the file ends, so only the chain from byte 0 can tell which is right."""
    monkeypatch.setattr(csv_module, "MAX_CSV_RECORD_BYTES", 64 << 10)
    note = b'"' + b"line\n" * 10_000 + b'"'  # 50 kB of quoted line breaks, the closing quote alone on its line
    raw = b"key,x,note\n" + b"".join(b"k%d,%d,%s\n" % (i, i, note if i % 3 == 0 else b"plain") for i in range(30))
    starts = starts_from_byte_zero(raw)
    chunk = 31_337
    expected = [first_at_or_after(starts, position, len(raw)) for position in range(0, len(raw), chunk)]
    assert chunk_entries(raw, chunk) == [*expected, len(raw)]
