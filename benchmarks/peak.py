"""One variant's wall time and peak memory, measured in the variant's own processes.

getrusage's `ru_maxrss` is no good here: Linux carries it over fork and exec, so every process the benchmark
starts (the benchmark has TensorFlow loaded) would report at least the benchmark's own peak. The kernel's mark
per address space, VmHWM in /proc/PID/status, starts again at exec. So the variant runs under this module,
which reports the variant process's own VmHWM as it exits, while `measure` samples the resident memory of its
worker processes (the local runner's multi-process mode) every few milliseconds.

It also times the script apart from its imports: `--preload` modules are imported before the clock starts,
since importing TensorFlow takes seconds, and on a busy machine varies by seconds.

    python -m benchmarks.peak [--preload=MODULE,...] SCRIPT ARGS...
    # runs SCRIPT as __main__; its last stdout lines: RUN_SECONDS=, CPU_SECONDS= (after the imports), PEAK_RSS_MB=
"""

from __future__ import annotations

import importlib
import os
import re
import resource
import runpy
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_SECONDS = 0.02


@dataclass(frozen=True)
class ProcessRun:
    """A variant's process from start to exit, as seen from outside it."""

    stdout: str
    seconds: float  # wall clock, interpreter start-up and imports included
    run_seconds: float  # the script alone, after its preloaded imports
    cpu_seconds: float  # CPU time of the script after its imports, and of its worker processes
    peak_mb: float  # the variant process's own high-water mark
    workers_peak_mb: float  # the largest high-water mark among its descendants, 0 when it has none
    total_peak_mb: float  # the most memory its processes held together at one sample


def status_mb(pid: int | str, field: str) -> float:
    """VmRSS or VmHWM of a process, in MB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def cpu_seconds(pid: int | str) -> float:
    """User and system CPU time a process has used so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # utime and stime are the 14th and 15th fields of stat, the 12th and 13th after the command name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, found through each process's parent in /proc/*/stat."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                # The command name (in parentheses) may hold spaces: the parent pid is the 2nd field after it.
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        parents.setdefault(parent, []).append(int(name))
    found, frontier = [], [pid]
    while frontier:
        children = parents.get(frontier.pop(), [])
        found += children
        frontier += children
    return found


class _Sampler(threading.Thread):
    """Samples a process tree's memory until told to stop."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self._pid = pid
        self._stopping = threading.Event()
        self.workers_peak_mb = 0.0
        self.total_peak_mb = 0.0
        self._workers_cpu: dict[int, float] = {}

    def run(self) -> None:
        while not self._stopping.wait(SAMPLE_SECONDS):
            workers = descendants(self._pid)
            total = status_mb(self._pid, "VmRSS") + sum(status_mb(pid, "VmRSS") for pid in workers)
            self.total_peak_mb = max(self.total_peak_mb, total)
            self.workers_peak_mb = max([self.workers_peak_mb, *(status_mb(pid, "VmHWM") for pid in workers)])
            for pid in workers:
                self._workers_cpu[pid] = max(self._workers_cpu.get(pid, 0.0), cpu_seconds(pid))

    @property
    def workers_cpu_seconds(self) -> float:
        """CPU time of the worker processes, as last sampled (a worker's last few milliseconds may be missed)."""
        return sum(self._workers_cpu.values())

    def stop(self) -> None:
        self._stopping.set()
        self.join()


def measure(script: str, *args: str, preload: tuple[str, ...] = (), tree: Path | None = None) -> ProcessRun:
    """Run `script` ARGS in a fresh Python process under this module, timing it and sampling its memory.

    `tree`: another copy of the project (an older commit's) whose packages the process imports instead of this
    checkout's. It goes first on PYTHONPATH, ahead of the editable install (a finder consulted after sys.path),
    and this module runs by its file with -P, as `-m` would put the working directory, and `python SCRIPT` the
    script's folder, ahead of PYTHONPATH.
    """
    preloading = [f"--preload={','.join(preload)}"] if preload else []
    if tree is None:
        command, cwd, env = [sys.executable, "-m", "benchmarks.peak"], ROOT, None
    else:
        command, cwd = [sys.executable, "-P", str(Path(__file__).resolve())], tree
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    process = subprocess.Popen(
        [*command, *preloading, script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
    )
    sampler = _Sampler(process.pid)
    sampler.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    sampler.stop()
    if process.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} exited with {process.returncode}:\n{stdout}\n{stderr[-3000:]}")
    reported = re.search(
        r"^RUN_SECONDS=([\d.e-]+)\nCPU_SECONDS=([\d.e-]+)\nPEAK_RSS_MB=([\d.]+)$", stdout, re.MULTILINE
    )
    if reported is None:
        raise RuntimeError(f"{script} {' '.join(args)} did not report its time and peak memory:\n{stdout}")
    run_seconds, own_cpu, peak = (float(value) for value in reported.groups())
    return ProcessRun(
        stdout,
        seconds,
        run_seconds,
        own_cpu + sampler.workers_cpu_seconds,
        peak,
        sampler.workers_peak_mb,
        max(peak, sampler.total_peak_mb),
    )


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[0].startswith("--preload="):
        for module in arguments.pop(0).removeprefix("--preload=").split(","):
            importlib.import_module(module)
    script, sys.argv = arguments[0], arguments
    started, cpu_started = time.perf_counter(), _own_cpu_seconds()
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        print(f"RUN_SECONDS={time.perf_counter() - started!r}", flush=True)
        print(f"CPU_SECONDS={_own_cpu_seconds() - cpu_started!r}", flush=True)
        print(f"PEAK_RSS_MB={status_mb('self', 'VmHWM'):.1f}", flush=True)
