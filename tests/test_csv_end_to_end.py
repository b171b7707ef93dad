"""CSV inputs end to end through main.py: quoted line breaks kept whole, broken records costing only themselves."""

from __future__ import annotations

import gzip
import random
import zlib

import pytest
from expect import assert_close

pytestmark = pytest.mark.slow

ISSUE_EXAMPLE = 'key,x,note\nk1,1,"hello"\nk2,2,"multi\nline"\nk3,3,plain\n'


def _keyed(run_main, demo_models, path, *extra):
    run = run_main(
        "--pattern=keyed",
        f"--model_uris={demo_models['multiply_by_5']}",
        f"--input={path}",
        "--feature_types=note:bytes",
        *extra,
    )
    assert run.returncode == 0, run.stderr
    return run


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_a_quoted_line_break_stays_in_its_field(run_main, demo_models, tmp_path, ending):
    path = tmp_path / "notes.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ISSUE_EXAMPLE.replace("\n", ending).encode())
    run = _keyed(run_main, demo_models, path)
    rows = {row["key"]: row for row in run.rows()}
    assert {key: row["input"] for key, row in rows.items()} == {
        "k1": {"x": 1.0, "note": "hello"},
        "k2": {"x": 2.0, "note": f"multi{ending}line"},
        "k3": {"x": 3.0, "note": "plain"},
    }
    assert_close(rows["k2"]["predictions"][0]["outputs"]["y"][0], 10.0)
    assert run.dead_letters() == []
    assert "records read               3" in run.stdout, "records are counted, not lines"
    assert "reconciled               yes" in run.stdout


def test_an_unterminated_quote_is_one_dead_letter_and_the_records_after_it_come_out(run_main, demo_models, tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text('key,x,note\nk1,1,"quoted, with a comma"\nk2,2,"never closed\nk3,3,plain\nk4,4,last\n')
    run = _keyed(run_main, demo_models, path)
    assert {row["key"]: row["input"]["note"] for row in run.rows()} == {
        "k1": "quoted, with a comma",
        "k3": "plain",
        "k4": "last",
    }
    [letter] = run.dead_letters()
    assert letter["stage"] == "parse"
    assert letter["raw"] == 'k2,2,"never closed\nk3,3,plain\nk4,4,last', "its whole raw text"
    assert "starting at byte 39 " in letter["message"] and "never closed" in letter["message"]
    assert "records read               4" in run.stdout
    assert "reconciled               yes" in run.stdout


def _csv(note: str, numbers: range, header: bool = True) -> bytes:
    return (("key,x,note\n" if header else "") + "".join(f"k{i},{i},{note}{i}\n" for i in numbers)).encode()


def test_a_cut_gzip_at_a_flush_point_is_a_read_dead_letter(run_main, demo_models, tmp_path):
    """docs/failure-handling.md's promise: a truncated compressed file keeps what it had and says where it ended."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    flushed = compressor.compress(_csv("n", range(1000))) + compressor.flush(zlib.Z_SYNC_FLUSH)
    rest = compressor.compress(_csv("n", range(1000, 2000), header=False)) + compressor.flush()
    (tmp_path / "cut.csv.gz").write_bytes(flushed + rest[: len(rest) // 3])
    (tmp_path / "whole.csv.gz").write_bytes(gzip.compress(_csv("w", range(1000))))
    run = _keyed(run_main, demo_models, tmp_path / "*.csv.gz")
    notes = [row["input"]["note"] for row in run.rows()]
    assert sorted(n for n in notes if n.startswith("w")) == sorted(f"w{i}" for i in range(1000))
    cut = {int(n[1:]) for n in notes if n.startswith("n")}
    assert set(range(1000)) <= cut and cut == set(range(len(cut))), "every record before the cut is kept"
    [letter] = run.dead_letters()
    assert letter["stage"] == "read" and letter["source"].endswith("cut.csv.gz")
    assert "end-of-stream marker" in letter["message"] and "cannot be read past byte" in letter["message"]
    assert "reconciled               yes" in run.stdout


def test_a_file_large_enough_to_split_keeps_every_quoted_line_break(run_main, demo_models, tmp_path):
    """Quoted line breaks straddle every MiB boundary, where a splitting reader would cut; two workers read."""
    rng = random.Random(11)
    path, size, expected = tmp_path / "large.csv", 0, {}
    with open(path, "w", newline="") as f:
        f.write("key,x,note\n")
        i = 0
        while size < 6 << 20:
            key, note = f"k{i}", "plain"
            if (size >> 20) != ((size + 200) >> 20) or rng.random() < 0.05:  # near a MiB boundary, and anywhere
                note = "line\n" * rng.randint(1, 40) + 'a "quoted" word, and a comma\r\nend'
            quoted = '"' + note.replace('"', '""') + '"'
            line = f"{key},{i % 100},{quoted}\n"
            f.write(line)
            size += len(line.encode())
            expected[key] = note
            i += 1
    run = _keyed(run_main, demo_models, path, "--direct_num_workers=2", "--direct_running_mode=multi_processing")
    assert run.dead_letters() == []
    got = {row["key"]: row["input"]["note"] for row in run.rows()}
    assert got == expected
    assert f"records read      {len(expected):>10}" in run.stdout


def test_a_file_whose_header_differs_is_one_read_dead_letter_and_the_others_are_read(run_main, demo_models, tmp_path):
    """The launch reads one header, whatever the number of files; the job compares every file's with it."""
    (tmp_path / "a.csv").write_text("key,x,note\nk1,1,a\nk2,2,b\n")
    (tmp_path / "b.csv").write_text("key,x,comment\nk3,3,c\n")
    (tmp_path / "c.csv").write_text("key,x,note\nk4,4,d\n")
    run = _keyed(run_main, demo_models, tmp_path / "*.csv")
    keys = sorted(row["key"] for row in run.rows())
    [letter] = run.dead_letters()
    assert letter["stage"] == "read" and letter["source"].endswith(("a.csv", "b.csv", "c.csv"))
    odd = letter["source"].rsplit("/", 1)[1]
    assert odd in letter["message"] and "every file of --input must share one header" in letter["message"]
    if odd == "b.csv":  # the launch took a.csv's or c.csv's header
        assert "has header key,x,comment but" in letter["message"] and keys == ["k1", "k2", "k4"]
    else:  # the launch took b.csv's header: each of the others differs
        pytest.fail(f"only b.csv differs from the other two, yet {odd} was refused")
    assert "records read               4" in run.stdout and "reconciled               yes" in run.stdout


def test_input_format_reads_every_file_as_csv_and_a_json_file_then_has_no_matching_header(
    run_main, demo_models, tmp_path
):
    (tmp_path / "part-0.csv").write_text("key,x,note\nk1,1,a\n")
    (tmp_path / "part-1.jsonl").write_text('{"key": "k2", "x": 2, "note": "b"}\n')
    run = _keyed(run_main, demo_models, tmp_path / "part-*", "--input_format=csv")
    assert [row["key"] for row in run.rows()] == ["k1"]
    [letter] = run.dead_letters()
    assert letter["stage"] == "read" and letter["source"].endswith("part-1.jsonl")
