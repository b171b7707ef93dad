"""One large input file: the byte ranges the source offers for it, and its read at 1 vs 2 local worker processes.

On Dataflow, a large file is read by as many workers as it has ranges (and more, as running ranges split
again); locally, the multi-process runner is the only parallelism, with its known overhead on 2 cores. So the
figure that matters for Dataflow is the number of ranges offered for a 1 GB file, computed by the source's own
code; the local run shows that a file of several ranges is read by both worker processes, and at what rate.

    python -m benchmarks.large_file [--mb 160] [--out benchmarks/results/large_file.json]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from transforms.reading.file_ranges import ranges_offered

ROOT = Path(__file__).resolve().parent.parent
GIB = 1 << 30


def offered_for(size: int) -> dict[str, int]:
    """How many byte ranges the source cuts a file of `size` bytes into, by name, before any dynamic split."""
    names = {"csv": "big.csv", "jsonl": "big.jsonl", "csv.gz": "big.csv.gz", "tfrecord": "big.tfrecord"}
    return {name: ranges_offered(path, size, name.split(".")[0]) for name, path in names.items()}


def write_csv(path: Path, megabytes: int) -> int:
    """A CSV file of about `megabytes` MB, notes with quoted line breaks; its number of records."""
    rng, written, records = random.Random(5), 0, 0
    with open(path, "w", newline="") as f:
        written += f.write("key,x,note\n")
        while written < megabytes * 10**6:
            note = ("a line of free text, with a comma\n" * rng.randint(1, 40)).replace('"', '""')
            written += f.write(f'k{records},{records % 1000},"{note}"\n')
            records += 1
    return records


def read_once(source: Path, model: Path, workers: int, output: Path) -> dict:
    command = [sys.executable, str(ROOT / "main.py"), "--pattern=keyed", f"--model_uris={model}"]
    command += [f"--input={source}", f"--output={output}", "--feature_types=note:bytes", "--progress=off"]
    if workers > 1:
        command += ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = time.monotonic() - started
    rows = int(re.search(r"rows written\s+(\d+)", done.stdout).group(1))
    return {"workers": workers, "rows": rows, "process_seconds": seconds, "rows_per_second": rows / seconds}


def large_file(model: Path, megabytes: int, folder: Path) -> dict:
    source = folder / "large.csv"
    records = write_csv(source, megabytes)
    size = source.stat().st_size
    runs = [read_once(source, model, workers, folder / f"out-{workers}" / "rows") for workers in (1, 2)]
    for run in runs:
        if run["rows"] != records:
            raise RuntimeError(f"{run['workers']} worker(s) wrote {run['rows']} rows of {records} records")
    return {
        "ranges_offered_for_1_gb": offered_for(GIB),
        "file_mb": size / 10**6,
        "records": records,
        "ranges_offered": offered_for(size)["csv"],
        "runs": runs,
        "speedup_2_workers": runs[1]["rows_per_second"] / runs[0]["rows_per_second"],
    }


def markdown(result: dict) -> str:
    offered = result["ranges_offered_for_1_gb"]
    lines = [
        "## One large file",
        "",
        f"Ranges the source offers for a 1 GB file (before Dataflow splits running ones further): "
        f"CSV {offered['csv']}, JSON Lines {offered['jsonl']}, gzip-compressed CSV {offered['csv.gz']}, "
        f"TFRecord {offered['tfrecord']}.",
        "",
        f"A {result['file_mb']:.0f} MB CSV file ({result['records']} records, quoted line breaks; "
        f"{result['ranges_offered']} ranges), keyed pattern, whole process:",
        "",
        "| worker processes | rows/s | seconds |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {r['workers']} | {r['rows_per_second']:,.0f} | {r['process_seconds']:.1f} |" for r in result["runs"]]
    lines.append(f"\n2 worker processes: {result['speedup_2_workers']:.2f}x one.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.large_file", description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=160, help="size of the generated CSV file")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "large_file.json")
    args = parser.parse_args()
    from tools.demo import build_models

    with tempfile.TemporaryDirectory() as folder:
        model = next(path for path in build_models(Path(folder) / "models") if path.name == "multiply_by_5")
        result = large_file(model, args.mb, Path(folder))
    args.out.write_text(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
