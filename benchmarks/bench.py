"""`make bench`: every pattern of this project against the model's own limit, Beam's floor and the naive
DoFn, on the toy x5 model (overhead-bound) and a heavy MLP (compute-bound); 1 vs 2 worker processes; peak
memory and model loads; streaming latency at a fixed message rate through the Pub/Sub emulator. One run writes
results/<time>.json, results/latest.md and results/latest.png.

    python -m benchmarks.bench [--records 200000] [--repeats 3] [--stream-rate 200] [--stream-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.streaming import streaming_latency
from tools.pubsub_emulator import missing_tools

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = ("predict", "postprocess", "keyed", "multi_parallel", "multi_sequence")
HEAVY_WIDTH = 256
HEAVY_HIDDEN = 2048


@dataclass
class Measurement:
    seconds: float
    records: int
    peak_mb: float
    model_loads: int = 0

    @property
    def throughput(self) -> float:
        return self.records / self.seconds


def heavy_count(records: int) -> int:
    return max(records // 5, 10)


def heavy_model(path: Path) -> None:
    """An MLP on a 256-float feature: 2 * (256*2048 + 2048*2048 + 2048) = 9.4 MFLOP per example."""
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


def write_inputs(folder: Path, records: int, heavy_records: int) -> tuple[Path, Path, Path]:
    import numpy as np
    import tensorflow as tf

    from transforms.examples import encode_example

    toy, heavy = folder / "toy.tfrecord", folder / "heavy.tfrecord"
    with tf.io.TFRecordWriter(str(toy)) as writer:
        for i in range(records):
            writer.write(encode_example({"key": f"device-{i}", "x": float(i % 1000)}))
    rows = np.random.default_rng(0).random((heavy_records, HEAVY_WIDTH), dtype=np.float32)
    examples = [encode_example({"key": f"device-{i}", "x": [float(v) for v in row]}) for i, row in enumerate(rows)]
    # The naive DoFn is timed on a tenth of the heavy records: its rate is steady, and the full set would take
    # it longer than everything else together.
    few = folder / "heavy-few.tfrecord"
    for path, subset in ((heavy, examples), (few, examples[: max(len(examples) // 10, 1)])):
        with tf.io.TFRecordWriter(str(path)) as writer:
            for example in subset:
                writer.write(example)
    return toy, heavy, few


def _measure(script: str, *args: str) -> tuple[str, float]:
    """stdout of `script` run in a fresh process, and its peak resident memory in MB (its own, or its
    largest worker process's when that is larger)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.peak", script, *args], capture_output=True, text=True, cwd=ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    own, workers = re.search(r"PEAK_RSS_MB=(\d+) (\d+)", done.stdout).groups()
    return done.stdout, float(max(int(own), int(workers)))


def baseline(kind: str, model: Path, source: Path, output: Path) -> Measurement:
    script = str(ROOT / "benchmarks" / "baselines.py")
    stdout, peak = _measure(script, kind, f"--model={model}", f"--input={source}", f"--output={output}")
    result = json.loads(next(line for line in stdout.splitlines() if line.startswith("{")))
    return Measurement(result["seconds"], result["records"], peak, 0 if kind == "floor" else 1)


def pattern(name: str, models: list[Path], source: Path, output: Path, *extra: str) -> Measurement:
    uris = ",".join(str(m) for m in models)
    args = [f"--pattern={name}", f"--model_uris={uris}", f"--input={source}", f"--output={output}", *extra]
    stdout, peak = _measure(str(ROOT / "main.py"), *args)
    seconds = float(re.search(r"finished in ([\d.]+) s", stdout).group(1))
    records = int(re.search(r"records read\s+(\d+)", stdout).group(1))
    loads = [
        int(line.split()[-2]) for line in stdout.splitlines() if line.strip().startswith(tuple(m.name for m in models))
    ]
    return Measurement(seconds, records, peak, max(loads, default=0))


def median(runs: list[Measurement]) -> dict:
    middle = sorted(runs, key=lambda m: m.seconds)[len(runs) // 2]
    return {
        **asdict(middle),
        "throughput": middle.throughput,
        "seconds_all": [m.seconds for m in runs],
        "spread": (max(m.seconds for m in runs) - min(m.seconds for m in runs))
        / statistics.median(m.seconds for m in runs),
    }


def run(records: int, repeats: int, folder: Path) -> dict:
    from tools.demo import build_models

    toy_models = build_models(folder / "models")
    heavy = folder / "models" / "heavy_mlp"
    heavy_model(heavy)
    toy, heavy_input, heavy_few = write_inputs(folder, records, heavy_count(records))
    out = folder / "out"
    plan = {
        "raw toy": lambda: baseline("raw", toy_models[0], toy, out / "raw"),
        "floor toy": lambda: baseline("floor", toy_models[0], toy, out / "floor"),
        "naive toy": lambda: baseline("naive", toy_models[0], toy, out / "naive"),
        **{
            f"{p} toy": (lambda p=p: pattern(p, toy_models if p.startswith("multi") else toy_models[:1], toy, out / p))
            for p in PATTERNS
        },
        "postprocess toy, 1 worker process": lambda: pattern(
            "postprocess",
            toy_models[:1],
            toy,
            out / "w1",
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=1",
        ),
        "postprocess toy, 2 worker processes": lambda: pattern(
            "postprocess",
            toy_models[:1],
            toy,
            out / "w2",
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
        ),
        "raw heavy": lambda: baseline("raw", heavy, heavy_input, out / "raw_heavy"),
        "floor heavy": lambda: baseline("floor", heavy, heavy_input, out / "floor_heavy"),
        "naive heavy": lambda: baseline("naive", heavy, heavy_few, out / "naive_heavy"),
        "postprocess heavy": lambda: pattern("postprocess", [heavy], heavy_input, out / "heavy"),
    }
    results = {}
    for name, measure in plan.items():
        results[name] = median([measure() for _ in range(repeats)])
        print(
            f"{name:<40} {results[name]['throughput']:>12,.0f} records/s  {results[name]['peak_mb']:>7,.0f} MB",
            flush=True,
        )
    return results


def targets(results: dict, streaming: dict) -> list[dict]:
    def ratio(a: str, b: str) -> float:
        return results[a]["throughput"] / results[b]["throughput"]

    checks = [(f"{p} toy >= 80% of the Beam floor", ratio(f"{p} toy", "floor toy"), 0.8) for p in PATTERNS]
    checks += [
        ("heavy model >= 90% of the raw model", ratio("postprocess heavy", "raw heavy"), 0.9),
        (">= 2x the naive DoFn, toy", ratio("postprocess toy", "naive toy"), 2.0),
        (">= 10x the naive DoFn, heavy", ratio("postprocess heavy", "naive heavy"), 10.0),
        (
            "2 worker processes >= 1.7x one",
            ratio("postprocess toy, 2 worker processes", "postprocess toy, 1 worker process"),
            1.7,
        ),
        (
            "one model copy per process (loads, 2 workers)",
            results["postprocess toy, 2 worker processes"]["model_loads"],
            2,
        ),
    ]
    lost = streaming["published"] - streaming["received"]
    sustained = f"streaming {streaming['rate']:g} msg/s for {streaming['seconds']:g} s, all {streaming['published']}"
    checks += [
        (f"{sustained} rows arrive (missing)", lost, 0),
        ("streaming p99 latency < 1 s (ms)", streaming["p99_ms"], 1000),
    ]
    return [{"target": t, "value": round(v, 3), "goal": g, "met": _met(t, v, g)} for t, v, g in checks]


def _met(target: str, value: float, goal: float) -> bool:
    if "copy" in target or "missing" in target:
        return value == goal
    return value < goal if "latency" in target else value >= goal


def markdown(report: dict) -> str:
    lines = [
        f"Benchmark of {report['when']} on {report['machine']} ({report['records']} toy records, "
        f"{report['heavy_records']} heavy records, median of {report['repeats']}).",
        "",
        "| variant | records/s | seconds | peak MB | model loads |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in report["results"].items():
        lines.append(
            f"| {name} | {r['throughput']:,.0f} | {r['seconds']:.2f} | {r['peak_mb']:,.0f} | {r['model_loads']} |"
        )
    stream = report["streaming"]
    lines += [
        "",
        f"Streaming, keyed pattern through the Pub/Sub emulator: {stream['published']} messages at "
        f"{stream['achieved_publish_rate']:.0f}/s, {stream['received']} rows received; latency from publish to "
        f"row p50 {stream['p50_ms']:.0f} ms, p95 {stream['p95_ms']:.0f} ms, p99 {stream['p99_ms']:.0f} ms, "
        f"max {stream['max_ms']:.0f} ms.",
    ]
    lines += ["", "| target | value | goal | met |", "| --- | ---: | ---: | :---: |"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {t['goal']} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["results"])
    values = [report["results"][n]["throughput"] for n in names]
    figure, (axis, latency) = plt.subplots(2, 1, figsize=(10, 0.4 * len(names) + 5.5), height_ratios=[3, 1])
    axis.barh(names, values, color=["#888" if n.split()[0] in ("raw", "floor", "naive") else "#1a73e8" for n in names])
    axis.set_xscale("log")
    axis.set_xlabel("records per second (log scale)")
    axis.invert_yaxis()
    axis.set_title(f"Throughput, {report['machine']}")
    stream = report["streaming"]
    ordered = stream["latencies_ms"]
    latency.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], color="#1a73e8")
    latency.set_xlabel("milliseconds from publish to row")
    latency.set_ylabel("share of messages")
    latency.set_title(f"Streaming latency CDF, {stream['rate']:g} messages/s for {stream['seconds']:g} s")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000, help="toy records (the heavy model gets 1/5)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stream-rate", type=float, default=200, help="streaming: messages per second")
    parser.add_argument("--stream-seconds", type=float, default=60, help="streaming: how long to publish")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    missing = missing_tools()
    if missing:  # said before the throughput part, not after it
        parser.error("the streaming part needs the Pub/Sub emulator; install:\n  " + "\n  ".join(missing))
    with tempfile.TemporaryDirectory() as folder:
        results = run(args.records, args.repeats, Path(folder))
        streaming = streaming_latency(Path(folder) / "models" / "multiply_by_5", args.stream_rate, args.stream_seconds)
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "records": args.records,
        "heavy_records": heavy_count(args.records),
        "repeats": args.repeats,
        "results": results,
        "streaming": streaming,
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
