"""Local runs say where they are: progress lines on stderr with rising counts and an ETA, and none when off."""

from __future__ import annotations

import json
import re
import socket
import threading

import pytest

from transforms.progress import ProgressBoard, ProgressCounts, Snapshot, progress_line, wait_until

pytestmark = pytest.mark.slow

LINE = re.compile(
    r"progress: (\d+) records read, (\d+) rows written, (\d+) dead letters, ([\d,]+) records/s"
    r"(, (\d+)% of [\d.,]+ MiB read(, about [\d,]+ s to go)?)?"
)


@pytest.fixture(scope="module")
def long_input(tmp_path_factory):
    path = tmp_path_factory.mktemp("progress") / "many.jsonl"
    with open(path, "w") as f:
        for i in range(150_000):
            f.write(json.dumps({"key": f"k{i}", "x": float(i % 1000)}) + "\n")
        f.write('{"key": "bad", "x": "not a number"}\n')
    return path


def _progress(stderr: str) -> list[tuple[int, int, int, str, int | None, bool]]:
    found = []
    for line in stderr.splitlines():
        match = LINE.fullmatch(line)
        if match:
            read, rows, dead = (int(match.group(i)) for i in (1, 2, 3))
            share = int(match.group(6)) if match.group(6) else None
            found.append((read, rows, dead, match.group(4), share, match.group(7) is not None))
    return found


@pytest.mark.parametrize("workers", [[], ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]])
def test_a_long_batch_run_shows_rising_counts_and_an_eta_on_stderr(run_main, demo_models, long_input, workers):
    run = run_main(
        "--pattern=keyed",
        f"--model_uris={demo_models['multiply_by_5']}",
        f"--input={long_input}",
        *workers,
        env={"TFX_INFERENCE_PROGRESS_SECONDS": "0.3"},
    )
    assert run.returncode == 0, run.stderr
    lines = _progress(run.stderr)
    assert len(lines) >= 2, run.stderr
    reads = [line[0] for line in lines]
    assert reads == sorted(reads) and reads[-1] > reads[0], f"counts rise while the run goes: {reads}"
    assert all(rows + dead <= read for read, rows, dead, *_ in lines)
    assert any(eta for *_, eta in lines), "a file input's share read gives an ETA"
    assert all(share is not None for *_, share, _ in lines), "the input's size is known before the run"
    assert "records read          150001" in run.stdout, "stdout keeps its summary"
    assert "progress:" not in run.stdout


def test_progress_off_prints_none(run_main, demo_models, long_input):
    run = run_main(
        "--pattern=keyed",
        f"--model_uris={demo_models['multiply_by_5']}",
        f"--input={long_input}",
        "--progress=off",
        env={"TFX_INFERENCE_PROGRESS_SECONDS": "0.5"},
    )
    assert run.returncode == 0, run.stderr
    assert "progress" not in run.stderr and run.stderr == ""


def test_counts_from_several_senders_add_up():
    with ProgressBoard(input_bytes=1000, stream=None, plain_every=3600) as board:
        senders = [board.counts() for _ in range(3)]
        for i, sender in enumerate(senders):
            sender.add("records_read", 10 * (i + 1))
            sender.add("bytes_read", 100)
        assert wait_until(lambda: board.snapshot().records_read == 60, seconds=5)
        senders[0].add("records_read", 5)
        assert wait_until(lambda: board.snapshot().records_read == 65, seconds=5), "totals, not increments"
        assert board.snapshot().bytes_read == 300


class LossyRelay:
    """A loopback UDP hop between a sender and the board that drops the one datagram it is told to."""

    def __init__(self, board: tuple[str, int]):
        self._board = board
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.address = self._socket.getsockname()
        self.drop_next = threading.Event()
        self.dropped: list[bytes] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)

    def _relay(self) -> None:
        while not self._stopped.is_set():
            try:
                data = self._socket.recv(65536)
            except TimeoutError:
                continue
            if self.drop_next.is_set():
                self.dropped.append(data)
                self.drop_next.clear()
            else:
                self._socket.sendto(data, self._board)

    def __enter__(self) -> LossyRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._socket.close()


def test_a_lost_datagram_costs_only_delay():
    with ProgressBoard(input_bytes=None, stream=None, plain_every=3600) as board, LossyRelay(board.address) as relay:
        sender = ProgressCounts(relay.address)
        sender.add("records_read", 10)
        assert wait_until(lambda: board.snapshot().records_read == 10, seconds=5)
        relay.drop_next.set()
        sender.add("records_read", 5)
        assert wait_until(lambda: relay.dropped, seconds=5)
        assert board.snapshot().records_read == 10, "the datagram carrying 15 never arrived"
        sender.add("records_read", 1)
        assert wait_until(lambda: board.snapshot().records_read == 16, seconds=5), board.snapshot()


def test_a_progress_line_says_the_share_read_and_what_is_left():
    line = progress_line(Snapshot(500, 490, 10, 250, 10.0), input_bytes=1000, earlier=Snapshot(300, 0, 0, 0, 8.0))
    assert line == (
        "progress: 500 records read, 490 rows written, 10 dead letters, 100 records/s, 25% of 0.0 MiB read, "
        "about 30 s to go"
    )
    assert ProgressCounts(None).add("records_read") is None, "without a board, counting sends nothing"
