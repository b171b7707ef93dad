"""--model_copies measured: the memory a heavy model takes in 2 worker processes, one shared copy against two private.

A Dataflow worker runs one SDK process per vCPU, and each loads its own copy of a model. With --model_copies=1 the
template's handler says `share_model_across_processes`, and RunInference loads the model once per machine with
Beam's MultiProcessShared: the first process to ask holds it and serves the others through a proxy. This script
runs 2 worker processes doing what RunInference's DoFn does with the template's own handler (load the model the
way RunInference loads it, privately or shared; answer batches of the same records, checked exactly), and
measures each process's proportional set size (PSS, /proc/PID/smaps_rollup: shared pages split between the
processes that map them) before the load and after the batches, and its peak resident set (VmHWM).

    python -m benchmarks.shared_memory [--megabytes=400] [--batches=20]

The model's memory across the 2 processes is the sum of their PSS after, less the sum before. The target:
shared, no more than one copy's (a private run's half) plus 10%.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2
RECORDS_PER_BATCH = 256


def _kilobytes(path: str, field: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise ValueError(f"{path} has no {field}")


def pss_mb(pid: int | str = "self") -> float:
    return _kilobytes(f"/proc/{pid}/smaps_rollup", "Pss") / 1024


def peak_rss_mb(pid: int | str = "self") -> float:
    return _kilobytes(f"/proc/{pid}/status", "VmHWM") / 1024


def export_heavy_model(directory: Path, megabytes: int) -> float:
    """A SavedModel taking serialized Examples (feature x) whose variable holds `megabytes` of random float32:
    y = x * w[0]. Returns w[0]."""
    import numpy as np
    import tensorflow as tf

    weights = np.random.default_rng(29).random(megabytes * 1024 * 1024 // 4, dtype=np.float32) + 1

    class Heavy(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(weights)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            parsed = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([1], tf.float32)})
            return {"y": parsed["x"] * self.w[0]}

    module = Heavy()
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})
    return float(weights[0])


def worker(model: str, tag: str, shared: bool, batches: int, factor: float) -> None:
    """One worker process: the model loaded as RunInference loads it, `batches` batches answered and checked."""
    import numpy as np
    from apache_beam.utils.multi_process_shared import MultiProcessShared

    from transforms.config import Batching, ModelSpec
    from transforms.inference.batches import Batch, ModelFeed
    from transforms.inference.predict import BatchModelHandler, OutputArrays, StagedModelHandler
    from transforms.inference.signatures import serving_signature
    from transforms.records.examples import encode_example
    from transforms.records.parsing import Record

    before = pss_mb()
    spec = ModelSpec(model, "heavy")
    signature = serving_signature(model, "serving_default")
    handler = BatchModelHandler(
        StagedModelHandler(spec, signature, Batching()), OutputArrays("heavy"), 1 if shared else None
    )
    if handler.share_model_across_processes():  # as RunInference's _load_model does
        loaded = MultiProcessShared(handler.load_model, tag=tag, always_proxy=True).acquire()
    else:
        loaded = handler.load_model()
    records = [Record(str(i), None, {"x": float(i)}, b"", "bench") for i in range(RECORDS_PER_BATCH)]
    feed = ModelFeed(Batch(records), [encode_example(r.features) for r in records])
    for _ in range(batches):
        (answer,) = handler.run_inference(feed, loaded)
        expected = (np.arange(RECORDS_PER_BATCH, dtype=np.float32) * np.float32(factor)).tolist()
        got = answer.outputs.arrays["y"].reshape(-1).tolist()
        if got != expected:
            raise AssertionError(f"wrong outputs: {got[:4]} ...; expected {expected[:4]} ...")
    print(json.dumps({"pid": os.getpid(), "pss_before_mb": before}), flush=True)
    sys.stdin.readline()  # measured from outside while alive; then it exits


def measure(model: str, shared: bool, batches: int, factor: float) -> dict:
    tag = f"tfx-inference-heavy-{uuid.uuid4().hex}"
    mode = "shared" if shared else "private"
    command = [sys.executable, "-m", "benchmarks.shared_memory", "--worker", mode, "--model", model, "--tag", tag]
    command += ["--batches", str(batches), "--factor", repr(factor)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        for _ in range(WORKERS)
    ]
    reports = []
    for process in processes:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"a {mode} worker ended with code {process.wait()} before reporting")
        reports.append(json.loads(line))
    after = [pss_mb(report["pid"]) for report in reports]
    peaks = [peak_rss_mb(report["pid"]) for report in reports]
    for process in processes:
        process.stdin.write("\n")
        process.stdin.flush()
        process.wait(timeout=120)
    before = [report["pss_before_mb"] for report in reports]
    return {
        "mode": mode,
        "pss_before_mb": before,
        "pss_after_mb": after,
        "peak_rss_mb": peaks,
        "model_mb": sum(after) - sum(before),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=400)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--worker", choices=["shared", "private"])
    parser.add_argument("--model")
    parser.add_argument("--tag")
    parser.add_argument("--factor", type=float)
    args = parser.parse_args()
    if args.worker:
        worker(args.model, args.tag, args.worker == "shared", args.batches, args.factor)
        return
    with tempfile.TemporaryDirectory() as folder:
        model = Path(folder) / "heavy"
        factor = export_heavy_model(model, args.megabytes)
        results = [measure(str(model), shared, args.batches, factor) for shared in (False, True)]
    private, shared = results
    one_copy = private["model_mb"] / WORKERS
    print(f"heavy model: {args.megabytes} MB of variables; {WORKERS} worker processes, {args.batches} batches each")
    print("mode      PSS before (MB)     PSS after (MB)      peak RSS (MB)       model across both (MB)")
    for r in results:
        shown = [" + ".join(f"{v:.0f}" for v in r[key]) for key in ("pss_before_mb", "pss_after_mb", "peak_rss_mb")]
        print(f"{r['mode']:<9} {shown[0]:<19} {shown[1]:<19} {shown[2]:<19} {r['model_mb']:.0f}")
    ratio = shared["model_mb"] / one_copy
    verdict = "meets" if ratio <= 1.1 else "MISSES"
    print(f"shared = {ratio:.2f} x one private copy ({one_copy:.0f} MB): {verdict} the target of at most 1.10")


if __name__ == "__main__":
    main()
