"""Live counts of a local run: the steps that count send them, the main process shows them on stderr.

Beam's local runners report metrics only when a run ends (and its streaming runner lags even then), and with
--direct_running_mode=multi_processing the counting happens in other processes. So each counting step owns a
ProgressCounts that sends its running totals, a few times a second, as one UDP datagram to a loopback port the
main process listens on (ProgressBoard). A datagram holds totals, not increments: a lost one costs nothing
but a moment's delay. On Dataflow nothing is sent: the job page shows the counters.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

RECORDS_READ = "records_read"
ROWS_WRITTEN = "rows_written"
DEAD_LETTERS = "dead_letters"
BYTES_READ = "bytes_read"
_SEND_EVERY = 0.25  # seconds between datagrams from one counting step, while its totals change


class ProgressCounts:
    """Running totals of one counting step, sent to the board at `address` (a no-op without one).

    A daemon thread sends them every quarter second while they change, so that counting costs a dict update.
    """

    def __init__(self, address: tuple[str, int] | None):
        self._address = address
        self._totals: dict[str, int] = {}
        self._sender: threading.Thread | None = None

    def __getstate__(self) -> dict:
        return {"_address": self._address}  # a step is pickled before it counts anything

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["_address"])

    def add(self, name: str, count: int = 1) -> None:
        if self._address is None:
            return
        self._totals[name] = self._totals.get(name, 0) + count
        if self._sender is None:
            self._sender = threading.Thread(target=self._send, daemon=True)
            self._sender.start()

    def _send(self) -> None:
        name, sent = uuid.uuid4().hex, None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as channel:
            while True:
                try:
                    totals = dict(self._totals)
                except RuntimeError:  # a first count of a new name came in while copying: next time
                    totals = sent
                if totals != sent:
                    try:
                        channel.sendto(json.dumps([name, totals]).encode(), self._address)
                        sent = totals
                    except OSError:
                        pass  # the board is gone (the run is stopping): only the display loses
                time.sleep(_SEND_EVERY)


@dataclass(frozen=True)
class Snapshot:
    """What the board has heard, summed over every counting step; `totals` has every count it heard, by name."""

    records_read: int = 0
    rows_written: int = 0
    dead_letters: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    totals: Mapping[str, int] = field(default_factory=dict)

    @property
    def settled(self) -> bool:
        """Every record read has come out as a row or a dead letter."""
        return self.records_read == self.rows_written + self.dead_letters

    def rate_since(self, earlier: Snapshot | None) -> float:
        """Records read per second since an earlier snapshot (since the start without one)."""
        earlier = earlier or Snapshot()
        seconds = self.seconds - earlier.seconds
        return (self.records_read - earlier.records_read) / seconds if seconds > 0 else 0.0

    def counts(self) -> tuple[int, int, int, int]:
        return self.records_read, self.rows_written, self.dead_letters, self.bytes_read


def progress_line(snapshot: Snapshot, input_bytes: int | None, earlier: Snapshot | None = None) -> str:
    """One plain line: counts, the rate since `earlier` and, for inputs of known size, the share read and an ETA."""
    line = (
        f"progress: {snapshot.records_read} records read, {snapshot.rows_written} rows written, "
        f"{snapshot.dead_letters} dead letters, {snapshot.rate_since(earlier):,.0f} records/s"
    )
    if input_bytes:
        share = min(snapshot.bytes_read / input_bytes, 1.0)
        line += f", {share:.0%} of {input_bytes / 2**20:,.1f} MiB read"
        if 0 < share < 1:
            line += f", about {snapshot.seconds * (1 - share) / share:,.0f} s to go"
    return line


class ProgressBoard:
    """The main process's side: a loopback UDP port, the totals heard on it, and their display on `stream`.

    `live` shows a rich live status line (on a terminal); otherwise (CI, `| tee`, a log) a plain line every
    `plain_every` seconds. stdout, where the summary goes, is never written to.
    """

    def __init__(
        self, input_bytes: int | None, stream: TextIO = sys.stderr, live: bool = False, plain_every: float = 5.0
    ):
        self._input_bytes = input_bytes
        self._stream = stream
        self._live = live
        self._plain_every = plain_every
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self._senders: dict[str, Mapping[str, int]] = {}
        self._lock = threading.Lock()
        self._heard_at = time.monotonic()
        self._started = time.monotonic()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> tuple[str, int]:
        return self._socket.getsockname()

    def counts(self) -> ProgressCounts:
        """A counting step's end of the channel, to be pickled into the pipeline."""
        return ProgressCounts(self.address)

    def snapshot(self) -> Snapshot:
        totals = Counter()
        with self._lock:
            for sender in self._senders.values():
                totals.update(sender)
        seconds = time.monotonic() - self._started
        rows, dead_letters = totals[ROWS_WRITTEN], totals[DEAD_LETTERS]
        # Steps send at their own moments: a record written was surely read, even if its reader's totals lag.
        read = max(totals[RECORDS_READ], rows + dead_letters)
        return Snapshot(read, rows, dead_letters, totals[BYTES_READ], seconds, dict(totals))

    def quiet_for(self) -> float:
        """Seconds since the last datagram."""
        return time.monotonic() - self._heard_at

    def __enter__(self) -> ProgressBoard:
        self._threads = [threading.Thread(target=self._listen, daemon=True)]
        show = self._show_live if self._live else self._show_plain
        self._threads.append(threading.Thread(target=show, daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        wait_until(lambda: self.quiet_for() > 2 * _SEND_EVERY, seconds=1)  # the last totals on their way
        self._stopped.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._socket.close()

    def _listen(self) -> None:
        while not self._stopped.is_set():
            try:
                data = self._socket.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            sender, totals = json.loads(data)
            with self._lock:
                self._senders[sender] = totals
                self._heard_at = time.monotonic()

    def _show_plain(self) -> None:
        """A line every `plain_every` seconds while the counts change (an idle stream prints nothing)."""
        shown = None
        while not self._stopped.wait(self._plain_every):
            snapshot = self.snapshot()
            if shown is None or snapshot.counts() != shown.counts():
                print(progress_line(snapshot, self._input_bytes, shown), file=self._stream, flush=True)
                shown = snapshot

    def _show_live(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

        columns = [TextColumn("{task.description}")]
        if self._input_bytes:
            columns += [BarColumn(bar_width=24), TaskProgressColumn(), TimeRemainingColumn()]
        console = Console(file=self._stream, force_terminal=True)
        with Progress(*columns, console=console, refresh_per_second=4) as display:
            task = display.add_task("", total=self._input_bytes or None)
            recent: list[Snapshot] = []  # the last few seconds, for the rate
            while True:
                snapshot = self.snapshot()
                recent = [*recent[-11:], snapshot]
                counts = (
                    f"{snapshot.records_read:,} read  {snapshot.rows_written:,} rows  "
                    f"{snapshot.dead_letters:,} dead letters  {snapshot.rate_since(recent[0]):,.0f}/s"
                )
                display.update(task, description=counts, completed=snapshot.bytes_read)
                if self._stopped.wait(0.25):
                    return


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    """Poll `condition` until it holds or `seconds` pass; whether it held."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True
