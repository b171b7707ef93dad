"""Remote inference against the local Vertex AI stand-in: rows/s of one worker process with 1, 4 and 16 requests
in flight, and the time a batch spends waiting for its endpoint, so that a job can be sized against a quota.

    python -m benchmarks.remote [--records 16384] [--latency-ms 0,50]

Each variant runs the template's own EndpointModelHandler (instances built as the pipeline builds them, the
real google-cloud-aiplatform client over REST, retries and the in-flight bound) on batches of 512 records,
64 instances a request, against tools/vertex_endpoint.py serving an x5 SavedModel in a process of its own. The
stand-in adds `--latency-ms` to every request, standing for the network and a real endpoint's queue: 0 shows the
client's own cost, 50 a nearby region's round trip. Both processes share this machine's cores, so the client's
CPU-seconds per 1,000 rows are the figure that carries over to a Dataflow worker.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tools.vertex_endpoint import export_instance_model, running
from transforms.config import ModelSpec, RemoteCalls
from transforms.inference.batches import Batch, ModelFeed
from transforms.inference.instances import RecordInstances
from transforms.inference.remote_predict import PREDICTION, EndpointModelHandler
from transforms.records.parsing import Record

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "remote" / "latest.md"
ENDPOINT = "projects/bench-project/locations/us-central1/endpoints/5"
BATCH = 512
PER_REQUEST = 64


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def feeds(records: int) -> list[ModelFeed]:
    build = RecordInstances()
    batches = []
    for start in range(0, records, BATCH):
        chunk = [Record(str(i), f"k{i}", {"x": i / 8}, b"", "bench") for i in range(start, min(start + BATCH, records))]
        batch = Batch(chunk)
        batches.append(ModelFeed(batch, build.batch(batch)))
    return batches


def run(address: str, in_flight: int, batches: list[ModelFeed]) -> dict:
    calls = RemoteCalls(api_endpoint=address, requests_in_flight=in_flight, instances_per_request=PER_REQUEST)
    handler = EndpointModelHandler(ModelSpec(f"vertex://{ENDPOINT}", "x5"), calls)
    endpoint = handler.load_model()
    handler.run_inference(batches[0], endpoint)  # connections opened, the model warm
    latencies, rows = [], 0
    cpu, start = cpu_seconds(), time.perf_counter()
    for feed in batches:
        began = time.perf_counter()
        (answer,) = handler.run_inference(feed, endpoint)
        latencies.append(time.perf_counter() - began)
        assert answer.outputs.arrays[PREDICTION].tolist() == [5 * record.features["x"] for record in feed.batch.records]
        rows += len(feed)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {
        "rows_per_second": rows / seconds,
        "batch_ms_p50": 1000 * statistics.median(latencies),
        "batch_ms_p95": 1000 * sorted(latencies)[int(0.95 * (len(latencies) - 1))],
        "client_cpu_ms_per_1k_rows": 1000 * cpu / rows * 1000,
    }


def set_latency(address: str, milliseconds: int) -> None:
    body = json.dumps({"delay_seconds": milliseconds / 1000}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{address}/stand-in/faults", body, method="POST"), timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=16384)
    parser.add_argument("--latency-ms", default="0,50")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        model = export_instance_model(f"{folder}/x5", lambda x: {"y": 5 * x})
        with running([f"{ENDPOINT}=1:{model}"], Path(folder) / "stand_in.log") as address:
            batches = feeds(args.records)
            lines = [
                "# Remote inference against the local Vertex AI stand-in",
                "",
                f"`python -m benchmarks.remote --records {args.records} --latency-ms {args.latency_ms}` "
                f"({time.strftime('%Y-%m-%d')}): one worker process, batches of {BATCH} records, {PER_REQUEST} "
                "instances a request, the stand-in on the same 2 cores (load average "
                f"{os.getloadavg()[0]:.1f} at the start: other work shares them).",
                "",
                "| latency added per request | requests in flight | rows/s | batch p50 (ms) | batch p95 (ms) | "
                "client CPU ms per 1k rows |",
                "| ---: | ---: | ---: | ---: | ---: | ---: |",
            ]
            for latency in (int(value) for value in args.latency_ms.split(",")):
                set_latency(address, latency)
                for in_flight in (1, 4, 16):
                    result = run(address, in_flight, batches)
                    print(latency, in_flight, json.dumps(result), flush=True)
                    lines.append(
                        f"| {latency} ms | {in_flight} | {result['rows_per_second']:,.0f} | "
                        f"{result['batch_ms_p50']:.0f} | {result['batch_ms_p95']:.0f} | "
                        f"{result['client_cpu_ms_per_1k_rows']:.0f} |"
                    )
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text("\n".join(lines) + "\n")
    print(args.results.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
