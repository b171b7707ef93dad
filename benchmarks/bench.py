"""`make bench`: every pattern of this project against the model's own limit, the data path with no model (the
floor), the naive per-element DoFn and the seed post's own pipeline, on the toy x5 model (overhead-bound) and a
heavy MLP (compute-bound); the toy patterns as the code was before issue 15 (an older commit's main.py, run
beside today's); 1 vs 2 worker processes; each variant's peak memory and model loads; streaming latency at a
fixed message rate through the Pub/Sub emulator; each variant's cost per million predictions on a Dataflow
worker (benchmarks/costs.py). One run writes results/<time>.json, results/latest.md and results/latest.png.

Every variant runs in a fresh process on two input sizes, and its steady-state rate is the extra records over
the extra seconds, so that start-up (imports, model loads, pipeline construction) cancels out for all alike.
Repeats are interleaved (every variant once, then every variant again), and each figure is reported with its
range over the repeats.

    python -m benchmarks.bench [--records 200000] [--repeats 3] [--stream-rate 200] [--stream-seconds 60]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks import costs
from benchmarks.large_file import large_file
from benchmarks.large_file import markdown as large_file_markdown
from benchmarks.peak import ProcessRun, measure
from benchmarks.streaming import streaming_latency
from tools.pubsub_emulator import missing_tools

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = ("predict", "postprocess", "keyed", "multi_parallel", "multi_sequence")
HEAVY_WIDTH = 256
HEAVY_HIDDEN = 2048
BASELINES = str(ROOT / "benchmarks" / "baselines.py")
MAIN = str(ROOT / "main.py")
# Imported before a variant's clock starts: TensorFlow, Beam, tfx-bsl and the project (main.py imports them all).
PRELOAD = ("transforms.pipeline",)
# The data path when issue 15 was filed (its results: results/20261127T190451.json, results/latest.md). Its goals
# are against that code, so it runs beside today's, extracted from the project's own history. In full, as a short
# hash can grow ambiguous as the history does.
BEFORE_ISSUE_15 = "dc535e6485eb88f862a9eb9f2cf9d5970e3bde29"  # pragma: allowlist secret (a commit hash, not a key)


class MissingHistory(Exception):
    """The project's git history cannot give the commit a reference variant runs."""


@dataclass(frozen=True)
class Sizes:
    """The two input sizes of a workload: the steady-state rate is (large - small) / (its extra seconds)."""

    small: int
    large: int


def sizes_for(records: int) -> dict[str, Sizes]:
    """Toy and heavy record counts; the heavy model gets a fifth of the toy's, each workload a quarter-size run."""
    heavy_records = max(records // 5, 8)
    heavy = Sizes(max(heavy_records // 4, 2), heavy_records)
    return {"toy": Sizes(max(records // 4, 2), records), "heavy": heavy, "heavy JSON Lines": heavy}


@dataclass(frozen=True)
class Run:
    """One variant's process on one input."""

    records: int
    process_seconds: float  # wall clock of the whole process, start-up included
    run_seconds: float  # the process after its imports of TensorFlow, Beam and the project
    timed_seconds: float  # the variant's own timer: raw's model calls, a pipeline's construction to finish
    cpu_seconds: float  # CPU time of the process after its imports, and of its worker processes
    timed_cpu_seconds: float  # CPU time within the variant's own timer (a pattern's: cpu_seconds)
    peak_mb: float  # the variant process's own high-water mark
    total_peak_mb: float  # its processes together (with the local runner's worker processes)
    model_loads: int


@dataclass(frozen=True)
class Variant:
    """What is measured: `command(input, output)` gives the script and arguments of one run."""

    name: str
    workload: str  # "toy", "heavy" or "heavy JSON Lines" (a key of sizes_for)
    command: Callable[[Path, Path], tuple[str, ...]]
    reference: bool  # a reference point (raw, floor, naive, seed, before issue 15), not one of the patterns
    tree: Path | None = None  # the copy of the project its process imports, when not this checkout

    @property
    def steady_clock(self) -> str:
        """The seconds its steady-state rate is taken on.

        A pipeline's: its process after the imports, which on a busy machine vary by seconds; what follows them
        (building the pipeline, loading models, starting workers) cancels between the two sizes. raw's: its
        model calls alone, which take a fraction of a second for the whole toy input, less than reading it.
        """
        return "timed_seconds" if self.name.startswith("raw") else "run_seconds"

    @property
    def cpu_clock(self) -> str:
        """The CPU seconds its steady-state CPU rate is taken on, chosen as `steady_clock` is."""
        return "timed_cpu_seconds" if self.name.startswith("raw") else "cpu_seconds"


def baseline(kind: str, model: Path, *extra: str) -> Callable[[Path, Path], tuple[str, ...]]:
    return lambda source, output: (
        BASELINES,
        kind,
        f"--model={model}",
        f"--input={source}",
        f"--output={output}",
        *extra,
    )


def pattern(
    name: str, models: Sequence[Path], *extra: str, main: str = MAIN
) -> Callable[[Path, Path], tuple[str, ...]]:
    uris = ",".join(str(m) for m in models)
    return lambda source, output: (
        *(main, f"--pattern={name}", f"--model_uris={uris}", f"--input={source}", f"--output={output}"),
        *extra,
    )


def variants(toy_models: Sequence[Path], heavy: Path, heavy_named: Path, before: Path) -> list[Variant]:
    """Every variant; `before` is where the project as of BEFORE_ISSUE_15 is (to be) extracted."""
    toy = toy_models[0]
    processes = ("--direct_running_mode=multi_processing", "--direct_num_workers={}")
    return [
        Variant("raw toy", "toy", baseline("raw", toy), True),
        Variant("floor toy", "toy", baseline("floor", toy), True),
        Variant("floor toy, PredictionLogs", "toy", baseline("floor", toy, "--pattern=predict"), True),
        Variant("naive toy", "toy", baseline("naive", toy), True),
        Variant("seed post's pipeline toy", "toy", baseline("seed", toy), True),
        *(
            Variant(f"{p} toy", "toy", pattern(p, toy_models if p.startswith("multi") else [toy]), False)
            for p in PATTERNS
        ),
        # The same runs on the code issue 15 started from: its main.py takes every argument passed here.
        *(
            Variant(
                f"{p} toy, before issue 15",
                "toy",
                pattern(p, toy_models if p.startswith("multi") else [toy], main=str(before / "main.py")),
                True,
                before,
            )
            for p in PATTERNS
        ),
        *(
            Variant(
                f"postprocess toy, {n} worker process{'es' if n > 1 else ''}",
                "toy",
                pattern("postprocess", [toy], processes[0], processes[1].format(n)),
                False,
            )
            for n in (1, 2)
        ),
        # Progress is on by default (plain lines, as stderr is not a terminal here); this one shows nothing.
        Variant("postprocess toy, --progress=off", "toy", pattern("postprocess", [toy], "--progress=off"), False),
        Variant("raw heavy", "heavy", baseline("raw", heavy), True),
        Variant("floor heavy", "heavy", baseline("floor", heavy), True),
        Variant("naive heavy", "heavy", baseline("naive", heavy), True),
        Variant("postprocess heavy", "heavy", pattern("postprocess", [heavy]), False),
        # Issue 27: rows that carry the key and the model's output, none of the 256 input floats.
        Variant(
            "postprocess heavy, --row_input=none", "heavy", pattern("postprocess", [heavy], "--row_input=none"), False
        ),
        # The same MLP as Keras 3 exports it, its input the named tensor x: the template's own handler. From
        # TFRecords of Examples the serialized-Example model is fed each record's Example as read, while the
        # named one builds its tensor from the parsed features; from JSON Lines both build their input from
        # the parsed features (an Example, or a tensor): the same work, which issue 16's goal compares.
        Variant("postprocess heavy, named tensors", "heavy", pattern("postprocess", [heavy_named]), False),
        *(
            Variant(
                f"postprocess heavy{kind}, JSON Lines",
                "heavy JSON Lines",
                pattern("postprocess", [model], "--feature_types=x:float"),
                False,
            )
            for kind, model in (("", heavy), (", named tensors", heavy_named))
        ),
    ]


def parse_run(process: ProcessRun, expected: int) -> Run:
    """A Run from a variant's process and output: a baseline's JSON line, or main.py's summary table."""
    stdout = process.stdout
    line = next((line for line in stdout.splitlines() if line.startswith("{")), None)
    if line is not None:
        result = json.loads(line)
        seconds, timed_cpu_seconds = result["seconds"], result["cpu_seconds"]
        records, rows, dead, loads = result["records"], result["rows"], 0, result["model_loads"]
    else:
        seconds = float(re.search(r"finished in ([\d.]+) s", stdout).group(1))
        timed_cpu_seconds = process.cpu_seconds
        records = int(re.search(r"records read\s+(\d+)", stdout).group(1))
        rows = int(re.search(r"rows written\s+(\d+)", stdout).group(1))
        dead = int(re.search(r"dead letters\s+(\d+)", stdout).group(1))
        # A model's row of the summary: name, predictions, batches, mean batch, mean/max batch ms, loads, load ms.
        # The run's figure is its most loaded model's count: the goal is one copy of each model per process.
        loads = max(int(n) for n in re.findall(r"^  \S+\s+\d+\s+\d+(?:\s+[\d.]+){3}\s+(\d+)\s+\d+$", stdout, re.M))
    if records != expected or rows + dead != records:
        raise RuntimeError(
            f"a run of {expected} records read {records}, wrote {rows} rows and {dead} dead letters:\n{stdout}"
        )
    return Run(
        records,
        process.seconds,
        process.run_seconds,
        seconds,
        process.cpu_seconds,
        timed_cpu_seconds,
        process.peak_mb,
        process.total_peak_mb,
        loads,
    )


def run_once(variant: Variant, source: Path, output: Path, expected: int) -> Run:
    process = measure(*variant.command(source, output), preload=PRELOAD, tree=variant.tree)
    shutil.rmtree(output.parent, ignore_errors=True)  # the heavy rows are large; nothing reads them again
    return parse_run(process, expected)


def steady_rate(small: Run, large: Run, clock: str) -> float | None:
    """Extra records over extra seconds between two sizes; None when noise hid the extra time."""
    extra = getattr(large, clock) - getattr(small, clock)
    return (large.records - small.records) / extra if extra > 0 else None


def spread(values: Sequence[float | None]) -> dict:
    """Median, min and max of one figure over the repeats, every repeat's value kept, at full precision."""
    known = [v for v in values if v is not None]
    if not known:
        return {"median": None, "min": None, "max": None, "runs": list(values)}
    return {"median": statistics.median(known), "min": min(known), "max": max(known), "runs": list(values)}


def summarize_variant(variant: Variant, pairs: Sequence[tuple[Run, Run]]) -> dict:
    """Per-repeat figures of one variant, from its (small, large) run pairs."""
    return {
        "workload": variant.workload,
        "reference": variant.reference,
        "steady_clock": variant.steady_clock,
        "records": pairs[0][1].records,
        "small_records": pairs[0][0].records,
        "steady_rate": spread([steady_rate(small, large, variant.steady_clock) for small, large in pairs]),
        "steady_cpu_rate": spread([steady_rate(small, large, variant.cpu_clock) for small, large in pairs]),
        "process_rate": spread([large.records / large.process_seconds for _, large in pairs]),
        "process_seconds": spread([large.process_seconds for _, large in pairs]),
        "peak_mb": spread([large.peak_mb for _, large in pairs]),
        "total_peak_mb": spread([large.total_peak_mb for _, large in pairs]),
        "model_loads": spread([large.model_loads for _, large in pairs]),
        "runs": [{"small": asdict(small), "large": asdict(large)} for small, large in pairs],
    }


def extract_commit(commit: str, into: Path, repository: Path = ROOT) -> Path:
    """The project's files as of `commit` (`git archive` of the repository's own history), written into `into`."""
    try:
        inside = subprocess.run(
            ["git", "-C", str(repository), "rev-parse", "--is-shallow-repository"], capture_output=True, text=True
        )
    except FileNotFoundError:
        raise MissingHistory(
            f"the variants before issue 15 run commit {commit} from git, which is not installed"
        ) from None
    if inside.returncode != 0:
        raise MissingHistory(
            f"the variants before issue 15 run commit {commit} from the project's git history, but {repository} "
            f"is not a git clone ({inside.stderr.strip()}); clone the repository, or leave them out with --only"
        )
    found = subprocess.run(
        ["git", "-C", str(repository), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True, text=True
    )
    if found.returncode != 0:
        remedy = "`git fetch --unshallow`" if inside.stdout.strip() == "true" else "`git fetch` the project's history"
        raise MissingHistory(
            f"commit {commit}, the code before issue 15, is not in the clone at {repository}"
            + (" (a shallow clone)" if inside.stdout.strip() == "true" else "")
            + f": {remedy}, or leave the variants before issue 15 out with --only"
        )
    archive = subprocess.run(["git", "-C", str(repository), "archive", commit], capture_output=True, check=True)
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as files:
        files.extractall(into, filter="data")
    return into


def run(records: int, repeats: int, folder: Path, only: re.Pattern | None = None) -> dict:
    from tools.demo import FACTORS, build_models

    models = folder / "models"
    toy_models = [models / f"multiply_by_{factor}" for factor in FACTORS]
    heavy, heavy_named = models / "heavy_mlp", models / "heavy_mlp_named"
    before = folder / f"project-{BEFORE_ISSUE_15[:7]}"
    plan = [v for v in variants(toy_models, heavy, heavy_named, before) if only is None or only.search(v.name)]
    if not plan:
        raise ValueError(f"--only={only.pattern} matches no variant")
    if any(v.tree == before for v in plan):  # first: a missing commit is said before minutes of building
        extract_commit(BEFORE_ISSUE_15, before)
    build_models(models)
    heavy_model(heavy, heavy_named)
    sizes = sizes_for(records)
    inputs = write_inputs(folder, sizes)
    pairs: dict[str, list[tuple[Run, Run]]] = {v.name: [] for v in plan}
    for repeat in range(repeats):
        for variant in plan:
            size = sizes[variant.workload]
            # Alternate which size runs first, so that a drift in the machine's load biases neither.
            order = ("small", "large") if repeat % 2 == 0 else ("large", "small")
            done = {
                which: run_once(
                    variant,
                    inputs[(variant.workload, which)],
                    folder / "out" / which / "part",
                    getattr(size, which),
                )
                for which in order
            }
            pairs[variant.name].append((done["small"], done["large"]))
            rate = steady_rate(done["small"], done["large"], variant.steady_clock)
            print(
                f"repeat {repeat + 1}/{repeats}  {variant.name:<40} steady "
                + (f"{rate:>12,.0f}" if rate else f"{'(noise)':>12}")
                + f" records/s  process {done['large'].process_seconds:7.2f} s  {done['large'].peak_mb:>7,.0f} MB",
                flush=True,
            )
    return {v.name: summarize_variant(v, pairs[v.name]) for v in plan}


def heavy_model(path: Path, named_path: Path) -> None:
    """An MLP on a 256-float feature: 2 * (256*2048 + 2048*2048 + 2048) = 9.4 MFLOP per example.

    Written twice, with the same weights: at `path` taking serialized Examples (tools/export.py), at
    `named_path` as Keras 3's `model.export` writes it, taking the named tensor x.
    """
    import keras

    from tools.export import FeatureSpec, export_example_model

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((HEAVY_WIDTH,), name="x"),
            keras.layers.Dense(HEAVY_HIDDEN, activation="relu"),
            keras.layers.Dense(HEAVY_HIDDEN, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    export_example_model(model, [FeatureSpec("x", "float", HEAVY_WIDTH)], str(path))
    model.export(str(named_path), verbose=False)


def write_inputs(folder: Path, sizes: dict[str, Sizes]) -> dict[tuple[str, str], Path]:
    """TFRecord files of Examples per (workload, size), and the heavy records as JSON Lines too; each small file
    is the start of its large one."""
    import numpy as np
    import orjson
    import tensorflow as tf

    from transforms.records.examples import encode_example

    toy = [encode_example({"key": f"device-{i}", "x": float(i % 1000)}) for i in range(sizes["toy"].large)]
    rows = np.random.default_rng(0).random((sizes["heavy"].large, HEAVY_WIDTH), dtype=np.float32)
    heavy = [encode_example({"key": f"device-{i}", "x": [float(v) for v in row]}) for i, row in enumerate(rows)]
    heavy_lines = [orjson.dumps({"key": f"device-{i}", "x": [float(v) for v in row]}) for i, row in enumerate(rows)]
    paths = {}
    for workload, examples in (("toy", toy), ("heavy", heavy)):
        for which in ("small", "large"):
            path = paths[(workload, which)] = folder / f"{workload}-{which}.tfrecord"
            with tf.io.TFRecordWriter(str(path)) as writer:
                for example in examples[: getattr(sizes[workload], which)]:
                    writer.write(example)
    for which in ("small", "large"):
        path = paths[("heavy JSON Lines", which)] = folder / f"heavy-{which}.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in heavy_lines[: getattr(sizes["heavy JSON Lines"], which)]))
    return paths


def ratio(results: dict, numerator: str, denominator: str, figure: str = "steady_rate") -> dict:
    """A ratio of steady-state rates, taken repeat by repeat (the two ran minutes apart at most)."""
    top, bottom = results[numerator][figure]["runs"], results[denominator][figure]["runs"]
    return spread([a / b if a is not None and b else None for a, b in zip(top, bottom, strict=True)])


def verdict(figure: dict, goal: float, at_most: bool = False) -> str:
    """yes when every repeat meets the goal, no when none does, "within noise" when the repeats disagree
    (or some repeat's extra seconds were lost in the noise)."""
    if figure["median"] is None:
        return "no figure (noise)"
    if None in figure["runs"]:
        return "within noise"
    low, high = figure["min"], figure["max"]
    if at_most:
        low, high = -high, -low
        goal = -goal
    if low >= goal:
        return "yes"
    return "no" if high < goal else "within noise"


def memory_verdict(peak: dict, before: dict) -> str:
    """yes when the median peak is no higher than before's; "within noise" when it is higher by no more than the
    repeats moved (the wider min-max range of the two); no when higher by more. With one repeat there is no
    range, and any excess is a no."""
    excess = peak["median"] - before["median"]
    noise = max(peak["max"] - peak["min"], before["max"] - before["min"])
    if excess <= 0:
        return "yes"
    return "within noise" if excess <= noise else "no"


def targets(results: dict, streaming: dict) -> list[dict]:
    """The goals of issues 14, 15, 16 and 27 on steady-state rates, each ratio taken repeat by repeat, and issue 15's
    on peak memory (see memory_verdict).

    A goal whose variants were left out of the run (`--only`) is left out too.
    """
    floors = {p: "floor toy, PredictionLogs" if p == "predict" else "floor toy" for p in PATTERNS}
    ratios = [(f"{p} toy >= 80% of its floor", f"{p} toy", floors[p], 0.8) for p in PATTERNS]
    ratios += [
        # Issue 27 split issue 15's 90% goal: rows that echo the 256 inputs pay for writing them.
        (
            "postprocess heavy, key-only rows >= 90% of the raw model",
            "postprocess heavy, --row_input=none",
            "raw heavy",
            0.9,
        ),
        ("postprocess heavy, every input echoed >= 70% of the raw model", "postprocess heavy", "raw heavy", 0.7),
        (
            "heavy from JSON Lines >= 80% of the same from TFRecords",
            "postprocess heavy, JSON Lines",
            "postprocess heavy",
            0.8,
        ),
        ("postprocess toy >= 30x the naive DoFn", "postprocess toy", "naive toy", 30.0),
        ("postprocess heavy >= 10x the naive DoFn", "postprocess heavy", "naive heavy", 10.0),
        # Issue 16: neither signature kind more than 10% slower than the other at equal work (see variants).
        (
            "heavy JSON Lines: named tensors >= 90% of serialized Examples",
            "postprocess heavy, named tensors, JSON Lines",
            "postprocess heavy, JSON Lines",
            0.9,
        ),
        (
            "heavy JSON Lines: serialized Examples >= 90% of named tensors",
            "postprocess heavy, JSON Lines",
            "postprocess heavy, named tensors, JSON Lines",
            0.9,
        ),
        ("predict toy >= 5x the seed post's pipeline", "predict toy", "seed post's pipeline toy", 5.0),
        ("multi_parallel toy >= 80% of postprocess", "multi_parallel toy", "postprocess toy", 0.8),
        ("multi_sequence toy >= 80% of postprocess", "multi_sequence toy", "postprocess toy", 0.8),
        (
            "progress shown costs < 2% (rate with it / without it)",
            "postprocess toy",
            "postprocess toy, --progress=off",
            0.98,
        ),
        (
            "2 worker processes >= 1.7x one",
            "postprocess toy, 2 worker processes",
            "postprocess toy, 1 worker process",
            1.7,
        ),
    ]
    ratios += [(f"{p} toy >= 5x before issue 15", f"{p} toy", f"{p} toy, before issue 15", 5.0) for p in PATTERNS]
    report = []
    for target, numerator, denominator, goal in ratios:
        if numerator in results and denominator in results:
            value = ratio(results, numerator, denominator)
            report.append(
                {
                    "target": target,
                    "value": value,
                    "goal": goal,
                    "met": verdict(value, goal),
                    "digits": 2,
                    "cpu_value": ratio(results, numerator, denominator, "steady_cpu_rate"),
                }
            )
    for p in PATTERNS:
        variant, before = f"{p} toy", f"{p} toy, before issue 15"
        if variant in results and before in results:
            peak, goal = results[variant]["peak_mb"], results[before]["peak_mb"]
            report.append(
                {
                    "target": f"{p} toy peak memory <= before issue 15 (MB)",
                    "value": peak,
                    "goal": goal["median"],
                    "met": memory_verdict(peak, goal),
                    "digits": 1,  # as VmHWM is reported, and as the goal shows
                }
            )
    if "postprocess toy, 2 worker processes" in results:
        loads = results["postprocess toy, 2 worker processes"]["model_loads"]
        report.append(
            {
                "target": "one model copy per process (loads, 2 workers)",
                "value": loads,
                "goal": 2,
                "met": _yes(loads["min"] == loads["max"] == 2),
                "digits": 0,
            }
        )
    missing = streaming["published"] - streaming["received"]
    sustained = f"streaming {streaming['rate']:g} msg/s for {streaming['seconds']:g} s, all {streaming['published']}"
    report += [
        {"target": f"{sustained} rows arrive (missing)", "value": missing, "goal": 0, "met": _yes(missing == 0)},
        {
            "target": "streaming p99 latency < 1 s (ms)",
            "value": streaming["p99_ms"],
            "goal": 1000,
            "met": _yes(streaming["p99_ms"] < 1000),
        },
    ]
    return report


def _yes(met: bool) -> str:
    return "yes" if met else "no"


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _with_range(figure: dict, digits: int = 0) -> str:
    """`median (min-max)`, or the median alone when every repeat agrees."""
    if figure["median"] is None:
        return "noise"
    median, low, high = (_number(figure[k], digits) for k in ("median", "min", "max"))
    return median if low == high else f"{median} ({low}-{high})"


def markdown(report: dict) -> str:
    sizes = report["sizes"]
    lines = [
        f"Benchmark of {report['when']} on {report['machine']}: toy workload {sizes['toy']['small']} and "
        f"{sizes['toy']['large']} records, heavy {sizes['heavy']['small']} and {sizes['heavy']['large']}; "
        f"{report['repeats']} interleaved repeats, each figure the median (min-max) over them. "
        f"Load average before the run: {report['load_average_before']}, after: {report['load_average_after']}.",
        "",
        "Steady state: extra records / extra seconds between the two sizes (each process after its imports; "
        "raw: its model calls). Per CPU-second: the same over the extra CPU time of the variant's processes, "
        "which other work on the machine disturbs far less than it disturbs the clock. "
        "Whole process: records / seconds of the larger run, start-up included.",
        "",
        "| variant | steady records/s | steady records per CPU-s | whole-process records/s | process s "
        "| peak MB | with workers MB | loads |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in report["results"].items():
        lines.append(
            f"| {name} | {_with_range(r['steady_rate'])} | {_with_range(r['steady_cpu_rate'])} "
            f"| {_with_range(r['process_rate'])} "
            f"| {_with_range(r['process_seconds'], 2)} | {_with_range(r['peak_mb'])} "
            f"| {_with_range(r['total_peak_mb'])} | {_with_range(r['model_loads'])} |"
        )
    stream = report["streaming"]
    lines += [
        "",
        f"Streaming, keyed pattern through the Pub/Sub emulator: {stream['published']} messages at "
        f"{stream['achieved_publish_rate']:.0f}/s, {stream['received']} rows received; latency from publish to "
        f"row p50 {stream['p50_ms']:.0f} ms, p95 {stream['p95_ms']:.0f} ms, p99 {stream['p99_ms']:.0f} ms, "
        f"max {stream['max_ms']:.0f} ms.",
        "",
        "Targets on steady-state rates, each ratio taken repeat by repeat: **yes** when every repeat meets it, "
        "**no** when none does, *within noise* when the repeats disagree. The same ratio per CPU-second is "
        "shown beside it, not judged: on a busy machine it is the steadier of the two. Peak memory: the variant's "
        "median MB against the median before issue 15 (the goal); **yes** when no higher, *within noise* when "
        "higher by no more than the wider min-max range of the two, **no** when higher by more.",
        "",
        "| target | value | goal | met | per CPU-second |",
        "| --- | ---: | ---: | :---: | ---: |",
    ]
    for t in report["targets"]:
        value = _with_range(t["value"], t["digits"]) if isinstance(t["value"], dict) else _number(t["value"])
        met = {"yes": "yes", "no": "**no**", "within noise": "*within noise*"}.get(t["met"], t["met"])
        cpu = _with_range(t["cpu_value"], t["digits"]) if "cpu_value" in t else ""
        lines.append(f"| {t['target']} | {value} | {t['goal']:g} | {met} | {cpu} |")
    lines += ["", "## Cost", "", costs.markdown(report["results"])]
    if report.get("large_file"):
        lines += ["", large_file_markdown(report["large_file"])]
    return "\n".join(lines) + "\n"


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    names = list(results)
    # A variant whose extra seconds were lost in the noise has no bar, only its whole-process dot.
    steady = [results[n]["steady_rate"] for n in names]
    medians = [s["median"] or math.nan for s in steady]
    errors = [
        [m - (s["min"] or m) for m, s in zip(medians, steady, strict=True)],
        [(s["max"] or m) - m for m, s in zip(medians, steady, strict=True)],
    ]
    figure, (axis, latency) = plt.subplots(2, 1, figsize=(10, 0.4 * len(results) + 5.5), height_ratios=[3, 1])
    colours = ["#888" if results[n]["reference"] else "#1a73e8" for n in names]
    axis.barh(names, medians, xerr=errors, color=colours, ecolor="#333", capsize=3, label="steady state (min-max)")
    axis.scatter(
        [results[n]["process_rate"]["median"] for n in names], names, color="#d93025", zorder=3, label="whole process"
    )
    axis.set_xscale("log")
    axis.set_xlabel("records per second (log scale)")
    axis.invert_yaxis()
    axis.legend(loc="lower right")
    axis.set_title(f"Throughput, {report['machine']}, median of {report['repeats']}")
    stream = report["streaming"]
    ordered = stream["latencies_ms"]
    latency.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], color="#1a73e8")
    latency.set_xlabel("milliseconds from publish to row")
    latency.set_ylabel("share of messages")
    latency.set_title(f"Streaming latency CDF, {stream['rate']:g} messages/s for {stream['seconds']:g} s")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _load_average() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000, help="toy records (the heavy model gets 1/5)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stream-rate", type=float, default=200, help="streaming: messages per second")
    parser.add_argument("--stream-seconds", type=float, default=60, help="streaming: how long to publish")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--only", type=re.compile, help="measure only the variants whose name this regex finds")
    parser.add_argument("--large-file-mb", type=int, default=160, help="one large CSV file's size (0: skip it)")
    args = parser.parse_args()
    missing = missing_tools()
    if missing:  # said before the throughput part, not after it
        parser.error("the streaming part needs the Pub/Sub emulator; install:\n  " + "\n  ".join(missing))
    load_before = _load_average()
    with tempfile.TemporaryDirectory() as folder:
        try:
            results = run(args.records, args.repeats, Path(folder), args.only)
        except MissingHistory as missing_history:
            parser.error(str(missing_history))
        toy = Path(folder) / "models" / "multiply_by_5"
        streaming = streaming_latency(toy, args.stream_rate, args.stream_seconds)
        large = large_file(toy, args.large_file_mb, Path(folder)) if args.large_file_mb else None
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_before": load_before,
        "load_average_after": _load_average(),
        "sizes": {workload: asdict(s) for workload, s in sizes_for(args.records).items()},
        "repeats": args.repeats,
        "results": results,
        "streaming": streaming,
        "large_file": large,
    }
    report["targets"] = targets(results, streaming)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    (args.out / f"{stamp}.json").write_text(json.dumps(report, indent=2))
    (args.out / "latest.md").write_text(markdown(report))
    chart(report, args.out / "latest.png")
    print(markdown(report))


if __name__ == "__main__":
    main()
